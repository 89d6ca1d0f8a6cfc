"""An operator sees a service queue in rq-dashboard (deploy/dashboard.py).

The dashboard is driven through Flask's test client against the same Redis
the service queue used: its queue list, the job lists of the passed
(finished) and failed registries of ``drag-pending``, and a job's detail.
"""

from __future__ import annotations

import html
import importlib.util
import json
import pickle
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from rq.worker import BaseWorker

from rq_serviceq import ServiceQ, ServiceQWorker
from tests import elsewhere, tasks
from tests.conftest import drain

DASHBOARD_PY = Path(__file__).resolve().parents[2] / "deploy" / "dashboard.py"
QUEUE = "drag-pending"


def load_dashboard() -> ModuleType:
    """deploy/ is not a package: import deploy/dashboard.py from its path, as an operator's copy would be."""
    spec = importlib.util.spec_from_file_location("rq_serviceq_deploy_dashboard", DASHBOARD_PY)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def get_json(client: Any, url: str) -> dict[str, Any]:
    response = client.get(url)
    assert response.status_code == 200, f"GET {url} -> {response.status_code}: {response.get_data(as_text=True)[:2000]}"
    body: dict[str, Any] = response.get_json()
    return body


@pytest.fixture
def client(redis_url: str) -> Any:
    app = load_dashboard().create_app(redis_url)
    app.config["TESTING"] = True
    return app.test_client()


def test_operator_sees_service_queue_in_rq_dashboard(make_sq: Callable[..., ServiceQ], client: Any) -> None:
    # auto_start=False: drain() works the batch in this process, with no worker subprocess racing it.
    sq = make_sq("drag", waiting_period=0, resting_period=0, auto_start=False)
    sq.set_retry_config(retry_limit=0)
    sq.set_task_function(tasks.returns)
    passed_ids = sq.push_many([{"value": True}, {"value": [True, "SUCCESS | sent"]}])
    failed_ids = sq.push_many([{"value": [False, "NO_RETRY | nope"]}, {"value": [False, "NO_RETRY | nope again"]}])
    drain(sq)
    report = sq.get_batch_report()
    assert (report["total_success"], report["total_failed"], report["total_pending"]) == (2, 2, 0)

    # The queue list: drag-pending is there, empty, with its passed and failed counts.
    queues = {q["name"]: q for q in get_json(client, "/rq/0/data/queues.json")["queues"]}
    assert QUEUE in queues, sorted(queues)
    drag = queues[QUEUE]
    assert drag["count"] == 0
    assert drag["finished_job_registry_count"] == 2
    assert drag["failed_job_registry_count"] == 2
    assert drag["started_job_registry_count"] == 0

    # The passed queue is RQ's FinishedJobRegistry, the failed queue its FailedJobRegistry.
    finished = get_json(client, f"/rq/0/data/jobs/{QUEUE}/finished/20/asc/1.json")
    failed = get_json(client, f"/rq/0/data/jobs/{QUEUE}/failed/20/asc/1.json")
    assert sorted(job["id"] for job in finished["jobs"]) == sorted(passed_ids)
    assert sorted(job["id"] for job in failed["jobs"]) == sorted(failed_ids)
    assert all("tests.tasks.returns" in job["description"] for job in finished["jobs"] + failed["jobs"])
    assert get_json(client, f"/rq/0/data/jobs/{QUEUE}/queued/20/asc/1.json")["jobs"] == []

    # A job's detail, JSON and HTML, for a passed and a failed task.
    for task_id, status in ((passed_ids[0], "finished"), (failed_ids[0], "failed")):
        info = get_json(client, f"/rq/0/data/job/{task_id}.json")
        assert info["id"] == task_id
        assert info["origin"] == QUEUE
        assert info["status"] == status
        assert info["created_at"] and info["ended_at"]
        page = client.get(f"/rq/0/view/job/{task_id}")
        assert page.status_code == 200, page.get_data(as_text=True)[:2000]

    # The HTML pages an operator opens first.
    for url in ("/rq/", f"/rq/0/view/jobs/{QUEUE}/failed/8/asc/1", "/rq/0/view/workers"):
        page = client.get(url)
        assert page.status_code == 200, f"GET {url} -> {page.status_code}"


def test_dashboard_basic_auth(redis_url: str) -> None:
    app = load_dashboard().create_app(redis_url, username="ops", password="s3cret")
    client = app.test_client()
    assert client.get("/rq/0/data/queues.json").status_code == 401
    assert client.get("/rq/0/data/queues.json", auth=("ops", "wrong")).status_code == 401
    assert client.get("/rq/0/data/queues.json", auth=("ops", "s3cret")).status_code == 200


XHR = {"X-Requested-With": "XMLHttpRequest"}  # what rq-dashboard's buttons send (jQuery adds it)


def test_dashboard_requeue_is_adopted_and_delete_stays_off(
    make_sq: Callable[..., ServiceQ], conn: Any, client: Any
) -> None:
    """Requeue from the dashboard: the failed task runs again as a new task ``<id>-r1``, counted once, in a new
    batch; the batch it failed in keeps its report.  Delete and empty stay off (they act behind the ledger)."""
    sq = make_sq("drag", waiting_period=0, resting_period=0, auto_start=False)
    sq.set_task_function(tasks.returns)
    failed_ids = sq.push_many([{"value": [False, "NO_RETRY | nope"]}])
    drain(sq)
    first = sq.get_batch_report()

    assert client.post(f"/rq/job/{failed_ids[0]}/delete", headers=XHR).get_json() == {"status": "DISABLED"}
    assert client.post(f"/rq/queue/{QUEUE}/failed/empty", headers=XHR).get_json() == {"status": "DISABLED"}
    assert conn.exists(f"rq:job:{failed_ids[0]}")

    assert client.post(f"/rq/job/{failed_ids[0]}/requeue", headers=XHR).get_json() == {"status": "OK"}
    assert client.post(f"/rq/job/{failed_ids[0]}/requeue", headers=XHR).status_code == 409  # requeued already
    assert conn.lrange(f"rq:queue:{QUEUE}", 0, -1) == [failed_ids[0].encode()]
    drain(sq)
    second = sq.get_batch_report()
    assert second["batch_id"] != first["batch_id"]
    assert [q["task_id"] for q in second["failed_tasks"]] == [f"{failed_ids[0]}-r1"]
    assert (second["total_submitted"], second["total_failed"], second["total_pending"]) == (1, 1, 0)
    assert sq.get_batch_report(first["batch_id"]) == first
    # The old task's page still reads (RQ's requeue re-saved it as JSON, not as pickle).
    old = get_json(client, f"/rq/0/data/job/{failed_ids[0]}.json")
    assert json.loads(html.unescape(old["metadata"]))["batch_id"] == first["batch_id"]
    assert client.post(f"/rq/requeue/{QUEUE}", headers=XHR).get_json() == {"status": "OK", "count": 1}  # the -r1
    assert conn.lrange(f"rq:queue:{QUEUE}", 0, -1) == [f"{failed_ids[0]}-r1".encode()]


def test_dashboard_actions_refused_unless_sent_by_its_own_buttons(
    make_sq: Callable[..., ServiceQ], conn: Any, client: Any
) -> None:
    """A browser sends its dashboard login with any request to the dashboard, one another site's page
    makes it send too (a link, an image, a form): only a POST with X-Requested-With (which such a page
    cannot add) requeues.  rq-dashboard itself answers GET /requeue/QUEUE."""
    sq = make_sq("drag", waiting_period=0, resting_period=0, auto_start=False)
    sq.set_task_function(tasks.returns)
    failed_ids = sq.push_many([{"value": [False, "NO_RETRY | nope"]}])
    drain(sq)

    assert client.get(f"/rq/requeue/{QUEUE}").status_code == 403
    assert client.post(f"/rq/requeue/{QUEUE}").status_code == 403
    refused = client.post(f"/rq/job/{failed_ids[0]}/requeue")
    assert refused.status_code == 403 and b"X-Requested-With" in refused.data
    assert client.get(f"/rq/requeue/{QUEUE}", headers=XHR).status_code == 403  # not a POST
    assert client.post(f"/rq/queue/{QUEUE}/compact").status_code == 403
    assert conn.zrange(f"rq:failed:{QUEUE}", 0, -1) == [failed_ids[0].encode()]
    assert conn.llen(f"rq:queue:{QUEUE}") == 0


def test_dashboard_no_requeue_refuses_it(make_sq: Callable[..., ServiceQ], conn: Any, redis_url: str) -> None:
    sq = make_sq("drag", waiting_period=0, resting_period=0, auto_start=False)
    sq.set_task_function(tasks.returns)
    failed_ids = sq.push_many([{"value": [False, "NO_RETRY | nope"]}])
    drain(sq)
    client = load_dashboard().create_app(redis_url, allow_requeue=False).test_client()
    refused = client.post(f"/rq/job/{failed_ids[0]}/requeue", headers=XHR)
    assert refused.status_code == 403 and b"requeue-failed" in refused.data
    assert client.post(f"/rq/requeue/{QUEUE}", headers=XHR).status_code == 403
    assert conn.zrange(f"rq:failed:{QUEUE}", 0, -1) == [failed_ids[0].encode()]


class _RunsWhenUnpickled:
    """A job meta that leaves a mark (tests.elsewhere) if anything unpickles it."""

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (elsewhere.mark, ("unpickled by the dashboard",))


def test_no_dashboard_page_or_action_unpickles_a_job(
    make_sq: Callable[..., ServiceQ], conn: Any, redis_url: str
) -> None:
    """ServiceQ jobs are JSON; a job hash whose meta is a pickle (written by whoever can write to Redis) is never
    unpickled: rq-dashboard's own job page, Delete and Empty fetched jobs with pickle, running that code."""
    sq = make_sq("drag", waiting_period=0, resting_period=0, auto_start=False)
    sq.set_task_function(tasks.returns)
    ids = sq.push_many([{"value": [False, "NO_RETRY | nope"]}] * 3)
    drain(sq)
    for task_id in ids:
        conn.hset(f"rq:job:{task_id}", "meta", pickle.dumps(_RunsWhenUnpickled()))
    client = load_dashboard().create_app(redis_url, allow_delete=True).test_client()

    assert client.get(f"/rq/0/view/job/{ids[0]}").status_code == 200
    assert client.get("/rq/0/view/job/no-such-task").status_code == 404
    client.get(f"/rq/0/data/job/{ids[0]}.json")  # its meta is not JSON: an error, and nothing run
    assert len(get_json(client, f"/rq/0/data/jobs/{QUEUE}/failed/20/asc/1.json")["jobs"]) == 3
    refused = client.post(f"/rq/job/{ids[0]}/requeue", headers=XHR)  # RQ would save it back, and fail half-way
    assert refused.status_code == 422 and "not JSON" in refused.get_json()["message"]
    assert client.post(f"/rq/requeue/{QUEUE}", headers=XHR).get_json() == {"status": "OK", "count": 0}
    assert conn.zcard(f"rq:failed:{QUEUE}") == 3 and conn.llen(f"rq:queue:{QUEUE}") == 0
    assert client.post(f"/rq/job/{ids[1]}/delete", headers=XHR).get_json() == {"status": "OK"}
    assert client.post(f"/rq/queue/{QUEUE}/failed/empty", headers=XHR).get_json() == {"status": "OK"}
    assert conn.lrange(elsewhere.EXECUTED, 0, -1) == []
    assert not any(conn.exists(f"rq:job:{task_id}") for task_id in ids)


def test_worker_list_reads_a_current_job_as_json(make_sq: Callable[..., ServiceQ], conn: Any, client: Any) -> None:
    """Once a worker names its current job (RQ's ``current_job``), rq-dashboard's worker list reads that job: with
    pickle it answered 500 for the whole list.  The job's line is its description, HTML-escaped (the page writes
    it as HTML)."""
    sq = make_sq("drag", waiting_period=0, resting_period=0, auto_start=False)
    sq.set_task_function(tasks.returns)
    (task_id,) = sq.push_many([{"value": True, "note": "<b>"}])
    worker: BaseWorker = ServiceQWorker(QUEUE, connection=conn)  # driven through RQ's own (untyped) methods
    worker.register_birth()
    try:
        conn.hset(worker.key, mapping={"state": "busy", "current_job": task_id})  # as RQ's worker loop sets them
        (row,) = get_json(client, "/rq/0/data/workers.json")["workers"]
        assert row["name"] == worker.name and row["state"] == "busy" and row["queues"] == [QUEUE]
        assert row["current_job"]["job_id"] == task_id
        assert row["current_job"]["description"] == 'tests.tasks.returns({"value":true,"note":"<b>"})'
        assert row["current_job"]["call_string"] == html.escape('tests.tasks.returns({"value":true,"note":"<b>"})')
    finally:
        worker.register_death()


@pytest.mark.parametrize("show_full_args", [False, True], ids=["default", "show-full-args"])
def test_a_task_pushed_before_its_task_function_is_named_by_it_once_set(
    make_sq: Callable[..., ServiceQ], redis_url: str, show_full_args: bool
) -> None:
    """A task pushed while its queue had no task function said ``(no task function set)(...)``; once one is set,
    and after the task passed with it, every view names that function (the job lists, the job's data and the
    worker list's current job), also with rq-dashboard's RQ_DASHBOARD_SHOW_FULL_ARGS, where rq-dashboard's own
    description is RQ's call string naming the placeholder every task carries."""
    app = load_dashboard().create_app(redis_url)
    app.config.update(TESTING=True, RQ_DASHBOARD_SHOW_FULL_ARGS=show_full_args)
    client = app.test_client()
    sq = make_sq("drag", waiting_period=0, resting_period=0, auto_start=False)
    long_text = "x" * 200  # past the 120 characters a description shows unless told to show it all
    (task_id,) = sq.push_many([{"value": True, "text": long_text}])
    (queued,) = get_json(client, f"/rq/0/data/jobs/{QUEUE}/queued/20/asc/1.json")["jobs"]
    assert queued["description"].startswith('(no task function set)({"value":true')

    sq.set_task_function(tasks.returns)
    (queued,) = get_json(client, f"/rq/0/data/jobs/{QUEUE}/queued/20/asc/1.json")["jobs"]
    assert queued["description"].startswith('tests.tasks.returns({"value":true')
    drain(sq)
    assert sq.get_batch_report()["total_success"] == 1

    (passed,) = get_json(client, f"/rq/0/data/jobs/{QUEUE}/finished/20/asc/1.json")["jobs"]
    info = get_json(client, f"/rq/0/data/job/{task_id}.json")
    full = f'tests.tasks.returns({{"value":true,"text":"{long_text}"}})'
    for description in (passed["description"], html.unescape(info["description"])):
        assert "no task function" not in description and "perform_outside_serviceq_worker" not in description
        if show_full_args:
            assert description == full
        else:
            assert description.startswith('tests.tasks.returns({"value":true') and description.endswith("...)")
            assert len(description) == len("tests.tasks.returns()") + 120
    assert info["status"] == "finished" and info["result"] == "SUCCESS"
