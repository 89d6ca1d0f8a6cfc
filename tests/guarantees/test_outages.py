"""Redis going away under long-running processes: ridden out with one line each way, bounded for burst workers."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import redis
from redis import Redis

from rq_serviceq import RedisFull, ServiceQ, ServiceQWorker
from rq_serviceq.store.outage import Outage, OutageLimit
from rq_serviceq.testing import RedisServer, free_port
from tests import tasks
from tests.conftest import drain, text, wait_until
from tests.http_helpers import running_server
from tests.netproxy import CuttableProxy

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "s3cret-pw"
WORKER = [sys.executable, "-m", "rq.cli", "worker", "-w", "tests.tasks.ShortLeaseWorker", "-q"]


@pytest.fixture
def aof_redis() -> Iterator[RedisServer]:
    """A Redis with a password (the logs must hide it) that keeps its data over a kill and restart."""
    args = ("--appendonly", "yes", "--appendfsync", "always", "--requirepass", PASSWORD)
    with RedisServer(*args, auth=f":{PASSWORD}") as server:
        yield server


def _queue(server: RedisServer) -> ServiceQ:
    sq = ServiceQ("drag", connection=Redis.from_url(server.url))
    sq.set_worker_config(worker_count=0)
    sq.set_task_function(tasks.slow)
    sq.set_batch_end_callback(tasks.store_report)
    return sq


def _env(server: RedisServer, **extra: str) -> dict[str, str]:
    return dict(os.environ, RQ_REDIS_URL=server.url, REDIS_URL=server.url, PYTHONPATH=str(ROOT), **extra)


def _assert_quiet_outage_log(out: str, server: RedisServer) -> None:
    assert "Traceback" not in out, out
    assert "task journal write failed" not in out, "a line per task while Redis is away"
    assert PASSWORD not in out, "the log shows the Redis password"
    assert f"redis://:***@127.0.0.1:{server.port}/0" in out, out


@pytest.mark.slow
def test_a_burst_worker_gives_up_on_a_redis_gone_for_good_and_its_tasks_are_taken_over(
    aof_redis: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    for var in ("RQ_REDIS_URL", "REDIS_URL"):  # for the batch-end callback, run here by drain()
        monkeypatch.setenv(var, aof_redis.url)
    sq = _queue(aof_redis)
    ids = sq.push_many([{"i": i, "seconds": 0.003} for i in range(2000)])
    env = _env(aof_redis, RQ_SERVICEQ_BURST_OUTAGE_LIMIT="2")
    worker = subprocess.Popen([*WORKER, "--burst", "drag-pending"], env=env, cwd=ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT)  # fmt: skip
    try:
        wait_until(lambda: sq.get_status_info()["total_success"] > 50)
        aof_redis.kill()
        killed = time.monotonic()
        code = worker.wait(30)
        took = time.monotonic() - killed
    finally:
        if worker.poll() is None:
            worker.kill()
        out = worker.communicate(timeout=10)[0].decode()
    assert code == 1, out
    assert took < 2 + 12, f"the worker waited {took:.1f} s for a Redis gone for good"
    _assert_quiet_outage_log(out, aof_redis)
    assert out.count("is unreachable") == 1, out
    assert out.count("giving up") == 1, out
    aof_redis.start()  # back, with its data: what the worker held comes back as its 2 s leases run out
    drain(sq)
    report = sq.get_batch_report()
    done = [q["task_id"] for q in report["passed_tasks"] + report["failed_tasks"]]
    assert sorted(done) == sorted(ids) and report["total_success"] == len(ids)
    assert sq.connection.get(f"test:batch_end_count:{report['batch_id']}") == b"1"


OUTAGE = 10.0  # seconds Redis stays down in the tests of processes that ride an outage out


def _outage_lines(log: str) -> dict[str, list[str]]:
    """Each process's Redis-away lines (away, still away, back), by who wrote them."""
    by_who: dict[str, list[str]] = {}
    for line in log.splitlines():
        if ": Redis at " in line:
            who = " ".join(line.split(": Redis at ")[0].split()[-2:])  # "Worker <name>", "supervisor <id>", ...
            by_who.setdefault(who, []).append(line)
    return by_who


def _assert_one_episode(log: str, server: RedisServer, who: str) -> None:
    """Every process that noticed the outage wrote one line as it began and one as it ended."""
    _assert_quiet_outage_log(log, server)
    lines = _outage_lines(log)
    assert any(w.startswith(who) for w in lines), log
    for name, said in lines.items():
        assert len(said) == 2 and "is unreachable" in said[0] and "is back after" in said[1], (name, said)


def _supervisor_with_two_workers(sq: ServiceQ, server: RedisServer, log: Path) -> subprocess.Popen[bytes]:
    """``rq-serviceq worker drag`` in a session of its own, its output in ``log``, once both its workers run."""
    cmd = [sys.executable, "-m", "rq_serviceq", "worker", "drag", "--interval", "0.2"]
    with log.open("wb") as out:
        supervisor = subprocess.Popen(cmd, env=_env(server), cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
                                      start_new_session=True)  # fmt: skip
    try:
        wait_until(lambda: len(sq.get_status_info()["worker_reports"]) == 2, timeout=15)
    except BaseException:
        os.killpg(supervisor.pid, signal.SIGKILL)
        supervisor.wait(30)
        raise
    return supervisor


def _stop_redis_for_a_while(server: RedisServer) -> None:
    server.kill()
    time.sleep(OUTAGE)  # the outage under test lasts this long: not a wait for a condition
    server.start()


@pytest.mark.slow
def test_a_supervisor_and_its_workers_ride_out_redis_gone_for_ten_seconds(
    aof_redis: RedisServer, tmp_path: Path
) -> None:
    sq = _queue(aof_redis)
    sq.set_worker_config(worker_count=2, auto_start=False)
    log = tmp_path / "supervisor.log"
    supervisor = _supervisor_with_two_workers(sq, aof_redis, log)
    try:
        ids = sq.push_many([{"i": i, "seconds": 0.003} for i in range(3000)])
        wait_until(lambda: sq.get_status_info()["total_success"] > 100)
        _stop_redis_for_a_while(aof_redis)
        report = sq.wait_for_batch(timeout=60)
        assert report["total_submitted"] == len(ids) == report["total_success"]
        assert supervisor.poll() is None, "the supervisor left with Redis"
        assert len(sq.get_status_info()["worker_reports"]) == 2
    finally:
        os.killpg(supervisor.pid, signal.SIGTERM)
        supervisor.wait(30)
    _assert_one_episode(log.read_text(), aof_redis, "supervisor")


@pytest.mark.slow
def test_the_http_service_rides_out_redis_gone_for_ten_seconds(aof_redis: RedisServer, tmp_path: Path) -> None:
    _queue(aof_redis)
    with running_server(aof_redis.url, tmp_path / "serve.log") as server, httpx.Client(base_url=server.base) as http:
        assert http.post("/serviceqs/drag/tasks", json={"i": 1}).status_code == 201
        aof_redis.kill()
        refused = http.post("/serviceqs/drag/tasks", json={"i": 2}, timeout=30)
        assert refused.status_code == 503 and f"127.0.0.1:{aof_redis.port}" in refused.text
        time.sleep(OUTAGE)  # the outage under test lasts this long: not a wait for a condition
        aof_redis.start()
        wait_until(lambda: "is back after" in server.log(), timeout=15)
        assert http.post("/serviceqs/drag/tasks", json={"i": 3}).status_code == 201
        assert server.terminate() in (0, -15)  # uvicorn re-raises the SIGTERM it caught, once shut down
        log = server.log()
    assert "flush of 1 tasks to drag failed" not in log  # the outage's line says it, not one per flush
    _assert_one_episode(log, aof_redis, "HTTP service")


@pytest.mark.slow
def test_watch_skips_a_malformed_feed_entry_and_rides_out_redis_gone_for_ten_seconds(
    aof_redis: RedisServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for var in ("RQ_REDIS_URL", "REDIS_URL"):  # for the batch-end callback, run here by drain()
        monkeypatch.setenv(var, aof_redis.url)
    sq = _queue(aof_redis)
    sq.push_many([{"i": i, "seconds": 0} for i in range(5)])  # no worker yet: the batch stays RUNNING
    shown, said = tmp_path / "watch.out", tmp_path / "watch.err"
    cmd = [sys.executable, "-m", "rq_serviceq", "watch", "drag", "--poll", "0.5"]
    with shown.open("wb") as out, said.open("wb") as err:
        watch = subprocess.Popen(cmd, env=_env(aof_redis, PYTHONUNBUFFERED="1"), cwd=ROOT, stdout=out, stderr=err)
    try:
        wait_until(lambda: "pending 5" in shown.read_text(), timeout=15)
        sq.connection.xadd(sq.keys.events, {"type": "progress", "batch": "b", "passed": "lots"})
        wait_until(lambda: "skipping malformed progress-feed entry" in said.read_text(), timeout=10)
        _stop_redis_for_a_while(aof_redis)
        wait_until(lambda: "is back after" in said.read_text(), timeout=15)
        assert watch.poll() is None, said.read_text()
        drain(sq)
        assert watch.wait(15) == 0
    finally:
        if watch.poll() is None:
            watch.kill()
            watch.wait(10)
    assert "FINISHED passed 5" in shown.read_text().splitlines()[-1]
    assert said.read_text().count("skipping malformed progress-feed entry") == 1
    _assert_one_episode(said.read_text(), aof_redis, "watch drag")


def test_the_metrics_exporter_reports_redis_down_and_says_so_once_each_way(
    aof_redis: RedisServer, tmp_path: Path
) -> None:
    port, log = free_port(), tmp_path / "metrics.log"
    cmd = [sys.executable, "-m", "rq_serviceq", "metrics", "--port", str(port), "--host", "127.0.0.1"]
    url = f"http://127.0.0.1:{port}/metrics"
    with log.open("wb") as out:
        exporter = subprocess.Popen(cmd, env=_env(aof_redis), cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_until(lambda: _redis_up(url) == 1.0, timeout=15)
        aof_redis.kill()
        assert _redis_up(url) == 0.0 and _redis_up(url) == 0.0  # two scrapes, one outage line
        aof_redis.start()
        wait_until(lambda: _redis_up(url) == 1.0, timeout=15)
    finally:
        exporter.terminate()
        exporter.wait(10)
    _assert_one_episode(log.read_text(), aof_redis, "metrics exporter")


def _redis_up(url: str) -> float | None:
    try:
        body = httpx.get(url, timeout=10).text
    except httpx.HTTPError:
        return None
    up = [line for line in body.splitlines() if line.startswith("rq_serviceq_redis_up ")]
    return float(up[0].split()[-1]) if up else None


@pytest.mark.parametrize("hold_at", [pytest.param("init", marks=pytest.mark.slow), "work"])  # init: slow, CI runs it
def test_a_worker_starting_during_a_network_cut_rides_it_out(
    make_sq: Callable[..., ServiceQ], redis_server: RedisServer, tmp_path: Path, hold_at: str
) -> None:
    """It used to leave with ``Connection closed by server`` when RQ's ``__init__`` (CLIENT SETNAME) or its
    registration met the cut."""
    proxy = CuttableProxy(redis_server.port)
    sq = make_sq("drag", worker_count=0)
    sq.set_task_function(tasks.returns)
    gate, log = tmp_path / "gate", tmp_path / "worker.log"
    env = dict(
        os.environ, RQ_REDIS_URL=proxy.url, PYTHONPATH=str(ROOT), TEST_START_GATE=str(gate), TEST_HOLD_AT=hold_at
    )
    cmd = [sys.executable, "-m", "rq.cli", "worker", "-w", "tests.tasks.HeldAtStartWorker", "-q", "drag-pending"]
    with log.open("wb") as out:
        worker = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_until(lambda: Path(f"{gate}.waiting").exists(), timeout=15)  # attached, before RQ's bootstrap
        proxy.cut()
        gate.touch()
        time.sleep(6)  # the cut under test lasts this long (longer than redis-py's own retries): not a wait
        assert worker.poll() is None, log.read_text()
        proxy.restore()
        sq.push_many([{"value": True} for _ in range(20)])
        assert sq.wait_for_batch(timeout=30)["total_success"] == 20
        assert worker.poll() is None, log.read_text()
    finally:
        worker.kill()
        worker.wait(10)
        proxy.close()
    assert "Traceback" not in log.read_text()


@pytest.mark.slow
def test_a_full_redis_is_ridden_out_like_an_outage_and_the_batch_ends_once(tmp_path: Path) -> None:
    """At maxmemory (noeviction) the supervisor and its workers back off with one line each way, every refused
    settle is tried again and lands once memory is back, and a push is refused with an error naming the Redis."""
    with RedisServer("--maxmemory-policy", "noeviction", "--requirepass", PASSWORD, auth=f":{PASSWORD}") as server:
        sq = _queue(server)
        sq.set_worker_config(worker_count=2, auto_start=False)
        log = tmp_path / "supervisor.log"
        supervisor = _supervisor_with_two_workers(sq, server, log)
        try:
            ids = sq.push_many([{"i": i, "seconds": 0.002} for i in range(3000)])
            wait_until(lambda: sq.get_status_info()["total_success"] > 200)
            conn = sq.connection
            conn.config_set("maxmemory", int(conn.info("memory")["used_memory"]) + 32 * 1024)
            wait_until(lambda: log.read_text().count("is full") >= 3, timeout=20)  # the supervisor and both workers
            with pytest.raises(RedisFull, match=f"Redis at redis://:\\*\\*\\*@127.0.0.1:{server.port}/0 is full"):
                sq.push({"i": -1})
            conn.config_set("maxmemory", 0)
            report = sq.wait_for_batch(timeout=60)
            done = [q["task_id"] for q in report["passed_tasks"] + report["failed_tasks"]]
            assert sorted(done) == sorted(ids) and report["total_success"] == len(ids)
            assert conn.get(f"test:batch_end_count:{report['batch_id']}") == b"1"
            assert supervisor.poll() is None, "the supervisor left when Redis was full"
        finally:
            os.killpg(supervisor.pid, signal.SIGTERM)
            supervisor.wait(30)
    text = log.read_text()
    _assert_quiet_outage_log(text, server)
    for name, said in _outage_lines(text).items():
        assert len(said) == 2 and "is full" in said[0] and "is back after" in said[1], (name, said)


def test_redis_full_just_after_the_batch_end_callback_does_not_run_it_again(
    make_sq: Callable[..., ServiceQ], conn: Redis
) -> None:
    sq = make_sq("drag", worker_count=0)
    sq.set_task_function(tasks.returns)
    sq.set_batch_end_callback(tasks.end_callback_then_redis_full)
    sq.push_many([{"value": True} for _ in range(3)])

    def free_memory_soon() -> None:
        wait_until(lambda: conn.config_get("maxmemory")["maxmemory"] == "1", timeout=20)
        time.sleep(1.0)  # Redis stays full this long: the record of the batch end is refused meanwhile
        conn.config_set("maxmemory", 0)

    freer = threading.Thread(target=free_memory_soon)
    freer.start()
    try:
        drain(sq)
    finally:
        freer.join(30)
        conn.config_set("maxmemory", 0)
    report = sq.get_batch_report()
    assert report["status"] == "FINISHED" and report["end_callback"] == "ok"
    assert conn.get(f"test:batch_end_count:{report['batch_id']}") == b"1"


def test_a_worker_told_to_stop_while_redis_is_away_leaves_quietly(aof_redis: RedisServer, tmp_path: Path) -> None:
    _queue(aof_redis).push_many([{"i": i, "seconds": 0.2} for i in range(50)])
    log = tmp_path / "worker.log"
    with log.open("wb") as out:
        worker = subprocess.Popen([*WORKER, "drag-pending"], env=_env(aof_redis), cwd=ROOT, stdout=out,
                                  stderr=subprocess.STDOUT)  # fmt: skip
    try:
        wait_until(lambda: _worker_busy(aof_redis), timeout=15)
        aof_redis.kill()
        wait_until(lambda: "is unreachable" in log.read_text(), timeout=15)
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(30) == 0, log.read_text()
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait(10)
    _assert_quiet_outage_log(log.read_text(), aof_redis)
    assert "stopping on request while Redis is away" in log.read_text()


def _worker_busy(server: RedisServer) -> bool:
    conn = Redis.from_url(server.url)
    return any(conn.hget(key, "state") == b"busy" for key in conn.keys("rq:worker:*"))


def test_the_outage_bookkeeping_says_one_line_a_minute_while_redis_stays_away(
    conn: Redis, caplog: pytest.LogCaptureFixture
) -> None:
    now = [0.0]
    log = logging.getLogger("test.outage")
    outage = Outage(conn, "Worker w1", log, clock=lambda: now[0])
    gone = redis.exceptions.ConnectionError("Connection refused")
    with caplog.at_level(logging.DEBUG, logger="test.outage"):
        for now[0] in (0.0, 1.0, 30.0, 61.0, 100.0, 125.0):
            outage.failed(gone, "settle")
        outage.ok(started=-1.0)  # a reply already on its way when Redis went says nothing
        outage.ok(started=126.0)
        outage.ok(started=127.0)
    said = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(said) == 4, said
    assert said[0].startswith("Worker w1: Redis at redis://127.0.0.1:") and "is unreachable" in said[0]
    assert "still unreachable after 61 s" in said[1] and "still unreachable after 125 s" in said[2]
    assert said[3].endswith("is back after 125.0 s")
    assert all(r.exc_info is None for r in caplog.records if r.levelno >= logging.INFO)  # tracebacks: DEBUG only


def test_a_redis_that_flaps_right_after_it_came_back_is_one_outage_in_the_log(
    conn: Redis, caplog: pytest.LogCaptureFixture
) -> None:
    """A full Redis dips under maxmemory and over it again as buffers free and fill: a write lands, the next is
    refused. Seconds apart that is one outage to an operator (one line each way); later, a new one."""
    now = [0.0]
    log = logging.getLogger("test.outage")
    outage = Outage(conn, "supervisor s1", log, clock=lambda: now[0])
    full = redis.exceptions.OutOfMemoryError("command not allowed when used memory > 'maxmemory'")
    with caplog.at_level(logging.DEBUG, logger="test.outage"):
        for now[0] in (0.0, 0.5):
            outage.failed(full, "heartbeat")
        now[0] = 1.0
        outage.ok(started=0.9)  # a write landed: back
        for now[0] in (1.5, 2.0):  # refused again at once: the same outage
            outage.failed(full, "heartbeat")
        now[0] = 3.0
        outage.ok(started=2.9)
        now[0] = 20.0  # a quarter of a minute later: a new outage, said again
        outage.failed(full, "heartbeat")
        now[0] = 22.0
        outage.ok(started=21.0)
    said = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(said) == 4, said
    assert "is full" in said[0] and said[1].endswith("is back after 1.0 s")
    assert "is full" in said[2] and said[3].endswith("is back after 2.0 s")


def test_through_gives_up_at_its_limit_and_a_bad_limit_setting_is_refused(
    conn: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    outage = Outage(conn, "Worker w1", logging.getLogger("test.outage"), limit=0.3, max_wait=0.1)

    def unreachable() -> None:
        raise redis.exceptions.ConnectionError("Connection refused")

    started = time.monotonic()
    with pytest.raises(OutageLimit, match=r"giving up: Redis at .* RQ_SERVICEQ_BURST_OUTAGE_LIMIT=0\.3 s") as info:
        outage.through("settle", unreachable)
    assert info.value.code == 1 and time.monotonic() - started < 2
    monkeypatch.setenv("RQ_SERVICEQ_BURST_OUTAGE_LIMIT", "soon")
    with pytest.raises(SystemExit, match="RQ_SERVICEQ_BURST_OUTAGE_LIMIT must be a number of seconds above 0"):
        ServiceQWorker("drag-pending", connection=conn).work(burst=True)


def test_a_push_that_fills_redis_half_way_tells_exactly_the_chunks_it_wrote() -> None:
    """push_many sends a group of chunks while Redis runs the one before (scripts.push_streamed): when Redis
    fills up half-way, every chunk written was told to the caller before the error, and nothing else is queued."""
    from rq_serviceq.batch import push

    with RedisServer("--maxmemory-policy", "noeviction") as server:
        conn = Redis.from_url(server.url)
        sq = ServiceQ("drag", connection=conn)
        sq.set_worker_config(worker_count=0, auto_start=False)
        conn.config_set("maxmemory", int(conn.info("memory")["used_memory"]) + 12 * 2**20)
        told: list[str] = []
        with pytest.raises(redis.exceptions.OutOfMemoryError):
            for result in push.iter_push(
                conn, sq.keys, [{"i": i, "pad": "x" * 200} for i in range(60_000)], sq.settings
            ):
                told += result.task_ids
        assert 0 < len(told) < 60_000 and len(told) % 1000 == 0
        assert [text(x) for x in conn.lrange(sq.keys.queue, 0, -1)] == told
        conn.config_set("maxmemory", 0)
        assert sq.push({"after": True})  # the connection pool is sound: no reply was left unread on it
