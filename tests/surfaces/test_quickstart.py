"""The first hour (issue 20): the HTTP quick-start finishes as written, and a queue without a task function
says so, once, in the supervisor's and the worker's logs, instead of leaving a batch PENDING without a word."""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
from redis import Redis

from rq_serviceq import ServiceQ
from rq_serviceq.store import keys as k
from tests import tasks
from tests.http_helpers import ROOT, replay_curl, running_server, wait_for

DOC = ROOT / "docs" / "http.md"
README = ROOT / "README.md"
CLI = [sys.executable, "-m", "rq_serviceq"]  # what the `rq-serviceq` script runs, from this tree


def quickstart(path: Path) -> list[str]:
    """The commands of a page's HTTP quick-start: the first bash block that runs `rq-serviceq serve`,
    without comments, the install line and the ASGI-server aside."""
    for block in re.findall(r"```bash\n(.*?)```", path.read_text(), re.S):
        if "rq-serviceq serve" in block:
            lines = (line.split("  #")[0].strip() for line in block.splitlines())
            return [line for line in lines if line and not line.startswith(("#", "pip "))]
    raise AssertionError(f"{path} has no HTTP quick-start")


@contextlib.contextmanager
def started(cmd: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A long-running command in its own process group (its workers go with it), output to ``log``."""
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def test_the_http_quickstart_finishes_as_written(redis_url: str, conn: Redis, tmp_path: Path) -> None:
    commands = quickstart(DOC)
    assert commands == quickstart(README), "README's HTTP quick-start and docs/http.md's differ"
    assert commands[0] == "rq-serviceq serve"
    env = dict(os.environ, RQ_REDIS_URL=redis_url, PYTHONPATH=str(ROOT))
    with contextlib.ExitStack() as stack:
        server = stack.enter_context(running_server(redis_url, tmp_path / "serve.log"))
        answers: list[httpx.Response] = []
        for line in commands[1:]:
            words = shlex.split(line)
            if words[:2] == ["rq-serviceq", "worker"]:
                stack.enter_context(started(CLI + words[1:], env, tmp_path / "worker.log"))
            elif words[0] == "rq-serviceq":
                done = subprocess.run(CLI + words[1:], env=env, cwd=ROOT, capture_output=True, timeout=60)
                assert done.returncode == 0, (line, done.stdout, done.stderr)
            else:
                assert words[0] == "curl", line
                answers.append(replay_curl(server.base, line))
        assert answers[0].status_code == 201, answers[0].text
        latest = "/serviceqs/default/batches/latest"

        def finished() -> dict[str, Any] | None:
            report: dict[str, Any] = httpx.get(server.base + latest, timeout=5).json()
            return report if report.get("status") == "FINISHED" else None

        wait_for(finished, 60, f"the quick-start's batch to finish (logs in {tmp_path})")
        report = finished()
        assert report is not None and (report["total_success"], report["total_failed"]) == (2, 0)


# --- a queue without a task function says so ----------------------------------------------------------
NO_FUNCTION = "no task function set for service queue 'nofn'"


def attempts_seen(conn: Redis, name: str) -> Iterator[int]:
    """Count the worker's tries at the task function: each refreshes the TTL of its 'cannot run' note."""
    key, last, count = k.Keys(name).task_function_errors, None, 0
    while True:
        ttl = conn.pttl(key)
        if ttl > 0 and (last is None or ttl > last):
            count += 1
        last = ttl if ttl > 0 else last
        yield count


def test_without_a_task_function_the_supervisor_and_worker_each_say_so_once(
    redis_url: str, conn: Redis, tmp_path: Path
) -> None:
    sq = ServiceQ("nofn", connection=conn)
    sq.set_worker_config(worker_count=1, auto_start=False)
    sq.push_many([{"value": True} for _ in range(3)])
    env = dict(os.environ, RQ_REDIS_URL=redis_url, PYTHONPATH=str(ROOT))
    log = tmp_path / "supervisor.log"
    with started([*CLI, "worker", "nofn", "--interval", "0.05"], env, log):
        text = log.read_text
        wait_for(lambda: "cannot run tasks here (" + NO_FUNCTION in text(), 30, f"the worker's warning ({log})")
        tries = attempts_seen(conn, "nofn")
        wait_for(lambda: next(tries) >= 3, 30, "the worker to try twice more")  # backoffs of 1 s, then 2 s
        assert text().count("tasks wait in service queue nofn, but " + NO_FUNCTION) == 1, text()
        assert "rq-serviceq config nofn --task-function package.module.function" in text()
        assert text().count("cannot run tasks here (" + NO_FUNCTION) == 1, text()
        sq.set_task_function(tasks.returns)  # and the waiting worker picks it up by itself
        assert sq.wait_for_batch(timeout=30)["total_success"] == 3
