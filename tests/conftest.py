from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from redis import Redis

from rq_serviceq import ServiceQ, ServiceQWorker
from rq_serviceq.task import stored
from rq_serviceq.testing import RedisServer, SentinelCluster
from rq_serviceq.worker import spool

ROOT = Path(__file__).resolve().parent.parent
T = TypeVar("T")


@pytest.fixture(autouse=True)
def journal_spools(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Each test's workers keep their journal spools (rq_serviceq/worker/spool.py) in a folder of its own;
    at its end, the watchers of the workers it killed have carried theirs to Redis before the next test
    flushes it (they write after their worker is gone, which is the point of them).  One whose Redis is gone
    (a test's own server, stopped) is not waited for: it retries for ``spool.FLUSH_PATIENCE``, in vain."""
    where = tmp_path / "spools"
    monkeypatch.setenv(spool.DIR_ENV, str(where))
    yield where
    deadline = time.monotonic() + 5
    while where.exists() and not all(spool.unowned(p) for p in where.iterdir()) and time.monotonic() < deadline:
        time.sleep(0.02)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer().start()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch) -> str:
    # Task functions and callbacks in worker processes find the server through these.
    monkeypatch.setenv("REDIS_URL", redis_server.url)
    monkeypatch.setenv("RQ_REDIS_URL", redis_server.url)
    return redis_server.url


@pytest.fixture
def conn(redis_url: str) -> Iterator[Redis]:
    connection = Redis.from_url(redis_url)
    connection.flushdb()
    yield connection
    connection.flushdb()


@pytest.fixture
def make_sq(conn: Redis) -> Iterator[Callable[..., ServiceQ]]:
    """A ServiceQ factory whose worker processes are reaped (or killed) at the end of the test."""
    made: list[ServiceQ] = []

    def make(name: str = "drag", **worker_config: Any) -> ServiceQ:
        sq = ServiceQ(name, connection=conn)
        if worker_config:
            sq.set_worker_config(**worker_config)
        made.append(sq)
        return sq

    yield make
    for sq in made:
        for proc in sq._processes:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)


@pytest.fixture
def spawn_cli_worker(redis_url: str) -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    """Start `rq worker --worker-class rq_serviceq.ServiceQWorker ...` exactly as an operator would."""
    procs: list[subprocess.Popen[bytes]] = []

    def spawn(queue: str = "drag-pending", *flags: str) -> subprocess.Popen[bytes]:
        env = dict(os.environ, RQ_REDIS_URL=redis_url, PYTHONPATH=str(ROOT))
        cmd = [
            sys.executable,
            "-m",
            "rq.cli",
            "worker",
            "--worker-class",
            "rq_serviceq.ServiceQWorker",
            "--quiet",
            *flags,
            queue,
        ]
        proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        procs.append(proc)
        return proc

    yield spawn
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)


@pytest.fixture
def spawn_supervisor(redis_url: str) -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    """Start `rq-serviceq worker NAME` in its own process group, so its workers die with it at teardown."""
    procs: list[subprocess.Popen[bytes]] = []

    def spawn(name: str = "drag") -> subprocess.Popen[bytes]:
        env = dict(os.environ, RQ_REDIS_URL=redis_url, PYTHONPATH=str(ROOT))
        cmd = [sys.executable, "-m", "rq_serviceq", "worker", name, "--interval", "0.2"]
        proc = subprocess.Popen(cmd, env=env, cwd=ROOT, start_new_session=True)
        procs.append(proc)
        return proc

    yield spawn
    for proc in procs:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)


def stop_groups(procs: list[subprocess.Popen[bytes]], grace: float = 20.0) -> None:
    """SIGTERM each process group (a supervisor and its workers, a server), then SIGKILL what outlives ``grace``."""
    for proc in procs:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def drain(sq: ServiceQ) -> None:
    """Work the service queue to the end of its batch in this process (no sleeping, no subprocess)."""
    ServiceQWorker(sq.keys.queue_name, connection=sq.connection).work(burst=True, logging_level="WARNING")


def as_bytes(reply: object) -> bytes:
    """A reply of the suite's `conn`, which keeps bytes (redis-py types every reply `bytes | str`)."""
    if not isinstance(reply, bytes):
        raise TypeError(f"expected bytes from Redis, got {reply!r}")
    return reply


def text(reply: object) -> str:
    return as_bytes(reply).decode()


def set_call(conn: Redis, task_id: str, data: bytes) -> None:
    """Make ``data`` the task's whole stored call, as a task too long for the pieces keeps it (rq_serviceq.task.stored):
    how a test damages a task's data as anyone who can write to Redis could."""
    conn.hdel(f"rq:job:{task_id}", *stored.FIELDS)
    conn.hset(f"rq:job:{task_id}", "data", data)


def stored_task(conn: Redis, task_id: str) -> Any:
    """The task a job hash keeps, read as rq-serviceq's own readers read it."""
    values = conn.hmget(f"rq:job:{task_id}", stored.READ)
    return stored.task_of([None if value is None else as_bytes(value) for value in values])


def present(value: T | None) -> T:
    """The value a test relies on being there (a score, a batch id): None fails the test right here."""
    if value is None:
        raise AssertionError("expected a value, got None")
    return value


def wait_until(predicate: Callable[[], object], timeout: float = 30.0, interval: float = 0.02) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(interval)


def untracked_under(path: Path) -> list[str]:
    """Files git would call untracked (not ignored) under ``path``: what running an example left in the
    clone.  Empty outside a git checkout (an sdist), where there is nothing to leave files in."""
    if not (ROOT / ".git").exists():
        return []
    cmd = ["git", "status", "--porcelain", "--untracked-files=all", "--", str(path)]
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=True).stdout
    return [line[3:] for line in out.splitlines() if line.startswith("??")]


@pytest.fixture(scope="session")
def sentinel_cluster() -> Iterator[SentinelCluster]:
    """A primary, a replica and three sentinels (never failed over: tests that kill the primary make their own)."""
    cluster = SentinelCluster().start()
    yield cluster
    cluster.stop()


@pytest.fixture
def sentinel_url(sentinel_cluster: SentinelCluster, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The cluster's redis+sentinel:// URL in RQ_REDIS_URL and REDIS_URL, its database flushed before and after."""
    monkeypatch.setenv("REDIS_URL", sentinel_cluster.url)
    monkeypatch.setenv("RQ_REDIS_URL", sentinel_cluster.url)
    sentinel_cluster.primary.client().flushdb()
    yield sentinel_cluster.url
    sentinel_cluster.primary.client().flushdb()
