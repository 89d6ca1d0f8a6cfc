"""Celery's adapter and its worker module, run with ``.bench/venvs/celery``'s interpreter.

Workers: ``celery worker --pool=solo`` or ``--pool=threads -c 8``, without gossip,
mingle and heartbeat, ``-l WARNING``, no result backend (W3's chord needs one: Redis).
W1 ``group(noop.s(P) x 1,000).apply_async()``.  "All done": the queue list and the
transport's unacked hash empty.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import celery
from celery import Celery, chord, group

from . import harness, timing
from .timing import PAYLOAD, mark_callback

QUEUE = "celery"
CHUNK = 1000

app = Celery("bench_peers", broker=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0"))
app.conf.update(
    task_ignore_result=os.environ.get("BENCH_WORKLOAD") != "W3",
    result_backend=os.environ.get("BENCH_REDIS_URL") if os.environ.get("BENCH_WORKLOAD") == "W3" else None,
    worker_hijack_root_logger=False,
    broker_connection_retry_on_startup=True,
)


def _on_done(results: Any) -> None:
    mark_callback()


noop = app.task(name="bench.noop")(timing.noop)
sleep10 = app.task(name="bench.sleep10")(timing.sleep10)
on_done = app.task(name="bench.on_done")(_on_done)


class CeleryAdapter(harness.Adapter):
    name = "celery"

    def __init__(self, url: str, workdir: Path) -> None:
        super().__init__(url, workdir)
        app.conf.broker_url = url

    def prepare(self, workload: str, config: str) -> None:
        if workload == "W3":
            app.conf.update(result_backend=self.url, task_ignore_result=False)

    def enqueue(self, n: int, kind: str) -> float | None:
        task = sleep10 if kind == "sleep" else noop
        for start in range(0, n, CHUNK):
            group(task.s(PAYLOAD) for _ in range(min(CHUNK, n - start))).apply_async()
        return None

    def queued(self) -> int:
        return int(self.redis.llen(QUEUE))

    def worker_cmds(self, workload: str, config: str, count: int, kind: str) -> list[list[str]]:
        pool = ["--pool=threads", "-c", "8"] if config.endswith("threads8") else ["--pool=solo"]
        cmd = [sys.executable, "-m", "celery", "-A", "bench.peers.celery_peer", "worker", *pool]
        cmd += ["--without-gossip", "--without-mingle", "--without-heartbeat", "-l", "WARNING"]
        return [[*cmd, "-n", f"bench{i}@%h"] for i in range(count)]

    def drained(self, n: int, workload: str) -> str:
        queued, unacked = self.redis.llen(QUEUE), self.redis.hlen("unacked")
        return f"queued={queued} unacked={unacked}" if queued or unacked else ""

    def batch(self, n: int, tag: str) -> float | None:
        chord(group(noop.s(PAYLOAD) for _ in range(n)), on_done.s()).apply_async()
        return None

    def versions(self) -> dict[str, str]:
        return {"celery": celery.__version__, "hiredis": harness.hiredis_version()}


if __name__ == "__main__":
    sys.exit(harness.main(CeleryAdapter))
