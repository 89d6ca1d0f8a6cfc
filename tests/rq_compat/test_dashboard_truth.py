"""RQ's own tools tell the truth about ServiceQ tasks: rq-dashboard's pages in headless Chromium, and ``rq info``.

The dashboard is the one the HTTP service mounts at ``/rq`` (``rq-serviceq serve``), behind the operator's
token: the README's HTTP section sends users there, it is the only dashboard of the Kubernetes manifests, and
the 403 the issue saw on Requeue came from it.  ``deploy/dashboard.py`` runs the same set-up
(``rq_serviceq.contrib.dashboard``); ``tests/rq_compat/test_dashboard.py`` drives it through Flask's test client.

What each page shows, and where, is read off rq-dashboard 0.9's own templates: a job page fills ``#job-data``
from ``/0/data/job/ID.json`` (Description, Status, Result as ``JSON.stringify`` in a ``pre``, Metadata, and
"Exception Info" in ``pre.exc_info``); the job lists fill ``table#jobs`` with ``tr[data-role=job]`` rows; the
queue list ``tr[data-role=queue]`` rows; the worker list ``tr[data-role=worker]`` rows.  The assertions read the
rendered DOM (in one script each, since the pages re-render every poll).  Screenshots are kept in each test's
tmp path and their paths printed (``pytest -s`` shows them).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from redis import Redis
from rq import Worker
from rq.job import Job
from rq.serializers import JSONSerializer

from rq_serviceq import ServiceQ
from rq_serviceq.testing import RedisServer
from tests import tasks
from tests.conftest import drain, text
from tests.http_helpers import ServerProcess, running_server
from tests.surfaces.test_http_browser import headless_chromium

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "truth-s3cret"
QUEUE = "drag-pending"
WAIT = 15.0  # seconds any page or state gets to show up: generous on a loaded 2-CPU machine

PASSED_REMARK = "SUCCESS | sent to <b>+91</b> 98"  # markup in a remark is text, and must show as text
RETRIED_REMARK = "RETRY | gateway busy (503)"
NO_RETRY_REMARK = "NO_RETRY | user has no <whatsapp> number"
HOSTILE = "<img src=x onerror=\"document.title='pwned'\">"  # task data a producer sent; shown in the description

# One read of a job page's rendered fields; null until rq-dashboard's script has filled it in.
JOB_PAGE_JS = r"""
const root = document.getElementById('job-data');
const exc = root && root.querySelector('pre.exc_info');
if (!exc) return null;
const label = name => [...root.querySelectorAll('strong')].find(s => s.textContent.trim() === name);
const field = name => label(name).parentElement.innerText.replace(/^[^:]*:\s*/, '');
const after = el => [...root.querySelectorAll('pre')].find(
    p => el.compareDocumentPosition(p) & Node.DOCUMENT_POSITION_FOLLOWING);
const button = document.getElementById('requeue-job-btn');
return {
  description: root.querySelector('.description-scroll').innerText,
  status: field('Status'),
  result: after(label('Result')).innerText,
  metadata: field('Metadata'),
  exception_info: exc.innerText,
  requeue_shown: !!button && getComputedStyle(button).display !== 'none',
  title: document.title,
};
"""
JOB_ROWS_JS = r"""
if (document.querySelector('table#jobs tr[data-role=loading-placeholder]:not([style*="none"])')
    && !document.querySelector('table#jobs tr[data-role=job]')) return null;
return [...document.querySelectorAll('table#jobs tbody tr[data-role=job]')].map(tr => ({
  id: tr.dataset.jobId,
  exception_info: (tr.querySelector('pre.exc_info') || {innerText: ''}).innerText,
  requeue: !!tr.querySelector('[data-role=requeue-job-btn]'),
}));
"""
QUEUE_ROWS_JS = r"""
const rows = {};
for (const tr of document.querySelectorAll('tr[data-role=queue]')) {
  const c = [...tr.cells].map(td => td.innerText.trim());
  rows[c[0]] = {queued: +c[1], deferred: +c[2], scheduled: +c[3], started: +c[4], finished: +c[5], failed: +c[6]};
}
return rows;
"""
WORKER_ROWS_JS = r"""
return [...document.querySelectorAll('table#workers tbody tr[data-role=worker]')].map(tr => {
  const link = tr.cells[1].querySelector('a');
  return {name: tr.cells[0].innerText.trim(), current_job: tr.cells[1].innerText.trim(),
          href: link ? link.getAttribute('href') : null, queues: tr.cells[2].innerText.trim()};
});
"""


@pytest.fixture(scope="module")
def server(redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """``rq-serviceq serve`` with a token; only its ``/rq`` is used here (tasks are pushed through the library)."""
    with running_server(
        redis_server.url, tmp_path_factory.mktemp("serve") / "server.log", SERVICEQ_API_TOKEN=TOKEN
    ) as s:
        yield s


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Debian's headless Chromium, sending the operator's token with every request (as a proxy would add it)."""
    with headless_chromium(TOKEN) as driver:
        yield driver


def until(driver: Any, predicate: Callable[[Any], Any], what: str, timeout: float = WAIT) -> Any:
    """selenium's WebDriverWait: the predicate's first truthy value, or a TimeoutException naming ``what``."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(driver, timeout, poll_frequency=0.05, ignored_exceptions=[StaleElementReferenceException])
    return wait.until(predicate, message=f"waiting for {what}")


def shot(driver: Any, path: Path) -> None:
    driver.save_screenshot(str(path))
    assert path.stat().st_size > 5000, f"{path} looks blank"
    print(f"screenshot: {path}")


def job_page(driver: Any, server: ServerProcess, job_id: str) -> dict[str, Any]:
    driver.get(f"{server.base}/rq/0/view/job/{job_id}")
    page: dict[str, Any] = until(driver, lambda d: d.execute_script(JOB_PAGE_JS), f"the job page of {job_id}")
    return page


def job_rows(driver: Any, server: ServerProcess, registry: str, want: Callable[[list[dict[str, Any]]], bool]) -> Any:
    driver.get(f"{server.base}/rq/0/view/jobs/{QUEUE}/{registry}/20/asc/1")
    return until(
        driver, lambda d: (rows := d.execute_script(JOB_ROWS_JS)) is not None and want(rows) and rows, registry
    )


def meta_of(page: dict[str, Any]) -> dict[str, Any]:
    meta: dict[str, Any] = json.loads(page["metadata"])
    return meta


def truth_batch(make_sq: Callable[..., ServiceQ]) -> tuple[ServiceQ, dict[str, str], dict[str, Any]]:
    """One batch worked by a real ServiceQWorker: a passed task, one that retried then failed, a NO_RETRY failure."""
    sq = make_sq("drag", worker_count=0, waiting_period=0, resting_period=0)
    sq.set_retry_config(retry_limit=1)
    sq.set_task_function(tasks.returns)
    passed, retried, no_retry = sq.push_many(
        [
            {"value": [True, PASSED_REMARK]},
            {"value": [False, RETRIED_REMARK]},
            {"value": [False, NO_RETRY_REMARK], "note": HOSTILE},
        ]
    )
    drain(sq)
    report = sq.wait_for_batch(timeout=WAIT)
    assert (report["total_success"], report["total_failed"], report["total_pending"]) == (1, 2, 0)
    return sq, {"passed": passed, "retried": retried, "no_retry": no_retry}, report


def test_rq_dashboard_pages_show_each_outcome(
    make_sq: Callable[..., ServiceQ], server: ServerProcess, browser: Any, tmp_path: Path
) -> None:
    _, ids, report = truth_batch(make_sq)
    batch_id = report["batch_id"]

    def meta(remark: str, retries: int, outcome: str) -> dict[str, Any]:
        return {"serviceq": "drag", "batch_id": batch_id, "remark": remark, "total_retry_attempts": retries,
                "outcome": outcome}  # fmt: skip

    # The queue list: nothing queued or running, 1 passed ("finished"), 2 failed.
    browser.get(f"{server.base}/rq/")
    queues = until(browser, lambda d: d.execute_script(QUEUE_ROWS_JS).get(QUEUE), "drag-pending in the queue list")
    assert (queues["queued"], queues["started"], queues["finished"], queues["failed"]) == (0, 0, 1, 2)
    shot(browser, tmp_path / "01-queues.png")

    # The failed registry lists both failed tasks, each with its remark and a Requeue button.
    rows = job_rows(browser, server, "failed", lambda rows: len(rows) == 2)
    assert {row["id"]: row["exception_info"] for row in rows} == {
        ids["retried"]: RETRIED_REMARK,
        ids["no_retry"]: NO_RETRY_REMARK,
    }
    assert all(row["requeue"] for row in rows)
    shot(browser, tmp_path / "02-failed-registry.png")
    assert [row["id"] for row in job_rows(browser, server, "finished", lambda rows: len(rows) == 1)] == [ids["passed"]]

    # A passed task: its remark is the Result; no exception; Metadata has remark, retries, batch, service queue.
    page = job_page(browser, server, ids["passed"])
    assert page["status"] == "finished"
    assert json.loads(page["result"]) == PASSED_REMARK  # shown as text, its <b> included
    assert page["exception_info"] == ""
    assert meta_of(page) == meta(PASSED_REMARK, 0, "passed")
    assert not page["requeue_shown"]
    shot(browser, tmp_path / "03-job-passed.png")

    # A task that retried once, then failed: the last attempt's remark is its Exception Info; 1 retry.
    page = job_page(browser, server, ids["retried"])
    assert (page["status"], page["exception_info"], page["result"]) == ("failed", RETRIED_REMARK, "null")
    assert meta_of(page) == meta(RETRIED_REMARK, 1, "failed")
    assert page["requeue_shown"]
    shot(browser, tmp_path / "04-job-retried-then-failed.png")

    # A NO_RETRY failure; the task's data (in the description) is shown as text and runs nothing.
    page = job_page(browser, server, ids["no_retry"])
    assert (page["status"], page["exception_info"]) == ("failed", NO_RETRY_REMARK)
    assert meta_of(page) == meta(NO_RETRY_REMARK, 0, "failed")
    assert HOSTILE.replace('"', '\\"') in page["description"]
    assert page["title"] != "pwned" and browser.title != "pwned"
    shot(browser, tmp_path / "05-job-no-retry.png")

    # The JSON the pages read says the same (text fields HTML-escaped: the job page writes them as HTML).
    auth = {"Authorization": f"Bearer {TOKEN}"}
    info = httpx.get(f"{server.base}/rq/0/data/job/{ids['no_retry']}.json", headers=auth).json()
    assert info["exc_info"] == NO_RETRY_REMARK.replace("<", "&lt;").replace(">", "&gt;")
    drag = next(q for q in httpx.get(f"{server.base}/rq/0/data/queues.json", headers=auth).json()["queues"]
                if q["name"] == QUEUE)  # fmt: skip
    assert (drag["count"], drag["finished_job_registry_count"], drag["failed_job_registry_count"]) == (0, 1, 2)


def test_requeue_buttons_make_new_tasks_counted_once(
    make_sq: Callable[..., ServiceQ], conn: Redis, server: ServerProcess, browser: Any, tmp_path: Path
) -> None:
    """Requeue on a failed task's page, then Requeue All on the failed list: a real worker then runs each as a
    new task ``<id>-r1`` of a new batch, counted once; the batch they failed in keeps its report."""
    from selenium.webdriver.common.by import By

    sq, ids, first = truth_batch(make_sq)
    queued: Callable[[], list[str]] = lambda: [text(x) for x in conn.lrange(f"rq:queue:{QUEUE}", 0, -1)]  # noqa: E731

    # Behind the token, and only as the dashboard's own buttons send it (a link or another site's form: refused).
    xhr = {"X-Requested-With": "XMLHttpRequest"}
    assert httpx.post(f"{server.base}/rq/job/{ids['no_retry']}/requeue", headers=xhr).status_code == 401
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    assert httpx.get(f"{server.base}/rq/requeue/{QUEUE}", headers=bearer).status_code == 403
    assert httpx.post(f"{server.base}/rq/requeue/{QUEUE}", headers=bearer).status_code == 403
    assert queued() == []

    page = job_page(browser, server, ids["no_retry"])
    assert page["requeue_shown"]
    browser.find_element(By.ID, "requeue-job-btn").click()
    until(browser, lambda _: queued() == [ids["no_retry"]], "the task back on drag-pending")
    shot(browser, tmp_path / "01-requeued-from-job-page.png")

    job_rows(browser, server, "failed", lambda rows: [row["id"] for row in rows] == [ids["retried"]])
    browser.find_element(By.ID, "requeue-all-btn").click()
    shown = "return getComputedStyle(document.getElementById('confirmation-modal')).opacity === '1'"
    until(browser, lambda d: d.execute_script(shown), "the confirmation dialog, faded in")
    shot(browser, tmp_path / "02-requeue-all-confirm.png")
    browser.find_element(By.ID, "confirmation-modal-yes").click()
    until(browser, lambda _: queued() == [ids["no_retry"], ids["retried"]], "both failed tasks back on the queue")

    drain(sq)  # a real ServiceQWorker
    second = sq.wait_for_batch(timeout=WAIT)
    assert second["batch_id"] != first["batch_id"]
    assert (second["total_submitted"], second["total_success"], second["total_failed"], second["total_pending"]) == (
        2,
        0,
        2,
        0,
    )
    again = {q["task_id"]: q for q in second["failed_tasks"]}
    assert set(again) == {f"{ids['no_retry']}-r1", f"{ids['retried']}-r1"}
    assert again[f"{ids['retried']}-r1"]["total_retry_attempts"] == 1  # a fresh retry count, used again
    assert sq.get_batch_report(first["batch_id"]) == first  # the old report, unchanged
    assert sq.get_batch_report(second["batch_id"]) == second  # and each counted once
    assert queued() == []

    # The pages agree: the new tasks are the failed registry; the old task's page still tells its story.
    rows = job_rows(browser, server, "failed", lambda rows: len(rows) == 2)
    assert {row["id"] for row in rows} == set(again)
    shot(browser, tmp_path / "03-failed-registry-after.png")
    page = job_page(browser, server, f"{ids['no_retry']}-r1")
    assert (page["exception_info"], meta_of(page)["batch_id"]) == (NO_RETRY_REMARK, second["batch_id"])
    shot(browser, tmp_path / "04-new-task.png")
    page = job_page(browser, server, ids["no_retry"])
    assert (page["status"], page["exception_info"]) == ("failed", NO_RETRY_REMARK)
    assert meta_of(page)["batch_id"] == first["batch_id"]  # its meta was saved back as JSON, not pickle
    shot(browser, tmp_path / "05-old-task.png")


# --- rq info ---------------------------------------------------------------------------------------------------
QUEUE_LINE = re.compile(rf"^{QUEUE}\s+\S*\s*(\d+), (\d+) executing, (\d+) finished, (\d+) failed$", re.M)


def rq_info(redis_url: str, *args: str) -> str:
    """RQ's own CLI in a subprocess, as an operator types it: ``rq info --url URL ...``."""
    rq = Path(sys.executable).with_name("rq")
    cmd = [str(rq)] if rq.exists() else [sys.executable, "-m", "rq.cli"]
    done = subprocess.run(
        [*cmd, "info", "--url", redis_url, *args], capture_output=True, text=True, timeout=60, cwd=ROOT, env=os.environ
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def queue_counts(output: str) -> tuple[int, ...]:
    match = QUEUE_LINE.search(output)
    assert match, output
    return tuple(int(n) for n in match.groups())


def run_to_gate(
    make_sq: Callable[..., ServiceQ], conn: Redis, spawn_cli_worker: Callable[..., Any]
) -> tuple[ServiceQ, list[str]]:
    """A batch mid-way under a real ``rq worker --worker-class ServiceQWorker``: one passed, one failed, the third
    running (held at a gate), two queued.  A resting period makes the worker claim one task at a time."""
    sq = make_sq("drag", worker_count=0, waiting_period=0, resting_period=0.01, auto_start=False)
    sq.set_task_function(tasks.gated)
    ids = sq.push_many(
        [
            {"value": [True, "SUCCESS | one"]},
            {"value": [False, "NO_RETRY | two"]},
            {"value": [True, "SUCCESS | three"], "gate": True},
            {"value": True},
            {"value": True},
        ]
    )
    spawn_cli_worker(QUEUE)
    at_gate = conn.blpop(["test:at-gate"], timeout=WAIT)
    assert at_gate is not None, "the worker never reached the gated task"
    assert text(at_gate[1]) == ids[2]
    return sq, ids


def test_rq_info_counts_a_batch_midway_and_after(
    make_sq: Callable[..., ServiceQ], conn: Redis, redis_url: str, spawn_cli_worker: Callable[..., Any]
) -> None:
    sq, _ = run_to_gate(make_sq, conn, spawn_cli_worker)
    try:
        midway = rq_info(redis_url, QUEUE)
        report = sq.get_batch_report()
    finally:
        conn.rpush("test:gate", 1)
    # queued, executing, finished (passed), failed: as the batch counts them (no retry is waiting).
    assert queue_counts(midway) == (2, 1, 1, 1)
    assert (report["total_pending"], report["total_success"], report["total_failed"]) == (3, 1, 1)

    report = sq.wait_for_batch(timeout=WAIT)
    assert (report["total_success"], report["total_failed"], report["total_pending"]) == (4, 1, 0)
    after = rq_info(redis_url, QUEUE)
    assert queue_counts(after) == (0, 0, 4, 1)
    assert re.search(r"jobs: 4 finished, 1 failed$", after, re.M), after  # the worker's own line
    print(midway, after, sep="\n")


def test_a_running_task_is_its_workers_current_job(
    make_sq: Callable[..., ServiceQ],
    conn: Redis,
    redis_url: str,
    spawn_cli_worker: Callable[..., Any],
    server: ServerProcess,
    browser: Any,
    tmp_path: Path,
) -> None:
    """While a task runs, RQ's worker hash says ``busy`` with the task as ``current_job``; ``rq info`` shows the
    worker busy, and rq-dashboard's worker list links the task (by its description) from "Current job"."""
    _, ids = run_to_gate(make_sq, conn, spawn_cli_worker)
    running = ids[2]
    try:
        (worker,) = Worker.all(connection=conn)
        assert worker.get_state() == "busy"
        assert worker.get_current_job_id() == running
        assert re.search(rf"^{re.escape(worker.name)} \(.*\): busy {QUEUE}\.", rq_info(redis_url, "-W"), re.M)

        browser.get(f"{server.base}/rq/0/view/workers")
        (row,) = until(browser, lambda d: d.execute_script(WORKER_ROWS_JS), "the worker list")
        shot(browser, tmp_path / "01-workers.png")
        assert row["name"] == worker.name and row["queues"] == QUEUE
        assert row["href"] and row["href"].endswith(f"/view/job/{running}")
        assert row["current_job"].startswith("tests.tasks.gated(")
    finally:
        conn.rpush("test:gate", 1)


# --- rq requeue ------------------------------------------------------------------------------------------------
def requeued_by_rq_cli(make_sq: Callable[..., ServiceQ], conn: Redis, redis_url: str, *flags: str) -> dict[str, Any]:
    """``rq requeue --all`` on a failed task, then a real worker: the old task's meta, as RQ's readers see it."""
    sq = make_sq("drag", worker_count=0, waiting_period=0, resting_period=0)
    sq.set_task_function(tasks.returns)
    (failed,) = sq.push_many([{"value": [False, NO_RETRY_REMARK]}])
    drain(sq)
    first = sq.wait_for_batch(timeout=WAIT)
    rq = Path(sys.executable).with_name("rq")
    cmd = [str(rq)] if rq.exists() else [sys.executable, "-m", "rq.cli"]
    done = subprocess.run(
        [*cmd, "requeue", "--url", redis_url, "--queue", QUEUE, "--all", *flags], capture_output=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    drain(sq)
    assert [q["task_id"] for q in sq.wait_for_batch(timeout=WAIT)["failed_tasks"]] == [f"{failed}-r1"]
    assert sq.get_batch_report(first["batch_id"]) == first
    meta: dict[str, Any] = Job.fetch(failed, connection=conn, serializer=JSONSerializer).get_meta()
    assert meta["batch_id"] == first["batch_id"] and meta["remark"] == NO_RETRY_REMARK
    return meta


def test_rq_requeue_with_the_json_serializer_keeps_the_old_task_readable(
    make_sq: Callable[..., ServiceQ], conn: Redis, redis_url: str
) -> None:
    requeued_by_rq_cli(make_sq, conn, redis_url, "-S", "rq.serializers.JSONSerializer")


def test_rq_requeue_with_its_default_serializer_keeps_the_old_task_readable(
    make_sq: Callable[..., ServiceQ], conn: Redis, redis_url: str
) -> None:
    requeued_by_rq_cli(make_sq, conn, redis_url)
