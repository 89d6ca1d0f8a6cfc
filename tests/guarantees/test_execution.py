"""How a worker runs the tasks it claims: serially, on threads, on an event loop, or forked."""

from __future__ import annotations

import collections
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import pytest
from redis import Redis

from rq_serviceq import ForkingServiceQWorker, ServiceQ
from rq_serviceq.batch.ledger import settle
from rq_serviceq.task.remarks import Outcome, Verdict
from rq_serviceq.worker.claim import claim
from rq_serviceq.worker.leases import TASK_LEASE
from tests import tasks
from tests.conftest import ROOT, drain, text, wait_until


def test_threads_run_tasks_at_once(make_sq: Callable[..., ServiceQ], conn: Redis) -> None:
    sq = make_sq("io", worker_count=0, concurrency=4)
    sq.set_task_function(tasks.concurrent_probe)
    sq.push_many([{"i": i, "seconds": 0.2} for i in range(8)])
    drain(sq)
    report = sq.get_batch_report()
    assert report["total_success"] == 8
    assert max(int(x) for x in conn.lrange("test:overlap", 0, -1)) > 1


def test_async_task_functions_share_one_event_loop(make_sq: Callable[..., ServiceQ], conn: Redis) -> None:
    sq = make_sq("aio", worker_count=0, concurrency=5)
    sq.set_task_function(tasks.async_probe)
    sq.push_many([{"i": i, "seconds": 0.2} for i in range(10)])
    drain(sq)
    report = sq.get_batch_report()
    assert report["total_success"] == 10
    assert sorted(q["remark"] for q in report["passed_tasks"]) == sorted(f"SUCCESS | async {i}" for i in range(10))
    assert max(int(x) for x in conn.lrange("test:overlap", 0, -1)) > 1


def test_async_function_with_concurrency_one(make_sq: Callable[..., ServiceQ]) -> None:
    sq = make_sq("aio1", worker_count=0)
    sq.set_task_function(tasks.async_probe)
    sq.push({"i": 1, "seconds": 0.01})
    drain(sq)
    assert sq.get_batch_report()["passed_tasks"][0]["remark"] == "SUCCESS | async 1"


def test_forking_worker_isolates_a_crashing_task(make_sq: Callable[..., ServiceQ]) -> None:
    sq = make_sq("forky", worker_count=0)
    sq.set_retry_config(retry_limit=1)
    sq.set_task_function(tasks.crash)
    sq.push_many([{"crash": True}, {"crash": False}])
    ForkingServiceQWorker("forky-pending", connection=sq.connection).work(burst=True, logging_level="WARNING")
    report = sq.get_batch_report()
    assert (report["total_success"], report["total_failed"]) == (1, 1)
    failed = report["failed_tasks"][0]
    assert failed["remark"] == "RETRY | work horse died (exit code 3) before reporting an outcome"
    assert failed["total_retry_attempts"] == 1


def test_forking_worker_runs_each_task_in_its_own_process(make_sq: Callable[..., ServiceQ]) -> None:
    sq = make_sq("forky", worker_count=0)
    sq.set_task_function(tasks.pid_of_runner)
    sq.push_many([{} for _ in range(3)])
    ForkingServiceQWorker("forky-pending", connection=sq.connection).work(burst=True, logging_level="WARNING")
    pids = {q["remark"].split("|")[1].strip() for q in sq.get_batch_report()["passed_tasks"]}
    assert len(pids) == 3 and str(os.getpid()) not in pids


def test_tasks_claimed_while_a_slow_task_runs_keep_their_lease_and_run_once(
    make_sq: Callable[..., ServiceQ], conn: Redis
) -> None:
    """A worker of quick tasks claims its next group as a group starts (``worker/ahead.py``).  When a task
    in the running group outlasts the lease, the early group's leases are renewed meanwhile: were they let
    lapse, a claim would hand those tasks out again while this worker still means to run them."""
    sq = make_sq("ahead", worker_count=0, concurrency=1)
    sq.set_task_function(tasks.timed)
    sq.push_many([{"i": i, "seconds": 0} for i in range(150)] + [{"i": 150, "seconds": 3.0}]
                 + [{"i": i, "seconds": 0} for i in range(151, 300)])  # fmt: skip
    tasks.ShortLeaseWorker("ahead-pending", connection=conn).work(burst=True, logging_level="WARNING")
    starts = [text(x).split(":")[1] for x in conn.lrange("test:starts", 0, -1)]
    assert sorted(starts, key=int) == [str(i) for i in range(300)]  # each started once
    report = sq.get_batch_report()
    assert (report["total_success"], report["total_failed"]) == (300, 0)


def _starts_by_task(conn: Redis) -> collections.Counter[str]:
    return collections.Counter(text(x).split(":")[1] for x in conn.lrange("test:starts", 0, -1))


REFILLED = pytest.mark.parametrize("func", [tasks.timed, tasks.async_timed], ids=["threads", "asyncio"])


@REFILLED
def test_a_warm_stop_records_the_group_queued_behind_the_running_one(
    make_sq: Callable[..., ServiceQ],
    conn: Redis,
    spawn_cli_worker: Callable[..., subprocess.Popen[bytes]],
    func: Callable[..., Any],
) -> None:
    """On threads or its event loop a worker queues its next group behind the running one (slots refill as
    they free).  A SIGTERM then: what started finishes and is recorded, what did not goes back; nothing runs
    twice."""
    sq = make_sq("refill", worker_count=0, concurrency=4)
    sq.set_task_function(func)
    sq.push_many([{"i": i, "seconds": 0.01} for i in range(600)])
    worker = spawn_cli_worker("refill-pending")
    wait_until(lambda: sq.get_status_info()["total_success"] >= 100, timeout=30)
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(30) == 0
    info = sq.get_status_info()
    assert info["pending_q_length"] == 600 - info["total_success"]  # nothing held by the stopped worker
    assert conn.zcard(sq.keys.leases) == 0
    assert max(_starts_by_task(conn).values()) == 1
    drain(sq)
    assert sq.get_batch_report()["total_success"] == 600
    assert sorted(_starts_by_task(conn).values()) == [1] * 600


@REFILLED
def test_a_killed_worker_with_a_group_queued_behind_loses_no_outcome(
    make_sq: Callable[..., ServiceQ], conn: Redis, func: Callable[..., Any]
) -> None:
    """SIGKILL while two groups are in flight: the journal kept for the second (a settle of the first
    keeps its entries) lets the takeover settle every task that had ended; only tasks running at the kill
    (at most one a slot) run again, and every task is counted once."""
    sq = make_sq("refill", worker_count=0, concurrency=4)
    sq.set_task_function(func)
    sq.push_many([{"i": i, "seconds": 0.01} for i in range(600)])
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    cmd = [sys.executable, "-m", "rq.cli", "worker", "-w", "tests.tasks.ShortLeaseWorker", "-q", "refill-pending"]
    victim = subprocess.Popen(cmd, env=env, cwd=ROOT)
    try:
        wait_until(lambda: sq.get_status_info()["total_success"] >= 150, timeout=30)
        victim.kill()
        victim.wait(10)
        ended_before = _starts_by_task(conn)
        heir = subprocess.Popen([*cmd[:-1], "--burst", "refill-pending"], env=env, cwd=ROOT)
        assert heir.wait(60) == 0
    finally:
        victim.kill()
    report = sq.get_batch_report()
    assert (report["total_success"], report["total_failed"]) == (600, 0)
    starts = _starts_by_task(conn)
    assert sorted(starts) == sorted(str(i) for i in range(600))
    again = [i for i, n in starts.items() if n > 1]
    assert len(again) <= 4 and all(ended_before[i] == 1 for i in again)


def test_warm_shutdown_gives_unstarted_tasks_back(
    make_sq: Callable[..., ServiceQ], spawn_cli_worker: Callable[..., subprocess.Popen[bytes]]
) -> None:
    """SIGTERM while a claimed group runs: the running task finishes, the rest go back to the queue."""
    sq = make_sq("drag", worker_count=0)
    sq.set_task_function(tasks.slow)
    # Teach the worker that tasks are quick, so it claims a group, then make them slow.
    sq.push_many([{"seconds": 0} for _ in range(200)])
    worker = spawn_cli_worker("drag-pending")
    sq.wait_for_batch(timeout=30)
    sq.push_many([{"seconds": 0.3} for _ in range(20)])
    wait_until(lambda: sq.get_status_info()["total_success"] >= 1, timeout=30)
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(30) == 0
    info = sq.get_status_info()
    done = info["total_success"]
    assert done < 20
    assert info["pending_q_length"] == 20 - done  # nothing held by the stopped worker
    assert sq.connection.zcard(sq.keys.leases) == 0
    drain(sq)
    assert sq.get_batch_report()["total_success"] == 20


def test_a_settle_with_the_next_group_running_keeps_that_groups_journal(
    make_sq: Callable[..., ServiceQ], conn: Redis
) -> None:
    """SETTLE deletes the worker's journal when the group was all it held; with the next group queued
    behind (``keep_journal``), it keeps the last entries, which that group may have written already."""
    sq = make_sq("refill", worker_count=0)
    sq.push_many([{"i": i} for i in range(2)])
    journal = sq.keys.journal("w")
    for keep, expected in ((3, [b"e2", b"e3", b"e4"]), (0, [])):
        conn.rpush(journal, b"e0", b"e1", b"e2", b"e3", b"e4")
        got = claim(conn, sq.keys, "w", sq.settings, 1, TASK_LEASE)
        settle(conn, sq.keys, "w", got.settings, [(got.jobs[0], Outcome(Verdict.PASS, "SUCCESS"))], None, keep)
        assert conn.lrange(journal, 0, -1) == expected
        conn.delete(journal)
