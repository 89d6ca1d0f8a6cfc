"""Tasks that misbehave, and workers that cannot run them: each is the task's problem (or the machine's), never
the batch's.  Real worker processes where the behaviour is about processes; real Redis throughout."""

from __future__ import annotations

import logging
import signal
import time
from collections.abc import Callable
from typing import Any

import pytest
from redis import Redis
from redis.connection import Connection

from rq_serviceq import ServiceQ
from rq_serviceq.testing import free_port
from rq_serviceq.worker import spool
from tests import tasks
from tests.conftest import drain, set_call, text, wait_until

FORKING = ("--worker-class", "rq_serviceq.ForkingServiceQWorker")  # the later --worker-class wins


def _redis_time(conn: Redis) -> float:
    secs, micros = conn.time()
    return secs + micros / 1e6


def _field(conn: Redis, task_id: str, name: str) -> str | None:
    value = conn.hget(f"rq:job:{task_id}", name)
    return None if value is None else text(value)


def _only_worker(sq: ServiceQ) -> str:
    reports: dict[str, object] = sq.get_status_info()["worker_reports"]
    (name,) = reports
    return name


def _registered(conn: Redis, name: str) -> bool:
    return bool(conn.exists(f"rq:worker:{name}")) and bool(conn.sismember("rq:workers", f"rq:worker:{name}"))


EXIT_REMARKS = ["RETRY | KeyboardInterrupt: typed ^C", "RETRY | SystemExit: 3"]


# --- 1. SystemExit / KeyboardInterrupt from a task function -----------------------------------
@pytest.mark.parametrize(
    ("func", "concurrency"),
    [(tasks.exits, 1), (tasks.exits, 4), (tasks.async_exits, 2)],
    ids=["serial", "threads", "asyncio"],
)
def test_systemexit_from_a_task_is_its_outcome_but_a_cold_shutdown_still_stops_the_worker(
    make_sq: Callable[..., ServiceQ], conn: Redis, spawn_cli_worker: Any, func: Any, concurrency: int
) -> None:
    sq = make_sq("drag", worker_count=0, concurrency=concurrency)
    sq.set_task_function(func)
    sq.push_many([{"raise": "SystemExit"}, {"raise": "KeyboardInterrupt"}, {}])
    worker = spawn_cli_worker("drag-pending")
    report = sq.wait_for_batch(timeout=20)
    assert sorted(q["remark"] for q in report["failed_tasks"]) == EXIT_REMARKS
    assert report["total_success"] == 1
    name = _only_worker(sq)
    assert worker.poll() is None and _registered(conn, name)

    # The worker's own way out still works: a second SIGTERM (RQ's cold shutdown) while tasks hang.
    sq.push_many([{"hang": True}, {"hang": True}])
    wait_until(lambda: conn.llen("test:hanging") >= 1)  # one or both, as the claim grouped them
    worker.send_signal(signal.SIGTERM)  # warm: waits for the running tasks
    wait_until(lambda: conn.hexists(f"rq:worker:{name}", "shutdown_requested_date"))
    time.sleep(1.1)  # RQ ignores a second signal that comes within 1 s of the first (request_force_stop)
    worker.send_signal(signal.SIGTERM)
    worker.wait(15)  # the hanging tasks would take an hour


# --- 2. the forked work horse ------------------------------------------------------------------
def test_a_forked_task_raising_systemexit_leaves_the_worker_registered_and_listening(
    make_sq: Callable[..., ServiceQ], conn: Redis, spawn_cli_worker: Any
) -> None:
    sq = make_sq("drag", worker_count=0)
    sq.set_task_function(tasks.blocks)
    worker = spawn_cli_worker("drag-pending", *FORKING)
    wait_until(lambda: sq.get_status_info()["worker_reports"])
    name = _only_worker(sq)
    sq.push_many([{"raise": "SystemExit"}, {"raise": "KeyboardInterrupt"}, {}])
    report = sq.wait_for_batch(timeout=20)
    assert _registered(conn, name), "a work horse unwound into the worker's teardown"
    assert sorted(q["remark"] for q in report["failed_tasks"]) == EXIT_REMARKS

    # Still subscribed to its command channel: pause() reaches it and gets its acknowledgement.
    sq.push({"block": True})
    wait_until(lambda: conn.llen("test:blocking") == 1)
    assert int(text(conn.lindex("test:blocking", 0))) != int(text(conn.hget(f"rq:worker:{name}", "pid")))  # in a horse
    sq.pause()
    gen = int(text(conn.hget(sq.keys.state, "pause_gen")))
    assert conn.sismember(sq.keys.acks(gen), name)
    conn.rpush("test:release", 1)
    sq.resume()
    assert sq.wait_for_batch(timeout=20)["total_success"] == 1
    assert worker.poll() is None and _registered(conn, name)


# --- 3. the pause window -----------------------------------------------------------------------
def test_no_task_starts_after_pause_returns_even_if_the_pause_lands_mid_check(
    make_sq: Callable[..., ServiceQ], conn: Redis, spawn_cli_worker: Any
) -> None:
    sq = make_sq("drag", worker_count=0)
    sq.set_task_function(tasks.timed)
    spawn_cli_worker("drag-pending", "--worker-class", "tests.tasks.SlowStartWorker")
    sq.push({"i": 0, "seconds": 0})  # warms the worker (and its tasks' connection) up
    sq.wait_for_batch(timeout=20)
    conn.set("test:widen", 1)
    sq.push({"i": 1, "seconds": 0})
    wait_until(lambda: conn.llen("test:window") == 1)  # the worker is between "may start" and the start
    sq.pause()
    paused_at = _redis_time(conn)
    conn.set("test:pause_returned", 1)
    wait_until(lambda: conn.llen("test:starts") == 2)  # it was let start before pause() returned: it runs
    # The guarantee is about the decision: the task was let start before pause() returned.  (Its first
    # line runs just after; on a busy machine that can be after pause() returned, and proves nothing.)
    committed_at = float(text(conn.lindex("test:committed", 0)))
    assert committed_at < paused_at, "a task was let start after pause() returned"
    sq.resume()
    assert sq.wait_for_batch(timeout=20)["total_success"] == 1


# --- 4. the journal ----------------------------------------------------------------------------
@pytest.mark.parametrize("carrier", ["spool", "redis"])
@pytest.mark.parametrize("concurrency", [1, 4], ids=["serial", "threads"])
def test_a_worker_killed_by_a_task_leaves_the_outcomes_of_the_tasks_before_it_journaled(
    make_sq: Callable[..., ServiceQ],
    conn: Redis,
    spawn_cli_worker: Any,
    concurrency: int,
    carrier: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The journal in Redis once the worker is gone: written there as each task went (``redis``), or put
    there from the worker's spool by its watcher (the default: rq_serviceq/worker/spool.py)."""
    monkeypatch.setenv(spool.ENV, carrier)
    sq = make_sq("drag", worker_count=0, concurrency=concurrency)
    sq.set_task_function(tasks.dies)
    before = sq.push_many([{}, {"fail": True}])
    (killer,) = sq.push_many([{"die": True, "after": before}])
    later = sq.push_many([{}, {}])
    worker = spawn_cli_worker("drag-pending")  # one worker, five tasks queued: one group of five
    assert worker.wait(30) == 1  # os._exit(1)
    group = [*before, killer, *later]
    claims = {task_id: _field(conn, task_id, "sq_claim") for task_id in group}
    assert len(set(claims.values())) == 1 and None not in claims.values() and "" not in claims.values()
    assert len({_field(conn, task_id, "worker_name") for task_id in group}) == 1
    claim = claims[killer]
    wait_until(lambda: tasks.journal_of(conn, killer), timeout=10)  # the watcher's: after its worker died
    journal = set(tasks.journal_of(conn, killer))  # the dead worker's (rq_serviceq/worker/journal.py)
    expected = [("pass", "SUCCESS | ok"), ("retry", "RETRY | asked to fail")]
    for task_id, (verdict, remark) in zip(before, expected, strict=True):
        assert f"s{task_id}\x1f{claim}" in journal
        assert f"o{task_id}\x1f{claim}\x1f{verdict}\x1f{remark}" in journal
    assert f"s{killer}\x1f{claim}" in journal
    assert not any(entry.startswith(f"o{killer}\x1f") for entry in journal)
    if concurrency == 1:  # one after another: the tasks after the killer never started
        for task_id in later:
            assert not any(entry[1:].startswith(f"{task_id}\x1f") for entry in journal)


def test_a_journal_that_cannot_reach_redis_fails_no_task(
    make_sq: Callable[..., ServiceQ], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from rq_serviceq.worker import journal

    monkeypatch.setattr(journal, "own_connection", lambda pool: Connection(port=free_port()))  # nobody there
    sq = make_sq("drag", worker_count=0)
    sq.set_task_function(tasks.returns)
    sq.push_many([{"value": True} for _ in range(5)])
    with caplog.at_level(logging.WARNING, logger="rq_serviceq"):
        drain(sq)
    assert sq.get_batch_report()["total_success"] == 5
    assert "is unreachable (ConnectionError" in caplog.text and "during task journal write" in caplog.text


# --- 5. a worker that cannot import the task function ------------------------------------------
def test_a_worker_that_cannot_import_the_task_function_gives_the_tasks_back_and_waits(
    make_sq: Callable[..., ServiceQ], conn: Redis, spawn_cli_worker: Any
) -> None:
    sq = make_sq("drag", worker_count=0)
    conn.hset(sq.keys.state, "task_function", "tests.tasks.no_such_function")  # as set on another machine
    sq.push_many([{"value": True} for _ in range(3)])
    worker = spawn_cli_worker("drag-pending")
    wait_until(lambda: sq.get_status_info()["task_function_errors"], timeout=20)
    info = sq.get_status_info()
    ((name, why),) = info["task_function_errors"].items()
    assert name == _only_worker(sq)
    assert why.startswith("tests.tasks.no_such_function: ") and "no_such_function" in why.split(": ", 1)[1]
    assert (info["total_failed"], info["total_pending"]) == (0, 3)
    assert worker.poll() is None

    sq.set_task_function(tasks.returns)
    report = sq.wait_for_batch(timeout=20)
    assert [q["total_retry_attempts"] for q in report["passed_tasks"]] == [0, 0, 0]
    assert sq.get_status_info()["task_function_errors"] == {}


def test_a_burst_worker_without_a_task_function_leaves_the_batch_waiting(
    make_sq: Callable[..., ServiceQ], conn: Redis, spawn_cli_worker: Any
) -> None:
    sq = make_sq("drag", worker_count=0)  # no task function set at all
    sq.push_many([{"value": True} for _ in range(2)])
    worker = spawn_cli_worker("drag-pending", "--burst")
    assert worker.wait(30) == 0
    info = sq.get_status_info()
    assert (info["total_failed"], info["total_pending"], info["pending_q_length"]) == (0, 2, 2)
    assert conn.zcard(sq.keys.leases) == 0
    assert not conn.exists(sq.keys.task_function_errors)  # a worker that left takes its note with it


# --- 6. a task whose data cannot be read ---------------------------------------------------------
def test_a_task_whose_data_cannot_be_read_fails_alone(
    make_sq: Callable[..., ServiceQ], conn: Redis, spawn_cli_worker: Any
) -> None:
    sq = make_sq("drag", worker_count=0)
    sq.set_task_function(tasks.returns)
    ids = sq.push_many([{"value": True} for _ in range(3)])
    set_call(conn, ids[1], b"\x80 not a task")
    worker = spawn_cli_worker("drag-pending")
    wait_until(lambda: sq.get_status_info()["total_pending"] == 0, timeout=20)
    info = sq.get_status_info()
    assert (info["total_success"], info["total_failed"]) == (2, 1)
    remark = _field(conn, ids[1], "sq_remark")
    assert remark is not None and remark.startswith("NO_RETRY | task data cannot be read: ")
    assert _field(conn, ids[0], "sq_final") == _field(conn, ids[2], "sq_final") == "passed"

    # The worker lives on (even should the batch's end work trip over that task) and works the next batch.
    first_batch = sq.current_batch_id()
    sq.push({"value": True})
    assert sq.current_batch_id() != first_batch
    wait_until(lambda: sq.get_status_info()["total_success"] == 1, timeout=20)
    assert worker.poll() is None


# --- 5. a poison task ends its batch ------------------------------------------------------------
def test_a_task_that_kills_its_workers_fails_after_three_deaths_and_its_group_keeps_its_outcomes(
    make_sq: Callable[..., ServiceQ], conn: Redis, spawn_supervisor: Any
) -> None:
    sq = make_sq("drag", worker_count=1, auto_start=False)
    sq.set_task_function(tasks.dies_counted)
    before = sq.push_many([{}, {"fail": True}])
    (killer,) = sq.push_many([{"die": True, "after": before}])
    later = sq.push_many([{}, {}])
    spawn_supervisor("drag")  # replaces each dead worker and reclaims its tasks at once
    report = sq.wait_for_batch(timeout=60)
    remarks = {q["task_id"]: q["remark"] for q in report["passed_tasks"] + report["failed_tasks"]}
    assert remarks[killer].startswith("NO_RETRY | worker died 3 times running this task")
    assert remarks[before[0]] == "SUCCESS | ok" and remarks[before[1]] == "RETRY | asked to fail"
    assert all(remarks[t] == "SUCCESS | ok" for t in later)
    runs = {t: int(conn.get(f"test:runs:{t}") or 0) for t in [*before, killer, *later]}
    assert runs[killer] == 3
    assert all(runs[t] == 1 for t in [*before, *later])  # recorded before the deaths: never run again
    assert (report["total_success"], report["total_failed"], report["total_pending"]) == (3, 2, 0)
