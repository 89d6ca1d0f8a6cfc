"""What RQ's tools see of a ServiceQWorker (busy with a job, --max-jobs), and the parts it is built of:
one path for a claimed group (worker/cycle.py), one lease policy (leases.py), the lease keeper and the group sizer."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from redis import Redis
from rq.queue import Queue
from rq.worker import Worker

from rq_serviceq import ServiceQ, ServiceQWorker
from rq_serviceq.models import Settings
from rq_serviceq.task.timeouts import TaskTimeout, signal_handler_kept, time_limit
from rq_serviceq.worker import leases
from rq_serviceq.worker.cycle import GroupSizer
from rq_serviceq.worker.keeper import LeaseKeeper
from tests import tasks
from tests.conftest import ROOT, present, wait_until

FORKING = ("--worker-class", "rq_serviceq.ForkingServiceQWorker")  # the later --worker-class wins


def _rq_info(redis_url: str, queue: str) -> str:
    cmd = [sys.executable, "-m", "rq.cli", "info", "--url", redis_url, queue]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, timeout=60, check=True).stdout.decode()


def _info_line(redis_url: str, queue: str, name: str) -> str:
    (line,) = [line for line in _rq_info(redis_url, queue).splitlines() if line.startswith(f"{name} (")]
    return line


def _redis_time(conn: Redis) -> float:
    secs, micros = conn.time()
    return secs + micros / 1e6


# --- RQ's tools see a busy worker busy, with the task it runs -------------------------------------
@pytest.mark.parametrize(
    ("concurrency", "flags"), [(1, ()), (2, ()), (1, FORKING)], ids=["serial", "threads", "forking"]
)
def test_rq_tools_see_a_busy_worker_busy_with_the_running_task(
    make_sq: Callable[..., ServiceQ],
    conn: Redis,
    redis_url: str,
    spawn_cli_worker: Any,
    concurrency: int,
    flags: tuple[str, ...],
) -> None:
    sq = make_sq("drag", worker_count=0, concurrency=concurrency)
    sq.set_task_function(tasks.blocks)
    spawn_cli_worker("drag-pending", *flags)
    wait_until(lambda: sq.get_status_info()["worker_reports"])
    (name,) = sq.get_status_info()["worker_reports"]
    ids = sq.push_many([{"block": True} for _ in range(concurrency)])
    wait_until(lambda: conn.llen("test:blocking") == concurrency)

    worker = Worker.find_by_key(f"rq:worker:{name}", connection=conn)
    assert worker is not None and worker.get_state() == "busy"
    assert worker.get_current_job_id() in ids  # with several at once: the last one started
    (listed,) = Worker.all(queue=Queue("drag-pending", connection=conn))
    assert listed.name == name and listed.get_state() == "busy"
    assert ": busy drag-pending" in _info_line(redis_url, "drag-pending", name)

    conn.rpush("test:release", *[1] * concurrency)
    assert sq.wait_for_batch(timeout=20)["total_success"] == concurrency
    wait_until(lambda: present(Worker.find_by_key(f"rq:worker:{name}", connection=conn)).get_state() == "idle")
    assert present(Worker.find_by_key(f"rq:worker:{name}", connection=conn)).get_current_job_id() is None
    assert ": idle drag-pending" in _info_line(redis_url, "drag-pending", name)


# --- --max-jobs counts tasks ----------------------------------------------------------------------
def test_max_jobs_counts_tasks_not_claimed_groups(
    make_sq: Callable[..., ServiceQ], conn: Redis, spawn_cli_worker: Callable[..., subprocess.Popen[bytes]]
) -> None:
    sq = make_sq("drag", worker_count=0)
    sq.set_task_function(tasks.returns)
    sq.push_many([{"value": True} for _ in range(20)])
    worker = spawn_cli_worker("drag-pending", "--max-jobs", "5")
    assert worker.wait(30) == 0
    info = sq.get_status_info()
    assert (info["total_success"], info["total_failed"], info["total_pending"]) == (5, 0, 15)
    assert conn.llen(sq.keys.queue) == 15  # the other fifteen stay queued, none held
    assert conn.zcard(sq.keys.leases) == 0


def test_max_jobs_in_process_and_positional(make_sq: Callable[..., ServiceQ], conn: Redis) -> None:
    sq = make_sq("drag", worker_count=0)
    sq.set_task_function(tasks.returns)
    sq.push_many([{"value": True} for _ in range(10)])
    worker = ServiceQWorker("drag-pending", connection=conn)
    assert worker.work(burst=True, logging_level="WARNING", max_jobs=3)
    assert sq.get_status_info()["total_success"] == 3
    # max_jobs as RQ's fifth positional parameter (burst, logging_level, date_format, log_format, max_jobs)
    worker = ServiceQWorker("drag-pending", connection=conn)
    worker.work(True, "WARNING", "%H:%M:%S", "%(message)s", 4)
    assert sq.get_status_info()["total_success"] == 7
    ServiceQWorker("drag-pending", connection=conn).work(burst=True, logging_level="WARNING", max_jobs=100)
    assert sq.get_batch_report()["total_success"] == 10  # more allowed than queued: a burst worker ends as ever


# --- work_once: the worker's path, under a worker's renewed lease -------------------------------------
def test_work_once_holds_a_short_lease_and_renews_it(
    make_sq: Callable[..., ServiceQ], conn: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(leases, "TASK_LEASE", 1.0)  # renewed every 1/3 s; the task runs 2.5 s
    sq = make_sq("drag", worker_count=0)
    sq.set_task_function(tasks.slow)
    (task_id,) = sq.push_many([{"seconds": 2.5}])
    outcome: list[dict[str, Any] | None] = []
    runner = threading.Thread(target=lambda: outcome.append(sq.work_once()))
    runner.start()
    wait_until(lambda: conn.zscore(sq.keys.leases, task_id) is not None)
    seen = []
    # 2 s into a 2.5 s task: the lease never run out, and never more than its second ahead plus the rounding
    # up to a whole second that every lease gets (claim.lua), so never the 15 s a long lease would hold
    for _ in range(8):
        left = conn.zscore(sq.keys.leases, task_id)
        if left is None:
            break
        seen.append(left - _redis_time(conn))
        threading.Event().wait(0.25)
    runner.join(10)
    assert len(seen) >= 6 and all(0 < s <= 2.01 for s in seen), seen
    (qtask,) = outcome
    assert qtask is not None and qtask["task_id"] == task_id and qtask["remark"].startswith("SUCCESS")
    report = sq.get_batch_report()
    assert (report["total_success"], report["status"]) == (1, "FINISHED")
    assert not [key for key in conn.keys(sq.keys.journal_prefix + "*")]  # journaled, then deleted by the settle


# --- the lease policy -------------------------------------------------------------------------------
def test_one_lease_policy() -> None:
    assert ServiceQWorker.lease_seconds == leases.TASK_LEASE
    assert leases.renew_every() == leases.TASK_LEASE / 3
    assert leases.unrenewed(60) == 60 + leases.TASK_LEASE
    settings = Settings(name="drag", id="x", callback_timeout=10.0)
    from rq_serviceq.batch import ledger

    assert ledger.finalize_lease(settings) == 3 * 10 + leases.TASK_LEASE


def test_lease_keeper_renews_what_it_holds_until_dropped(conn: Redis) -> None:
    sq = ServiceQ("drag", connection=conn)
    now = _redis_time(conn)
    conn.zadd(sq.keys.leases, {"a": now + 0.6, "b": now + 0.6})
    conn.zadd(sq.keys.finalize, {"batch-1": now + 0.6})
    keeper = LeaseKeeper(conn, sq.keys, lease=0.6)
    keeper.hold(["a", "b"])
    keeper.drop(["b"])
    with keeper.doing("batch-1"):
        threading.Event().wait(1.0)  # five renewals due
        later = _redis_time(conn)
        assert present(conn.zscore(sq.keys.leases, "a")) > later
        assert present(conn.zscore(sq.keys.finalize, "batch-1")) > later
    assert present(conn.zscore(sq.keys.leases, "b")) < later
    keeper.close()


# --- the group sizer --------------------------------------------------------------------------------
def test_group_sizer_claims_about_its_time_budget_of_work() -> None:
    settings = Settings(name="drag", id="x")
    sizer = GroupSizer(seconds=0.05, most=64)
    assert sizer.size(settings, concurrency=1) == 64  # nothing learned yet: as many as allowed
    sizer.learn(seconds=1.0, tasks=10, concurrency=1)  # 0.1 s a task
    assert sizer.size(settings, concurrency=1) == 1
    assert sizer.size(settings, concurrency=8) == 4  # 0.05 s of work on each of 8 slots
    sizer.learn(seconds=0.0, tasks=0, concurrency=1)  # nothing ran: nothing learned
    assert sizer.task_seconds == pytest.approx(0.1)
    assert sizer.size(settings.model_copy(update={"resting_period": 1.0}), concurrency=8) == 1


class _Task:
    """Just what ``Runner`` reads of a claimed task (no journal: the gate has none)."""

    unreadable = ""
    claim = ""

    def __init__(self, n: int, seconds: float) -> None:
        self.id, self.task = f"t{n}", {"seconds": seconds}

    def qtask(self, serviceq_id: str) -> dict[str, Any]:
        return {}


@pytest.mark.parametrize("func", ["tests.tasks.slow", "tests.tasks.async_slow"], ids=["threads", "asyncio"])
def test_a_group_queued_behind_another_starts_as_its_slots_free_and_counts_its_run_time_not_its_span(
    func: str,
) -> None:
    """A group queued behind another (on threads, or on the async runner's one loop) starts as the other's
    slots free, one by one, not once the other has ended: from its first start to its last end it spans their
    stagger too.  Learned from that span, a group of 10 ms tasks on 8 slots looked like 12.5-15 ms a task, and
    the sizer shrank the groups (32, 24, 16) as slots were refilled."""
    from rq_serviceq.worker.run import Runner

    settings = Settings(name="drag", id="x", task_function=func)
    runner = Runner(4)
    try:
        ahead = [_Task(i, 0.01 * (i + 1)) for i in range(4)]  # its slots free at 10, 20, 30 and 40 ms
        behind = [_Task(10 + i, 0.04) for i in range(4)]  # so these start then, and end at 50 .. 80 ms
        began = time.perf_counter()
        first = runner.start(settings, ahead)  # type: ignore[arg-type]
        second = runner.start(settings, behind)  # type: ignore[arg-type]
        first.wait()
        result = second.wait()
    finally:
        runner.close()
    assert len(result.done) == 4
    assert second.gate.first_start is not None and second.gate.first_start - began < 0.03  # the first slot's free
    assert 0.035 < result.seconds < 0.055  # 4 x 40 ms over 4 slots; its span is about 70 ms


def test_the_async_loop_cancels_a_task_at_its_time_limit_and_is_abandoned_with_one_that_blocks_it() -> None:
    """The async runner's one event loop: an awaiting task is cancelled at its time limit; one that blocks the
    loop (a sync call in async code) cannot be, so past the grace period the loop is abandoned with it, and
    the next group runs on a new loop."""
    from rq_serviceq.worker.run import Runner

    settings = Settings(name="drag", id="x", task_function="tests.tasks.async_hang", task_timeout=0.5)
    runner = Runner(4)

    def run(*tasks: dict[str, Any]) -> tuple[list[str], int]:
        jobs = [_Task(i, 0) for i in range(len(tasks))]
        for job, task in zip(jobs, tasks, strict=True):
            job.task = task
        result = runner.run(settings, jobs)  # type: ignore[arg-type]
        return [outcome.remark for _, outcome in result.done], len(result.unstarted)

    try:
        assert run({"hang": True}, {}) == (["RETRY | TaskTimeout: timed out after 0.5 s", "SUCCESS"], 0)
        # Those the loop admitted before the blocking task ran (1 to 4 of the 4 slots, as the submissions
        # and the loop's thread interleave) are abandoned with it; the rest, never started, are given back,
        # not failed as abandoned; the fifth can never have started, its slot held by a stuck task.
        remarks, unstarted = run({"block": True}, {}, {}, {}, {})
        assert remarks == ["RETRY | TaskTimeout: abandoned after 2.5 s"] * len(remarks)
        assert 1 <= len(remarks) <= 4 and len(remarks) + unstarted == 5
        assert run({}, {}) == (["SUCCESS", "SUCCESS"], 0)  # on a new loop
    finally:
        runner.close()


# --- a serial group's time limits ---------------------------------------------------------------------------
def test_a_serial_groups_time_limits_still_stop_a_task_and_the_callers_signal_handler_is_back_after() -> None:
    """A serial group keeps the limit's handler installed across its tasks (two setitimer calls a task, not
    two handler swaps too): a task is still stopped at its limit, and whoever runs the group (``work_once``
    in an application's main thread) has its own SIGALRM handler back afterwards, as after a lone call."""
    seen: list[int] = []

    def mine(signum: int, frame: object) -> None:
        seen.append(signum)

    before = signal.signal(signal.SIGALRM, mine)
    try:
        with signal_handler_kept():
            for _ in range(2):  # the second call finds the handler kept, not put back by the first
                with pytest.raises(TaskTimeout, match=r"after 0\.05 s"), time_limit(0.05):
                    time.sleep(2)
            with time_limit(5.0):
                pass
        assert signal.getsignal(signal.SIGALRM) is mine
        with pytest.raises(TaskTimeout), time_limit(0.05):  # a lone call: installed, then put back
            time.sleep(2)
        assert signal.getsignal(signal.SIGALRM) is mine and signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)
        assert seen == []
    finally:
        signal.signal(signal.SIGALRM, before)
