"""Faults injected into real processes and a real Redis: nothing lost, nothing counted twice, every batch ends once."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from redis import Redis

from rq_serviceq import ServiceQ
from rq_serviceq.serviceq import RedisUnavailable
from rq_serviceq.testing import RedisServer
from tests import tasks
from tests.conftest import drain, text, wait_until
from tests.netproxy import CuttableProxy

ROOT = Path(__file__).resolve().parents[2]


def _started(conn: Redis) -> set[int]:
    return {int(text(r).split(":")[1]) for r in conn.lrange("test:starts", 0, -1)}


def _assert_complete(report: dict[str, Any], ids: list[str]) -> None:
    done = [q["task_id"] for q in report["passed_tasks"] + report["failed_tasks"]]
    assert len(done) == len(set(done)), "a task was counted twice"
    assert set(done) == set(ids), "a task was lost"
    assert report["total_submitted"] == len(ids) == report["total_success"] + report["total_failed"]
    assert report["total_pending"] == 0


def _worker_pids(conn: Redis, sq: ServiceQ) -> list[int]:
    names = sq.get_status_info()["worker_reports"]
    return [int(conn.hget(f"rq:worker:{name}", "pid") or 0) for name in names]


@pytest.mark.slow  # the default suite's time (about 5 minutes); CI runs it
def test_sigkill_workers_repeatedly(
    make_sq: Callable[..., ServiceQ], conn: Redis, spawn_supervisor: Callable[..., subprocess.Popen[bytes]]
) -> None:
    sq = make_sq("drag", worker_count=3, auto_start=False)
    sq.set_task_function(tasks.timed)
    sq.set_batch_end_callback(tasks.store_report)
    spawn_supervisor("drag")
    wait_until(lambda: len(sq.get_status_info()["worker_reports"]) == 3, timeout=15)
    ids = sq.push_many([{"i": i, "seconds": 0.005} for i in range(2000)])
    rng = random.Random(7)
    for _ in range(5):
        time.sleep(0.4)
        pids = [p for p in _worker_pids(conn, sq) if p]
        if pids and sq.get_status() == "RUNNING":
            os.kill(rng.choice(pids), signal.SIGKILL)
    report = sq.wait_for_batch(timeout=90)
    _assert_complete(report, ids)
    assert report["total_success"] == 2000
    assert _started(conn) == set(range(2000))
    assert conn.get(f"test:batch_end_count:{report['batch_id']}") == b"1"


@pytest.mark.slow  # the default suite's time (about 5 minutes); CI runs it
def test_sigkill_the_supervisor(
    make_sq: Callable[..., ServiceQ], conn: Redis, spawn_supervisor: Callable[..., subprocess.Popen[bytes]]
) -> None:
    sq = make_sq("drag", worker_count=2, auto_start=False)
    sq.set_task_function(tasks.timed)
    first = spawn_supervisor("drag")
    wait_until(lambda: len(sq.get_status_info()["worker_reports"]) == 2, timeout=15)
    ids = sq.push_many([{"i": i, "seconds": 0.01} for i in range(300)])
    wait_until(lambda: sq.get_status_info()["total_success"] > 20)
    first.kill()  # its workers get SIGTERM from the kernel (PR_SET_PDEATHSIG) and leave warmly
    wait_until(lambda: not sq.get_status_info()["worker_reports"], timeout=20)
    spawn_supervisor("drag")
    report = sq.wait_for_batch(timeout=60)
    _assert_complete(report, ids)
    assert report["total_success"] == 300


def test_sigterm_lets_the_running_task_finish(
    make_sq: Callable[..., ServiceQ], conn: Redis, spawn_cli_worker: Callable[..., subprocess.Popen[bytes]]
) -> None:
    sq = make_sq("drag", worker_count=0)
    sq.set_task_function(tasks.timed)
    sq.push_many([{"i": i, "seconds": 1.0} for i in range(3)])
    worker = spawn_cli_worker("drag-pending")
    wait_until(lambda: conn.llen("test:starts") == 1)
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(30) == 0
    info = sq.get_status_info()
    assert (info["total_success"], info["pending_q_length"]) == (1, 2)  # finished, and nothing else started
    drain(sq)
    assert sq.get_batch_report()["total_success"] == 3


@pytest.fixture
def aof_redis() -> Iterator[RedisServer]:
    with RedisServer("--appendonly", "yes", "--appendfsync", "always") as server:
        yield server


def test_redis_restart_mid_batch(aof_redis: RedisServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RQ_REDIS_URL", aof_redis.url)
    monkeypatch.setenv("REDIS_URL", aof_redis.url)
    conn = Redis.from_url(aof_redis.url)
    sq = ServiceQ("drag", connection=conn)
    sq.set_worker_config(worker_count=0)
    sq.set_task_function(tasks.slow)  # a task that needs no Redis itself
    sq.set_batch_end_callback(tasks.store_report)
    sq.set_worker_config(worker_count=1, auto_start=False)  # one worker under a supervisor, one plain
    env = dict(os.environ, RQ_REDIS_URL=aof_redis.url, PYTHONPATH=str(ROOT))
    cmd = [sys.executable, "-m", "rq.cli", "worker", "-w", "rq_serviceq.ServiceQWorker", "-q", "drag-pending"]
    supervise = [sys.executable, "-m", "rq_serviceq", "worker", "drag", "--interval", "0.2", "-q"]
    workers = [subprocess.Popen(c, env=env, cwd=ROOT, start_new_session=True) for c in (cmd, supervise)]
    wait_until(lambda: len(sq.get_status_info()["worker_reports"]) == 2, timeout=15)
    try:
        ids = sq.push_many([{"i": i, "seconds": 0.003} for i in range(1000)])  # fmt: skip
        wait_until(lambda: sq.get_status_info()["total_success"] > 100)
        aof_redis.kill()
        with pytest.raises(RedisUnavailable, match=f"127.0.0.1:{aof_redis.port}"):
            sq.push({"i": -1})
        time.sleep(1.0)
        aof_redis.start()
        report = sq.wait_for_batch(timeout=90)
        _assert_complete(report, ids)
        assert report["total_success"] == 1000
        assert conn.get(f"test:batch_end_count:{report['batch_id']}") == b"1"
        assert all(w.poll() is None for w in workers), "a worker or the supervisor died with Redis"
        assert len(sq.get_status_info()["worker_reports"]) == 2
    finally:
        for w in workers:
            os.killpg(w.pid, signal.SIGKILL)
            w.wait(10)


@pytest.mark.slow  # the default suite's time (about 5 minutes); CI runs it
def test_network_cut_between_workers_and_redis(
    make_sq: Callable[..., ServiceQ], conn: Redis, redis_server: RedisServer
) -> None:
    proxy = CuttableProxy(redis_server.port)
    sq = make_sq("drag", worker_count=0)
    sq.set_retry_config(retry_limit=1)
    sq.set_task_function(tasks.mixed)
    sq.set_batch_end_callback(tasks.store_report)
    env = dict(os.environ, RQ_REDIS_URL=proxy.url, REDIS_URL=redis_server.url, PYTHONPATH=str(ROOT))
    cmd = [sys.executable, "-m", "rq.cli", "worker", "-w", "rq_serviceq.ServiceQWorker", "-q", "drag-pending"]
    workers = [subprocess.Popen(cmd, env=env, cwd=ROOT) for _ in range(2)]
    try:
        # Both running before the cut: RQ's CLI checks `rq suspend` before it builds a worker, and a process
        # still importing when the cut begins exits there (exit 1, "Connection closed by server"), outside
        # ServiceQWorker; from its __init__ on, a worker rides a cut out (tests/guarantees/test_outages.py).
        wait_until(lambda: len(sq.get_status_info()["worker_reports"]) == 2, timeout=15)
        ids = sq.push_many([{"b": 0, "i": i} for i in range(1500)])
        wait_until(lambda: sq.get_status_info()["total_success"] > 100)
        proxy.cut()
        time.sleep(3)
        proxy.restore()
        report = sq.wait_for_batch(timeout=90)
        _assert_complete(report, ids)
        assert conn.get(f"test:batch_end_count:{report['batch_id']}") == b"1"
        assert all(w.poll() is None for w in workers)
    finally:
        for w in workers:
            w.kill()
            w.wait(10)
        proxy.close()


@pytest.mark.parametrize("concurrency", [1, 4])
def test_a_hanging_task_times_out(make_sq: Callable[..., ServiceQ], concurrency: int) -> None:
    sq = make_sq("drag", worker_count=0, concurrency=concurrency)
    sq.set_limits(task_timeout=0.5)
    sq.set_task_function(tasks.hang)
    sq.push_many([{"hang": True}, {"hang": False}])
    started = time.monotonic()
    drain(sq)
    assert time.monotonic() - started < 10
    report = sq.get_batch_report()
    assert report["total_success"] == 1
    remark = report["failed_tasks"][0]["remark"]
    if concurrency == 1:  # a signal timer interrupts even a blocking call in the main thread
        assert remark == "RETRY | TaskTimeout: timed out after 0.5 s"
    else:  # a task thread stuck in C code (here: sleep) is abandoned after a grace period
        assert remark == "RETRY | TaskTimeout: abandoned after 2.5 s"


def test_a_task_thread_past_its_time_limit_is_stopped_and_its_neighbours_are_not(
    make_sq: Callable[..., ServiceQ],
) -> None:
    """One watchdog thread keeps every task thread's time limit: the task over it ends with TaskTimeout at
    its limit, the hundreds of quick tasks around it (each armed and disarmed) are left alone."""
    sq = make_sq("drag", worker_count=0, concurrency=4)
    sq.set_limits(task_timeout=0.3)
    sq.set_task_function(tasks.spin)
    sq.push_many([{"seconds": 0.001} for _ in range(300)] + [{"seconds": 30}] + [{"seconds": 0} for _ in range(300)])
    started = time.monotonic()
    drain(sq)
    assert time.monotonic() - started < 10
    report = sq.get_batch_report()
    assert report["total_success"] == 600
    assert [q["remark"] for q in report["failed_tasks"]] == ["RETRY | TaskTimeout: timed out after 0.3 s"]


def test_batch_end_callback_that_raises_is_retried_and_recorded(make_sq: Callable[..., ServiceQ], conn: Redis) -> None:
    sq = make_sq("drag", worker_count=0)
    sq.set_task_function(tasks.returns)
    sq.set_batch_end_callback(tasks.failing_end_callback)
    sq.push({"value": True})
    drain(sq)
    report = sq.get_batch_report()
    assert report["status"] == "FINISHED" and sq.get_status() == "FINISHED"
    assert report["end_callback"] == "failed: RuntimeError: reporting database is down"
    assert conn.get(f"test:end_attempts:{report['batch_id']}") == b"3"


def test_batch_end_callback_that_hangs(make_sq: Callable[..., ServiceQ], conn: Redis) -> None:
    sq = make_sq("drag", worker_count=0)
    sq.set_task_function(tasks.returns)
    sq.set_limits(callback_timeout=0.3)
    sq.set_batch_end_callback(tasks.hanging_end_callback)
    sq.push({"value": True})
    drain(sq)
    report = sq.get_batch_report()
    assert report["end_callback"] == "failed: TaskTimeout: timed out after 0.3 s"
    assert report["status"] == "FINISHED"


def test_workers_with_wrong_clocks_keep_retry_times(make_sq: Callable[..., ServiceQ], conn: Redis) -> None:
    """Due times come from Redis' clock: a worker an hour ahead and one an hour behind agree."""
    resting, backoff, limit = 0.3, 0.2, 3
    sq = make_sq("drag", worker_count=0)
    sq.set_retry_config(retry_limit=limit, loop_backoff=backoff)
    sq.set_worker_config(resting_period=resting)
    sq.set_task_function(tasks.record_attempt)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    cmd = [sys.executable, str(ROOT / "tests" / "skewed_worker.py"), "worker", "-w", "rq_serviceq.ServiceQWorker",
           "-q", "--burst", "drag-pending"]  # fmt: skip
    ids = sq.push_many([{"fail": True} for _ in range(4)])
    workers = [subprocess.Popen(cmd, env=dict(env, CLOCK_SHIFT=shift), cwd=ROOT) for shift in ("3600", "-3600")]
    for w in workers:
        assert w.wait(60) == 0
    for task_id in ids:
        starts = [float(x) for x in conn.lrange(f"test:attempts:{task_id}", 0, -1)]
        assert len(starts) == limit + 1
        for n in range(1, limit + 1):
            gap, due_gap = starts[n] - starts[n - 1], resting + (n - 1) * backoff
            assert due_gap <= gap <= due_gap + 0.25 + resting  # + resting: a worker rests between pops


def test_task_over_the_size_limit_changes_nothing(make_sq: Callable[..., ServiceQ], conn: Redis) -> None:
    sq = make_sq("drag", worker_count=0)
    sq.set_limits(max_task_bytes=100)
    before = conn.dbsize()
    with pytest.raises(ValueError, match="over the service queue's 100-byte limit"):
        sq.push_many([{"ok": 1}, {"big": "x" * 200}])
    assert conn.dbsize() == before and sq.get_status() == "CREATED"


def test_allow_list_keeps_task_functions_to_allowed_modules(
    make_sq: Callable[..., ServiceQ], monkeypatch: pytest.MonkeyPatch
) -> None:
    from rq_serviceq.task.imports import resolve

    sq = make_sq("drag", worker_count=0)
    sq.connection.hset(sq.keys.state, "task_function", "os.system")  # what a Redis writer could do
    sq.push({"cmd": "touch /tmp/pwned"})
    drain(sq)
    remark = sq.get_batch_report()["failed_tasks"][0]["remark"]
    assert remark.startswith("NO_RETRY | cannot import task function 'os.system'")

    resolve.cache_clear()
    monkeypatch.setenv("RQ_SERVICEQ_ALLOWED_MODULES", "myapp.tasks, myapp.hooks")
    sq.connection.hset(sq.keys.state, "task_function", "tests.tasks.returns")
    sq.push({"value": True})
    drain(sq)
    remark = sq.get_batch_report()["failed_tasks"][0]["remark"]
    assert "not under the modules allowed by RQ_SERVICEQ_ALLOWED_MODULES" in remark
    resolve.cache_clear()


def _short_lease_workers(n: int) -> list[subprocess.Popen[bytes]]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    cmd = [sys.executable, "-m", "rq.cli", "worker", "-w", "tests.tasks.ShortLeaseWorker", "-q", "drag-pending"]
    return [subprocess.Popen(cmd, env=env, cwd=ROOT) for _ in range(n)]


@pytest.mark.slow  # the default suite's time (about 5 minutes); CI runs it
def test_a_long_batch_end_callback_keeps_its_lease(make_sq: Callable[..., ServiceQ], conn: Redis) -> None:
    """A callback that outlasts the lease is not taken over while its worker lives."""
    sq = make_sq("drag", worker_count=0)
    sq.set_task_function(tasks.returns)
    sq.set_batch_end_callback(tasks.slow_end_callback)
    conn.set("test:callback_seconds", 5)  # lease is 2 s
    workers = _short_lease_workers(2)
    try:
        sq.push_many([{"value": True} for _ in range(10)])
        report = sq.wait_for_batch(timeout=60)
        assert conn.llen(f"test:end_started:{report['batch_id']}") == 1
        assert conn.get(f"test:batch_end_count:{report['batch_id']}") == b"1"
    finally:
        for w in workers:
            w.kill()
            w.wait(10)


@pytest.mark.slow  # the default suite's time (about 5 minutes); CI runs it
def test_batch_end_work_of_a_killed_worker_is_taken_over(make_sq: Callable[..., ServiceQ], conn: Redis) -> None:
    sq = make_sq("drag", worker_count=0)
    sq.set_task_function(tasks.returns)
    sq.set_batch_end_callback(tasks.slow_end_callback)
    conn.set("test:callback_seconds", 3)
    workers = _short_lease_workers(2)
    try:
        sq.push_many([{"value": True} for _ in range(10)])
        batch_id = sq.current_batch_id()
        wait_until(lambda: conn.llen(f"test:end_started:{batch_id}") == 1)
        os.kill(int(text(conn.lindex(f"test:end_started:{batch_id}", 0))), signal.SIGKILL)  # mid-callback
        report = sq.wait_for_batch(timeout=60)
        assert report["status"] == "FINISHED"
        assert conn.llen(f"test:end_started:{batch_id}") == 2  # run again, by the other worker
        assert conn.get(f"test:batch_end_count:{batch_id}") == b"1"  # and completed once
    finally:
        for w in workers:
            w.kill()
            w.wait(10)


def test_sigterm_during_the_batch_end_callback_lets_it_finish_once_and_the_worker_leave(
    make_sq: Callable[..., ServiceQ], conn: Redis, spawn_cli_worker: Callable[..., subprocess.Popen[bytes]]
) -> None:
    """A warm shutdown while the callback runs: RQ must not raise its stop inside it (the callback's
    ``except Exception`` would take it for a failure and run it again, and the worker, its stop
    swallowed, would not leave)."""
    sq = make_sq("drag", worker_count=0)
    sq.set_task_function(tasks.slow)
    sq.set_batch_end_callback(tasks.slow_end_callback)
    conn.set("test:callback_seconds", 1.5)
    batch = sq.push_chunks([{"seconds": 0}])[0].batch_id
    worker = spawn_cli_worker("drag-pending")
    wait_until(lambda: conn.llen(f"test:end_started:{batch}") == 1)
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(30) == 0
    assert conn.get(f"test:batch_end_count:{batch}") == b"1" and conn.llen(f"test:end_started:{batch}") == 1
