"""The ServiceQ contract: config, status, attach, push validation, outcomes, delete."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from pydantic import ValidationError
from redis import Redis

from rq_serviceq import ServiceQ
from rq_serviceq.serviceq import encode_task
from rq_serviceq.store.keys import Keys
from rq_serviceq.task import stored
from tests import tasks
from tests.conftest import drain, text

STATUS_INFO_KEYS = {
    "batch_id",
    "batch_duration",
    "start_time",
    "end_time",
    "failed_q_length",
    "passed_q_length",
    "pending_q_length",
    "status",
    "total_failed",
    "total_pending",
    "total_submitted",
    "total_success",
    "worker_reports",
}


def test_defaults_and_describe(make_sq: Callable[..., ServiceQ]) -> None:
    sq = make_sq("drag")
    described = sq.describe()
    assert {
        "id",
        "name",
        "auto_start",
        "worker_count",
        "waiting_period",
        "resting_period",
        "retry_limit",
        "loop_backoff",
    } <= set(described)
    assert (described["worker_count"], described["waiting_period"], described["resting_period"]) == (1, 0, 0)
    assert (described["auto_start"], described["retry_limit"], described["loop_backoff"]) == (True, 0, 0)
    assert described["id"] == sq.id and described["name"] == "drag"
    assert sq.get_status() == "CREATED"


def test_config_keeps_omitted_values(make_sq: Callable[..., ServiceQ]) -> None:
    sq = make_sq("drag")
    sq.set_worker_config(worker_count=3, waiting_period=10, resting_period=5, auto_start=False)
    sq.set_worker_config(resting_period=0.5)
    sq.set_retry_config(retry_limit=4, loop_backoff=3)
    sq.set_retry_config(loop_backoff=1.5)
    d = sq.describe()
    assert (d["worker_count"], d["waiting_period"], d["resting_period"], d["auto_start"]) == (3, 10, 0.5, False)
    assert (d["retry_limit"], d["loop_backoff"]) == (4, 1.5)


@pytest.mark.parametrize(
    ("method", "kwargs"),
    [
        ("set_worker_config", {"worker_count": -1}),
        ("set_worker_config", {"waiting_period": -0.1}),
        ("set_worker_config", {"resting_period": float("nan")}),
        ("set_worker_config", {"worker_count": 2.5}),
        ("set_worker_config", {"auto_start": "yes"}),
        ("set_retry_config", {"retry_limit": 1.5}),
        ("set_retry_config", {"retry_limit": -2}),
        ("set_retry_config", {"loop_backoff": -1}),
    ],
)
def test_invalid_config_is_refused_and_changes_nothing(
    make_sq: Callable[..., ServiceQ], method: str, kwargs: dict[str, object]
) -> None:
    sq = make_sq("drag")
    before = sq.describe()
    with pytest.raises(ValidationError):
        getattr(sq, method)(**kwargs)
    assert sq.describe() == before


def test_unknown_config_key_is_refused(make_sq: Callable[..., ServiceQ]) -> None:
    sq = make_sq("drag")
    with pytest.raises(TypeError, match="worker_cnt"):
        sq.set_worker_config(worker_cnt=3)  # type: ignore[call-arg]


@pytest.mark.parametrize("name", ["", "has space", "semi;colon", "a" * 101, "-starts-with-dash", "x:y", None])
def test_bad_names_are_refused(conn: Redis, name: object) -> None:
    with pytest.raises(ValueError, match="invalid service queue name"):
        ServiceQ(name, connection=conn)  # type: ignore[arg-type]
    assert conn.dbsize() == 0


def test_a_second_object_attaches_to_the_same_service_queue(make_sq: Callable[..., ServiceQ], conn: Redis) -> None:
    first = make_sq("drag")
    first.set_worker_config(worker_count=0)
    first.set_retry_config(retry_limit=2)
    first.set_task_function(tasks.seed_task)
    second = ServiceQ("drag", connection=conn)
    assert second.id == first.id
    assert second.describe() == first.describe()
    task_id = second.push({"name": "Tuhin1"})
    assert first.get_status() == "PENDING"
    assert first.get_status_info()["total_submitted"] == 1
    assert second.current_batch_id() == first.current_batch_id()
    assert task_id in [text(b) for b in conn.lrange(first.keys.queue, 0, -1)]


def test_functions_must_be_importable(make_sq: Callable[..., ServiceQ]) -> None:
    sq = make_sq("drag")
    with pytest.raises(ValueError, match="not importable"):
        sq.set_task_function(lambda task: True)

    def nested(task: object) -> bool:
        return True

    with pytest.raises(ValueError, match="not importable"):
        sq.set_batch_end_callback(nested)
    with pytest.raises(ImportError, match="cannot import"):
        sq.set_task_function("no_such_module.func")
    sq.set_task_function("tests.tasks.seed_task")
    assert sq.describe()["task_function"] == "tests.tasks.seed_task"


def test_non_json_tasks_are_refused_and_change_nothing(make_sq: Callable[..., ServiceQ], conn: Redis) -> None:
    sq = make_sq("drag", worker_count=0)
    before = conn.dbsize()
    with pytest.raises(TypeError, match="JSON-serializable"):
        sq.push({"when": object()})
    with pytest.raises(TypeError, match="JSON-serializable"):
        sq.push_many([{"ok": 1}, {"bad": {1, 2}}])
    with pytest.raises(TypeError, match="JSON-serializable"):
        sq.push({"x": float("nan")})
    with pytest.raises(TypeError, match="iterable of tasks"):
        sq.push_many({"name": "not a list"})
    assert conn.dbsize() == before
    assert sq.get_status() == "CREATED"


def test_status_info_keys_and_lifecycle(make_sq: Callable[..., ServiceQ]) -> None:
    sq = make_sq("drag", worker_count=0)
    sq.set_task_function(tasks.returns)
    assert set(sq.get_status_info()) >= STATUS_INFO_KEYS
    sq.push_many([{"value": True}, {"value": [False, "NO_RETRY | nope"]}])
    info = sq.get_status_info()
    assert (info["status"], info["total_submitted"], info["total_pending"], info["pending_q_length"]) == (
        "PENDING",
        2,
        2,
        2,
    )
    drain(sq)
    info = sq.get_status_info()
    assert set(info) >= STATUS_INFO_KEYS
    assert (info["status"], info["total_success"], info["total_failed"], info["total_pending"]) == ("FINISHED", 1, 1, 0)
    assert (info["passed_q_length"], info["failed_q_length"], info["pending_q_length"]) == (1, 1, 0)
    assert info["end_time"] >= info["start_time"]


def test_outcomes_of_exceptions_noretry_and_bad_returns(make_sq: Callable[..., ServiceQ]) -> None:
    sq = make_sq("drag", worker_count=0)
    sq.set_retry_config(retry_limit=1)
    sq.set_task_function(tasks.raises)
    sq.push_many([{"message": "kaput"}, {"no_retry": True, "message": "not registered"}])
    drain(sq)
    failed = {q["task"].get("message"): q for q in sq.get_batch_report()["failed_tasks"]}
    assert failed["kaput"]["remark"] == "RETRY | RuntimeError: kaput"
    assert failed["kaput"]["total_retry_attempts"] == 1
    assert failed["not registered"]["remark"] == "NO_RETRY | not registered"
    assert failed["not registered"]["total_retry_attempts"] == 0

    sq.set_task_function(tasks.returns)
    sq.push_many([{"value": "ok"}, {"value": [False, 7]}, {"value": [True, "SUCCESS | fine"]}])
    drain(sq)
    report = sq.get_batch_report()
    assert [q["remark"] for q in report["passed_tasks"]] == ["SUCCESS | fine"]
    remarks = sorted(q["remark"] for q in report["failed_tasks"])
    assert remarks[0].startswith("RETRY | task function returned 'ok'")
    assert "remark must be a string" in remarks[1]


def test_missing_or_unimportable_task_function(make_sq: Callable[..., ServiceQ], conn: Redis) -> None:
    """A worker with no task function gives the tasks back, retries untouched (tests/guarantees/test_poison.py)."""
    sq = make_sq("drag", worker_count=0)
    sq.push({"value": True})
    drain(sq)
    conn.hset(sq.keys.state, "task_function", "tests.tasks.no_such_function")
    drain(sq)
    info = sq.get_status_info()
    assert (info["total_failed"], info["total_pending"], info["pending_q_length"]) == (0, 1, 1)
    assert conn.zcard(sq.keys.leases) == 0 and info["task_function_errors"] == {}  # the burst worker left
    sq.set_task_function(tasks.returns)
    drain(sq)
    passed = sq.get_batch_report()["passed_tasks"]
    assert [(q["remark"], q["total_retry_attempts"]) for q in passed] == [("SUCCESS", 0)]


def test_each_batch_gets_its_own_id_and_report(make_sq: Callable[..., ServiceQ]) -> None:
    sq = make_sq("drag", worker_count=0)
    sq.set_task_function(tasks.returns)
    sq.push({"value": True})
    first = sq.current_batch_id()
    drain(sq)
    sq.push_many([{"value": True}, {"value": True}])
    second = sq.current_batch_id()
    drain(sq)
    assert first != second
    assert sq.get_batch_report(first)["total_submitted"] == 1
    assert sq.get_batch_report(second)["total_submitted"] == 2
    with pytest.raises(LookupError):
        sq.get_batch_report("nope")


def test_reports_page_through_large_batches(make_sq: Callable[..., ServiceQ]) -> None:
    sq = make_sq("drag", worker_count=0)
    sq.set_task_function(tasks.returns)
    sq.set_report_config(report_inline_limit=10)
    ids = sq.push_many([{"value": True} for _ in range(25)])
    drain(sq)
    report = sq.get_batch_report()
    assert report["tasks_inline"] is False and report["passed_tasks"] == [] and report["total_success"] == 25
    streamed = [q.task_id for q in sq.iter_tasks(report["batch_id"], "passed", page_size=7)]
    assert streamed == ids  # one worker: completion order is push order


def test_finished_batches_expire_after_report_ttl(make_sq: Callable[..., ServiceQ], conn: Redis) -> None:
    sq = make_sq("drag", worker_count=0)
    sq.set_task_function(tasks.returns)
    sq.set_report_config(report_ttl=3600)
    task_id = sq.push({"value": True})
    drain(sq)
    batch_id = sq.current_batch_id()
    assert batch_id is not None
    for key in (f"rq:job:{task_id}", Keys("drag").batch(batch_id), Keys("drag").batch_passed(batch_id)):
        assert 3500 < conn.ttl(key) <= 3600


def test_wait_for_batch_times_out(make_sq: Callable[..., ServiceQ]) -> None:
    sq = make_sq("drag", worker_count=0)
    sq.push({"n": 1})
    with pytest.raises(TimeoutError):
        sq.wait_for_batch(timeout=0.2)


def test_delete_removes_everything(make_sq: Callable[..., ServiceQ], conn: Redis) -> None:
    conn.set("someone-else", "stays")
    sq = make_sq("drag", worker_count=0)
    sq.set_task_function(tasks.returns)
    sq.push_many([{"value": True}, {"value": False}])
    drain(sq)
    sq.push({"value": True})  # one still pending
    sq.delete()
    left = sorted(text(key) for key in conn.keys("*") if not text(key).startswith("rq:worker:"))
    assert left == ["someone-else"]
    # RQ itself keeps a dead worker's hash for 60 s; it is RQ's and expires by itself.
    assert all(0 < conn.ttl(key) <= 60 for key in conn.keys("rq:worker:*"))


def test_open_refuses_an_unknown_name(conn: Redis) -> None:
    with pytest.raises(LookupError, match="no service queue named 'nope'"):
        ServiceQ.open("nope", connection=conn)
    assert conn.dbsize() == 0
    ServiceQ("yes", connection=conn)
    assert ServiceQ.open("yes", connection=conn).name == "yes"


def test_a_push_of_encoded_tasks_is_a_push(make_sq: Callable[..., ServiceQ], conn: Redis) -> None:
    """``push_encoded`` (the HTTP service's push) writes what ``push_many`` writes, opens and counts a batch alike,
    and the facade answers what the HTTP layer asks of it without reaching under it."""
    plain, encoded = make_sq("plain", worker_count=0), make_sq("encoded", worker_count=0)
    work = [{"a": 1}, [2, "three"], "caf\u00e9"]
    plain.push_many(work)
    results = encoded.push_encoded([encode_task(task) for task in work])
    assert [len(r.task_ids) for r in results] == [3] and results[0].opened
    kept = [
        [conn.hmget(f"rq:job:{text(i)}", stored.READ) for i in conn.lrange(sq.keys.queue, 0, -1)]
        for sq in (plain, encoded)
    ]
    assert kept[0] == kept[1] and len(kept[0]) == 3
    assert plain.get_batch_summary()["total_submitted"] == encoded.get_batch_summary()["total_submitted"] == 3
    assert (encoded.queue_name, encoded.live_workers(), ServiceQ.count(conn)) == ("encoded-pending", 0, 2)
    assert str(conn.connection_pool.connection_kwargs["port"]) in ServiceQ.where(conn)
    assert encoded.exists()
    encoded.delete()
    assert not encoded.exists() and ServiceQ.count(conn) == 1


def test_supervisor_cli_refuses_an_unknown_name(redis_url: str, conn: Redis) -> None:
    import subprocess
    import sys

    cmd = [sys.executable, "-m", "rq_serviceq", "worker", "dragg", "--url", redis_url]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    assert done.returncode == 2
    assert "no service queue named 'dragg'" in done.stderr and "--create" in done.stderr
    assert conn.dbsize() == 0
