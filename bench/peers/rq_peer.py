"""Plain RQ's adapter, with the rq installed in the project's venv and RQ's default (pickle) serializer.

W1 ``enqueue_many`` of ``prepare_data`` x 1,000 in one pipeline; workers are
``rq worker --worker-class rq.worker.SimpleWorker``; W3 is an RQ 2 ``Group`` and one
job that ``depends_on`` all of it.  "All done": queue and started registry empty,
the finished registry holding every job.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import rq
from rq import Queue
from rq.group import Group
from rq.job import Dependency
from rq.registry import FinishedJobRegistry, StartedJobRegistry

from . import harness
from .timing import PAYLOAD, mark_callback

QUEUE = "benchrq"
HERE = "bench.peers.rq_peer"  # by name: this module runs as __main__ in the adapter
TIMING = "bench.peers.timing"  # the task functions every system shares
CHUNK = 1000


def callback() -> None:
    mark_callback()


class RQAdapter(harness.Adapter):
    name = "rq"

    def __init__(self, url: str, workdir: Path) -> None:
        super().__init__(url, workdir)
        self.queue = Queue(QUEUE, connection=self.redis)
        self.expected_extra = 0

    def _datas(self, func: Any, count: int) -> list[Any]:
        return [Queue.prepare_data(func, args=(PAYLOAD,)) for _ in range(count)]

    def enqueue(self, n: int, kind: str) -> float | None:
        func = f"{TIMING}.sleep10" if kind == "sleep" else f"{TIMING}.noop"
        for start in range(0, n, CHUNK):
            with self.redis.pipeline() as pipe:
                self.queue.enqueue_many(self._datas(func, min(CHUNK, n - start)), pipeline=pipe)
                pipe.execute()
        return None

    def queued(self) -> int:
        return int(self.queue.count)

    def worker_cmds(self, workload: str, config: str, count: int, kind: str) -> list[list[str]]:
        cmd = [sys.executable, "-m", "rq.cli", "worker", "--worker-class", "rq.worker.SimpleWorker", "--quiet"]
        cmd += ["--url", self.url] + ([] if workload == "W3" else ["--burst"])
        return [[*cmd, QUEUE] for _ in range(count)]

    def drained(self, n: int, workload: str) -> str:
        queued = self.queue.count
        done = set(FinishedJobRegistry(queue=self.queue).get_job_ids(cleanup=False))
        # An entry RQ left in the started registry for a job it has since finished (seen once in W3,
        # two workers) is not work left: only started jobs that are not finished count.
        started = set(StartedJobRegistry(queue=self.queue).get_job_ids(cleanup=False)) - done
        want = n + self.expected_extra
        if queued or started or len(done) < want:
            return f"queued={queued} started={len(started)} finished={len(done)} of {want}"
        return ""

    def batch(self, n: int, tag: str) -> float | None:
        group = Group.create(connection=self.redis)
        jobs: list[Any] = []
        for start in range(0, n, CHUNK):
            jobs += group.enqueue_many(self.queue, self._datas(f"{TIMING}.noop", min(CHUNK, n - start)))
        self.queue.enqueue(f"{HERE}.callback", depends_on=Dependency(jobs=jobs))
        self.expected_extra = 4 if tag == "main" else 0  # its callback, and the warm-up's 2 tasks and callback
        return None

    def versions(self) -> dict[str, str]:
        return {"rq": rq.__version__, "hiredis": harness.hiredis_version()}


if __name__ == "__main__":
    sys.exit(harness.main(RQAdapter))
