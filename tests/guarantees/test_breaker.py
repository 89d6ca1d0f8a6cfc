"""The breaker (``set_breaker``): a batch that fails too much pauses its service queue by itself, in the
same Redis step as the outcomes that tripped it, and ``resume()`` counts afresh."""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Callable
from typing import Any

import pytest
from pydantic import ValidationError
from redis import Redis

from rq_serviceq import ServiceQ, ServiceQWorker, configure
from rq_serviceq.metrics import generate_latest
from tests import tasks
from tests.conftest import wait_until

PASS, FAIL = {"seconds": 0}, {"seconds": 0, "fail": True}
RATIO = re.compile(r"^breaker: (\d+) of (\d+) ended tasks failed$")


def _ended(sq: ServiceQ) -> int:
    info = sq.get_status_info()
    return int(info["total_success"] + info["total_failed"])


def _queue(make_sq: Callable[..., ServiceQ], **breaker: Any) -> ServiceQ:
    sq = make_sq("drag", worker_count=0, auto_start=False)
    sq.set_task_function(tasks.timed)
    sq.set_breaker(**breaker)
    return sq


def _work(sq: ServiceQ, count: int) -> None:
    """Run ``count`` tasks one at a time in this process, each claimed and settled alone."""
    for _ in range(count):
        assert sq.work_once() is not None


def test_the_acceptance_run_pauses_within_a_group_per_worker_and_resume_counts_afresh(
    make_sq: Callable[..., ServiceQ], conn: Redis, spawn_cli_worker: Callable[..., subprocess.Popen[bytes]]
) -> None:
    """The issue's test: everything fails, failure_ratio=0.5 over min_tasks=20, 2,000 tasks, 2 worker
    processes.  The queue pauses having ended at most 20 + one claimed group per worker, nothing starts
    after the pause, the reason and the event are there; resume() goes on and trips again 20 tasks on."""
    sq = make_sq("drag", worker_count=0, auto_start=False)
    sq.set_task_function(tasks.raises)
    sq.set_breaker(failure_ratio=0.5, min_tasks=20)
    since = sq.newest_event_id()
    sq.push_many([{"i": i} for i in range(2000)])
    workers = [spawn_cli_worker("drag-pending"), spawn_cli_worker("drag-pending")]
    bound = 20 + len(workers) * ServiceQWorker.max_group
    previous = 0
    for trip in (1, 2):
        wait_until(lambda: sq.get_status() == "PAUSED", timeout=15)
        wait_until(lambda: conn.zcard(sq.keys.leases) == 0, timeout=5)  # groups claimed before: given back
        ended = _ended(sq)
        assert 20 <= ended - previous <= bound
        deadline = time.monotonic() + 0.5  # nothing starts while paused: the counts stand still
        while time.monotonic() < deadline:
            assert _ended(sq) == ended and conn.zcard(sq.keys.leases) == 0
            time.sleep(0.02)
        info = sq.get_status_info()
        assert info["status"] == "PAUSED" and info["total_pending"] == 2000 - ended > 0
        found = RATIO.match(info["pause_reason"])
        assert found is not None, info["pause_reason"]
        failed, counted = int(found[1]), int(found[2])
        assert failed == counted and 20 <= counted <= ended - previous  # counted afresh from the resume
        assert conn.hget(sq.keys.totals, "breaker_trips") == str(trip).encode()
        previous = ended
        if trip == 1:
            sq.resume()
            assert sq.get_status_info()["pause_reason"] == ""
    kinds = [(e.type, e.reason) for e in sq.events(since=since, count=10_000)]
    breakers = [reason for kind, reason in kinds if kind == "breaker"]
    assert len(breakers) == 2 and all(RATIO.match(reason or "") for reason in breakers)
    assert [k for k, _ in kinds].count("paused") == 2 and ("resumed", None) in kinds
    assert 'rq_serviceq_breaker_trips_total{queue="drag",rq_queue="drag-pending"} 2' in generate_latest(conn).decode()
    for proc in workers:
        proc.terminate()
    logs = b"".join(proc.communicate(timeout=20)[0] for proc in workers).decode()
    assert logs.count("ended tasks failed; service queue drag paused") == 2, logs


def test_failure_ratio_counts_ended_tasks_from_the_resume(make_sq: Callable[..., ServiceQ]) -> None:
    sq = _queue(make_sq, failure_ratio=0.5, min_tasks=4)
    sq.push_many([PASS, FAIL, PASS, FAIL, FAIL, PASS, PASS, FAIL, PASS])
    _work(sq, 3)
    assert sq.get_status() == "RUNNING"
    _work(sq, 1)  # 2 of 4: the ratio is reached with min_tasks ended
    info = sq.get_status_info()
    assert (info["status"], info["pause_reason"]) == ("PAUSED", "breaker: 2 of 4 ended tasks failed")
    assert sq.work_once() is None  # paused: nothing is handed out
    sq.resume()
    _work(sq, 3)  # counted afresh: 1 of 1, 1 of 2, 1 of 3 (the whole batch's 3 of 5 would have tripped)
    assert sq.get_status() == "RUNNING"
    _work(sq, 1)
    assert sq.get_status_info()["pause_reason"] == "breaker: 2 of 4 ended tasks failed"


def test_consecutive_failures_count_attempts_and_a_pass_starts_the_row_again(make_sq: Callable[..., ServiceQ]) -> None:
    sq = _queue(make_sq, consecutive_failures=3)
    sq.push_many([PASS, FAIL, FAIL, PASS, FAIL, FAIL, FAIL, PASS])
    _work(sq, 6)
    assert sq.get_status() == "RUNNING"
    _work(sq, 1)
    assert sq.get_status_info()["pause_reason"] == "breaker: 3 tasks in a row failed"
    assert sq.get_status_info()["total_pending"] == 1

    retried = _queue(make_sq, consecutive_failures=2)  # the same queue, breaker replaced: an attempt counts
    retried.set_retry_config(retry_limit=5)
    retried.stop()
    retried.resume()
    retried.push(FAIL)
    _work(retried, 1)
    assert retried.get_status() == "RUNNING" and retried.queue_lengths().waiting_retries == 1
    _work(retried, 1)  # its retry failed too: two attempts in a row, though the task has not ended
    assert retried.get_status_info()["pause_reason"] == "breaker: 2 tasks in a row failed"


def test_pause_reasons_by_hand_and_by_the_breaker(make_sq: Callable[..., ServiceQ]) -> None:
    sq = _queue(make_sq, consecutive_failures=1)
    sq.push_many([PASS, FAIL, PASS])
    sq.pause()
    assert sq.get_status_info()["pause_reason"] == "paused by hand"
    assert [e.reason for e in sq.events(since="0") if e.type == "paused"] == ["paused by hand"]
    sq.resume()
    assert sq.get_status_info()["pause_reason"] == ""
    _work(sq, 2)
    assert sq.get_status_info()["pause_reason"] == "breaker: 1 tasks in a row failed"
    sq.pause()  # paused again by hand: the breaker's reason stands until resume
    assert sq.get_status_info()["pause_reason"] == "breaker: 1 tasks in a row failed"
    sq.stop()  # stopped: no reason to show
    assert sq.get_status_info()["pause_reason"] == ""


def test_set_breaker_validates_replaces_and_turns_off(make_sq: Callable[..., ServiceQ]) -> None:
    sq = _queue(make_sq, failure_ratio=0.25)
    assert sq.breaker().model_dump() == {"failure_ratio": 0.25, "min_tasks": 20, "consecutive_failures": None}
    before = sq.describe()
    bad: list[dict[str, Any]] = [
        {"failure_ratio": 0}, {"failure_ratio": 1.5}, {"failure_ratio": float("nan")}, {"failure_ratio": "0.5"},
        {"failure_ratio": True}, {"failure_ratio": 0.5, "min_tasks": 0}, {"failure_ratio": 0.5, "min_tasks": 2.5},
        {"consecutive_failures": 0}, {"consecutive_failures": 10**8}, {"consecutive_failures": "3"},
    ]  # fmt: skip
    for given in bad:
        with pytest.raises(ValidationError):
            sq.set_breaker(**given)
    with pytest.raises(ValueError, match="give failure_ratio too"):
        sq.set_breaker(min_tasks=5)
    with pytest.raises(TypeError):
        sq.set_breaker(0.5)  # type: ignore[call-arg]
    assert sq.describe() == before  # nothing written
    sq.set_breaker(failure_ratio=1, min_tasks=3, consecutive_failures=2)
    assert (sq.describe()["failure_ratio"], sq.describe()["min_tasks"], sq.describe()["consecutive_failures"]) == (
        1,
        3,
        2,
    )
    sq.set_breaker(consecutive_failures=4)  # replaces the whole breaker
    assert sq.breaker().model_dump() == {"failure_ratio": None, "min_tasks": None, "consecutive_failures": 4}
    sq.set_breaker()
    assert not sq.breaker().is_on()
    sq.push_many([FAIL] * 6)
    _work(sq, 6)
    assert sq.get_status() == "FINISHED"  # off: a batch that fails whole runs to its end


def test_values_damaged_by_hand_turn_the_breaker_off_and_never_break_a_settle(
    make_sq: Callable[..., ServiceQ], conn: Redis
) -> None:
    sq = _queue(make_sq, failure_ratio=0.5, min_tasks=2, consecutive_failures=2)
    conn.hset(sq.keys.state, mapping={"failure_ratio": "lots", "consecutive_failures": "-3"})
    sq.push_many([FAIL] * 3)
    _work(sq, 3)  # min_tasks alone counts for nothing; the rest loads as off
    assert sq.get_status() == "FINISHED"

    sq.set_breaker(failure_ratio=0.5, min_tasks=2, consecutive_failures=5)
    sq.push_many([FAIL] * 3)
    batch = sq.keys.batch(sq.current_batch_id() or "")
    conn.hset(batch, mapping={"breaker_streak": "x", "breaker_passed": "-1", "breaker_failed": "9e99"})
    _work(sq, 1)
    assert sq.get_status() == "RUNNING"  # a damaged count reads as 0: 1 of 1 ended, not min_tasks yet
    _work(sq, 1)
    assert sq.get_status_info()["pause_reason"] == "breaker: 2 of 2 ended tasks failed"


def test_settings_mappings_change_the_keys_they_name(make_sq: Callable[..., ServiceQ]) -> None:
    """Django's and Flask's per-queue settings (``configure.apply``): unlike set_breaker, a key changes alone."""
    sq = _queue(make_sq)
    configure.apply(sq, {"failure_ratio": 0.5, "worker_count": 2})
    configure.apply(sq, {"consecutive_failures": 3})
    assert sq.breaker().model_dump() == {"failure_ratio": 0.5, "min_tasks": 20, "consecutive_failures": 3}
    before = sq.describe()
    with pytest.raises(ValueError, match="give failure_ratio too"):
        configure.apply(sq, {"failure_ratio": None, "min_tasks": 5, "worker_count": 4})
    with pytest.raises(ValidationError):
        configure.apply(sq, {"min_tasks": 0, "worker_count": 4})
    assert sq.describe() == before  # checked whole before anything is written
    configure.apply(sq, {"failure_ratio": None})  # its min_tasks goes with it
    assert sq.breaker().model_dump() == {"failure_ratio": None, "min_tasks": None, "consecutive_failures": 3}


def test_a_batch_whose_last_task_trips_it_ends_as_usual(make_sq: Callable[..., ServiceQ]) -> None:
    """Nothing is left to hold back: the batch ends, and the next one does not start paused."""
    sq = _queue(make_sq, failure_ratio=1, min_tasks=3)
    sq.push_many([FAIL] * 3)
    _work(sq, 3)
    assert (sq.get_status(), sq.get_status_info()["pause_reason"]) == ("FINISHED", "")
    sq.push_many([FAIL] * 4)
    _work(sq, 3)
    assert sq.get_status_info()["pause_reason"] == "breaker: 3 of 3 ended tasks failed"


def test_consecutive_failures_pause_the_workers_a_supervisor_runs(
    make_sq: Callable[..., ServiceQ], conn: Redis, spawn_supervisor: Callable[..., subprocess.Popen[bytes]]
) -> None:
    """`rq-serviceq worker NAME` with two workers: ten failures in a row pause the queue within a group per
    worker, and the supervisor's workers start nothing more until resume()."""
    sq = make_sq("drag", worker_count=2, auto_start=False)
    sq.set_task_function(tasks.raises)
    sq.set_breaker(consecutive_failures=10)
    sq.push_many([{"i": i} for i in range(1000)])
    spawn_supervisor("drag")
    wait_until(lambda: sq.get_status() == "PAUSED", timeout=15)
    wait_until(lambda: conn.zcard(sq.keys.leases) == 0, timeout=5)
    ended = _ended(sq)
    assert 10 <= ended <= 10 + 2 * ServiceQWorker.max_group
    found = re.match(r"^breaker: (\d+) tasks in a row failed$", sq.get_status_info()["pause_reason"])
    assert found is not None and 10 <= int(found[1]) <= ended
    deadline = time.monotonic() + 0.5
    while time.monotonic() < deadline:
        assert _ended(sq) == ended
        time.sleep(0.02)
    sq.resume()
    wait_until(lambda: _ended(sq) > ended and sq.get_status() == "PAUSED", timeout=15)
    assert sq.get_status_info()["total_pending"] > 0
