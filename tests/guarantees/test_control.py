"""Pause, resume, stop, scale, requeue, work once, schedules: the operator's controls."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from typing import cast

import pytest
from redis import Redis
from redis.client import PubSubWorkerThread

from rq_serviceq import ServiceQ, ServiceQWorker
from tests import tasks
from tests.conftest import drain, present, text, wait_until


def _redis_time(conn: Redis) -> float:
    secs, micros = conn.time()
    return secs + micros / 1e6


def _starts(conn: Redis) -> list[tuple[float, int]]:
    rows = [text(r).split(":") for r in conn.lrange("test:starts", 0, -1)]
    return [(float(t), int(i)) for t, i in rows]


def _done(sq: ServiceQ) -> int:
    info = sq.get_status_info()
    done: int = info["total_success"] + info["total_failed"]
    return done


def test_pause_then_resume(make_sq: Callable[..., ServiceQ], conn: Redis) -> None:
    sq = make_sq("drag", worker_count=3)
    sq.set_task_function(tasks.timed)
    sq.push_many([{"i": i, "seconds": 0.05} for i in range(60)])
    wait_until(lambda: _done(sq) >= 6)
    sq.pause()
    paused_at = _redis_time(conn)
    assert sq.get_status() == "PAUSED"
    assert {w["status"] for w in sq.get_status_info()["worker_reports"].values()} <= {"PAUSED"}
    time.sleep(0.3)  # tasks that were running when pause() returned finish
    settled = _done(sq)
    time.sleep(1.0)
    assert _done(sq) == settled < 60, "counts moved while paused"
    assert all(t < paused_at for t, _ in _starts(conn)), "a task started after pause() returned"

    sq.resume()
    assert sq.get_status() == "RUNNING"
    report = sq.wait_for_batch(timeout=60)
    assert (report["total_success"], report["total_failed"], report["status"]) == (60, 0, "FINISHED")
    assert sorted(i for _, i in _starts(conn)) == list(range(60))  # each ran once


def test_waiting_retries_do_not_fire_while_paused(make_sq: Callable[..., ServiceQ], conn: Redis) -> None:
    sq = make_sq("drag", worker_count=1, resting_period=1.0)  # the retry is due 1 s after the failure
    sq.set_retry_config(retry_limit=1)
    sq.set_task_function(tasks.timed)
    sq.push({"i": 1, "seconds": 0, "fail": True})
    wait_until(lambda: conn.zcard(sq.keys.retry) == 1)
    sq.pause()
    time.sleep(1.5)
    assert len(_starts(conn)) == 1
    sq.resume()
    report = sq.wait_for_batch(timeout=30)
    assert report["failed_tasks"][0]["total_retry_attempts"] == 1


def test_stop_fails_what_is_left_and_ends_the_batch_once(make_sq: Callable[..., ServiceQ], conn: Redis) -> None:
    sq = make_sq("drag", worker_count=2)
    sq.set_retry_config(retry_limit=3, loop_backoff=5)
    sq.set_task_function(tasks.timed)
    sq.set_batch_end_callback(tasks.store_report)
    sq.push_many([{"i": i, "seconds": 0.05, "fail": i % 4 == 0} for i in range(80)])
    wait_until(lambda: _done(sq) >= 10)
    batch_id = sq.stop()
    assert batch_id is not None
    report = sq.wait_for_batch(timeout=30, batch_id=batch_id)
    assert report["status"] == "STOPPED" and sq.get_status() == "STOPPED"
    assert report["total_submitted"] == 80 == report["total_success"] + report["total_failed"]
    assert report["total_pending"] == 0
    stopped = [q for q in report["failed_tasks"] if q["remark"].startswith("STOPPED | ")]
    assert stopped, "nothing was left to stop"
    ids = [q["task_id"] for q in report["passed_tasks"] + report["failed_tasks"]]
    assert len(ids) == len(set(ids)) == 80
    assert conn.get(f"test:batch_end_count:{batch_id}") == b"1"
    assert json.loads(conn.lrange("test:batch_end", 0, -1)[0])["status"] == "STOPPED"

    sq.join(timeout=30)  # workers started by start() leave
    sq.push({"i": 99, "seconds": 0})
    assert sq.current_batch_id() != batch_id
    assert sq.wait_for_batch(timeout=30)["total_success"] == 1


def test_stop_with_nothing_running_ends_here(make_sq: Callable[..., ServiceQ], conn: Redis) -> None:
    sq = make_sq("drag", worker_count=0)
    sq.set_task_function(tasks.timed)
    sq.set_batch_end_callback(tasks.store_report)
    sq.push_many([{"i": i} for i in range(3)])
    batch_id = sq.stop()
    report = sq.get_batch_report(batch_id)
    assert (report["status"], report["total_failed"], report["total_pending"]) == ("STOPPED", 3, 0)
    assert all(
        q["remark"] == "STOPPED | the service queue was stopped before this task could run"
        for q in report["failed_tasks"]
    )
    assert conn.get(f"test:batch_end_count:{batch_id}") == b"1"
    assert sq.stop() is None  # nothing active: a second stop changes nothing


def test_requeue_failed_and_work_once(make_sq: Callable[..., ServiceQ], conn: Redis) -> None:
    sq = make_sq("drag", worker_count=0)
    sq.set_retry_config(retry_limit=1)
    sq.set_task_function(tasks.timed)
    assert sq.work_once() is None  # nothing to do
    sq.push_many([{"i": 1, "seconds": 0, "fail": True}, {"i": 2, "seconds": 0}])
    first = sq.work_once()
    assert first is not None and first["task"]["i"] == 1 and first["remark"] == "RETRY | asked to fail"
    retried = sq.work_once()  # a due retry goes before the queue
    assert retried is not None and retried["task"]["i"] == 1 and retried["total_retry_attempts"] == 1
    assert present(sq.work_once())["task"]["i"] == 2
    assert sq.work_once() is None
    old = sq.get_batch_report()
    assert (old["status"], old["total_failed"]) == ("FINISHED", 1)

    assert sq.requeue_failed(old["batch_id"]) == 1
    assert sq.requeue_failed(old["batch_id"]) == 0  # never twice
    assert sq.current_batch_id() != old["batch_id"]
    assert sq.connection.zcard(sq.keys.failed) == 0
    again = sq.work_once()
    assert again is not None and again["task"] == {"i": 1, "seconds": 0, "fail": True}
    # A fresh start: its one retry is still ahead of it (with the old count it would have failed for good).
    assert again["total_retry_attempts"] == 1 and conn.zcard(sq.keys.retry) == 1
    assert sq.get_batch_report(old["batch_id"])["total_failed"] == 1  # history stays true


def test_eta_seconds(make_sq: Callable[..., ServiceQ]) -> None:
    sq = make_sq("drag", worker_count=0)
    sq.set_task_function(tasks.timed)
    sq.push_many([{"i": i, "seconds": 0.02} for i in range(10)])
    assert sq.get_status_info()["eta_seconds"] is None  # nothing done yet: no estimate
    for _ in range(5):
        sq.work_once()
    eta = sq.get_status_info()["eta_seconds"]
    assert eta is not None and 0 < eta < 60
    drain(sq)
    assert sq.get_status_info()["eta_seconds"] == 0


def test_invalid_schedule_is_refused(make_sq: Callable[..., ServiceQ]) -> None:
    sq = make_sq("drag")
    with pytest.raises(ValueError, match="not a cron expression"):
        sq.set_schedule("every hour")
    assert sq.describe()["schedule"] is None


@pytest.mark.slow  # the default suite's time (about 5 minutes); CI runs it
def test_supervisor_scales_and_replaces_killed_workers(
    make_sq: Callable[..., ServiceQ], conn: Redis, spawn_supervisor: Callable[..., subprocess.Popen[bytes]]
) -> None:
    sq = make_sq("drag", worker_count=1, auto_start=False)
    sq.set_task_function(tasks.timed)
    supervisor = spawn_supervisor("drag")
    wait_until(lambda: len(sq.get_status_info()["worker_reports"]) == 1)
    sq.push_many([{"i": i, "seconds": 0.05} for i in range(200)])
    sq.scale(4)
    wait_until(lambda: len(sq.get_status_info()["worker_reports"]) == 4, timeout=10)

    # SIGKILL one worker mid-task: the supervisor replaces it and its task runs again.
    victim = next(iter(sq.get_status_info()["worker_reports"]))
    pid = int(text(conn.hget(f"rq:worker:{victim}", "pid")))
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: victim not in sq.get_status_info()["worker_reports"], timeout=10)
    wait_until(lambda: len(sq.get_status_info()["worker_reports"]) == 4, timeout=10)

    sq.scale(1)
    wait_until(lambda: len(sq.get_status_info()["worker_reports"]) == 1, timeout=10)
    report = sq.wait_for_batch(timeout=60)
    assert (report["total_success"], report["total_pending"]) == (200, 0)
    ids = [q["task_id"] for q in report["passed_tasks"]]
    assert len(set(ids)) == 200
    assert {i for _, i in _starts(conn)} == set(range(200))
    supervisor.send_signal(signal.SIGTERM)
    assert supervisor.wait(30) == 0
    wait_until(lambda: not sq.get_status_info()["worker_reports"], timeout=10)


def test_two_supervisors_and_a_plain_worker_end_each_batch_once(
    make_sq: Callable[..., ServiceQ],
    conn: Redis,
    spawn_supervisor: Callable[..., subprocess.Popen[bytes]],
    spawn_cli_worker: Callable[..., subprocess.Popen[bytes]],
) -> None:
    sq = make_sq("drag", worker_count=2, auto_start=False)
    sq.set_retry_config(retry_limit=1)
    sq.set_task_function(tasks.mixed)
    sq.set_batch_end_callback(tasks.store_report)
    spawn_supervisor("drag")
    spawn_supervisor("drag")
    spawn_cli_worker("drag-pending")
    wait_until(lambda: len(sq.get_status_info()["worker_reports"]) == 3, timeout=15)  # 2 in total + 1 plain
    for b in range(3):
        ids = sq.push_many([{"b": b, "i": i} for i in range(300)])
        report = sq.wait_for_batch(timeout=60)
        done = [q["task_id"] for q in report["passed_tasks"] + report["failed_tasks"]]
        assert sorted(done) == sorted(ids)
        assert conn.get(f"test:batch_end_count:{report['batch_id']}") == b"1"


def test_schedule_starts_workers_at_scheduled_times(
    make_sq: Callable[..., ServiceQ], conn: Redis, spawn_supervisor: Callable[..., subprocess.Popen[bytes]]
) -> None:
    sq = make_sq("drag", worker_count=1)
    sq.set_task_function(tasks.timed)
    sq.set_schedule("* * * * * */2")  # every 2 seconds (croniter's seconds field)
    spawn_supervisor("drag")
    sq.push_many([{"i": i, "seconds": 0} for i in range(3)])  # a schedule: pushing starts nothing
    assert sq._processes == []
    report = sq.wait_for_batch(timeout=15)
    assert report["total_success"] == 3
    first_start = min(t for t, _ in _starts(conn))
    assert int(first_start) % 2 in (0, 1)  # started by the schedule, within its 2 s window
    sq.push({"i": 3, "seconds": 0})
    assert sq.wait_for_batch(timeout=15)["total_success"] == 1


def test_a_worker_leaves_its_command_channel_in_a_second_when_the_thread_has_seen_the_unsubscribe(
    make_sq: Callable[..., ServiceQ], conn: Redis
) -> None:
    """Every worker exit stops RQ's pubsub thread.  A thread that has already read the UNSUBSCRIBE reply
    waits 60 s (RQ's sleep_time) for a new subscription, and redis 8.2's stop() joins it unbounded: an
    exit that took a minute, one in a few, until the wait was bounded (control.stop_listening)."""
    make_sq("drag", worker_count=0)
    worker = ServiceQWorker("drag-pending", connection=conn)
    worker.subscribe()
    pubsub, thread = worker.pubsub, cast(PubSubWorkerThread, worker.pubsub_thread)
    assert pubsub is not None
    pubsub.unsubscribe()  # type: ignore[no-untyped-call, unused-ignore]
    wait_until(lambda: not pubsub.subscribed)  # the thread read the reply, and waits for a subscription
    left = threading.Event()

    def leave() -> None:
        worker.unsubscribe()
        left.set()

    threading.Thread(target=leave, daemon=True).start()
    wait_until(left.is_set, timeout=10)
    # The thread, still waiting, keeps its pubsub (closing it under a reader would give the pool a
    # connection in use); it closes it itself when it ends.
    assert thread.is_alive() and pubsub.connection is not None
