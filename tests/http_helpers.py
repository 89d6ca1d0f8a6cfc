"""A real ``rq-serviceq serve`` process for the HTTP tests: free port, own log, stopped by SIGTERM."""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx

from rq_serviceq.testing import free_port

ROOT = Path(__file__).resolve().parent.parent


class ServerProcess:
    def __init__(self, redis_url: str, log_path: Path, env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.log_path = log_path
        self.env = dict(os.environ, PYTHONPATH=str(ROOT), **(env or {}))
        for var in ("SERVICEQ_API_TOKEN", "BATCH_MAX_SIZE", "BATCH_MAX_DELAY_MS", "BATCH_AUTO_ENABLED"):
            if env is None or var not in env:
                self.env.pop(var, None)
        self.cmd = [sys.executable, "-m", "rq_serviceq", "serve", "--port", str(self.port), "--url", redis_url]
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 20.0) -> ServerProcess:
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(self.cmd, env=self.env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        wait_for(self._listening, timeout, f"server on port {self.port} (log {self.log_path})")
        return self

    def _listening(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise RuntimeError(f"server exited with {self.proc.returncode}: {self.log()}")
        try:
            return httpx.get(self.base + "/openapi.json", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def terminate(self, timeout: float = 15.0) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.terminate(10)
            return
        self.proc.kill()
        self.proc.wait(10)


@contextlib.contextmanager
def running_server(redis_url: str, log_path: Path, **env: str) -> Iterator[ServerProcess]:
    server = ServerProcess(redis_url, log_path, env).start()
    try:
        yield server
    finally:
        server.stop()


def wait_for(predicate: Callable[[], object], timeout: float, what: str, interval: float = 0.02) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


CURL_HEADERS = {"User-Agent": "curl/7.88.1", "Accept": "*/*"}  # what curl sends of its own


def replay_curl(base: str, line: str) -> httpx.Response:
    """A documented curl command replayed with httpx against ``base``: its method, headers and body, and
    the headers curl adds (``-d`` without ``-H 'Content-Type: ...'`` says ``application/x-www-form-urlencoded``,
    and makes a GET a POST); the host and port of its URL are replaced by ``base``'s."""
    args = shlex.split(line.replace("\\\n", ""))[1:]  # bash drops a backslash-newline
    method, headers, data, url = "GET", dict(CURL_HEADERS), None, ""
    while args:
        arg = args.pop(0)
        if arg == "-X":
            method = args.pop(0)
        elif arg == "-H":
            key, _, value = args.pop(0).partition(":")
            headers[key.strip()] = value.strip()
        elif arg == "-d":
            data = args.pop(0).encode()
            method = "POST" if method == "GET" else method
            if not any(key.lower() == "content-type" for key in headers):
                headers["Content-Type"] = "application/x-www-form-urlencoded"
        elif arg != "-s":
            url = arg
    path = "/" + url.split("://")[-1].split("/", 1)[1]
    return httpx.request(method, base + path, headers=headers, content=data, timeout=10)
