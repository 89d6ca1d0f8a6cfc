"""rq-serviceq's adapter, in the project's own venv, through its public API only.

W1 ``push_many(list)``; workers are ``rq worker --worker-class rq_serviceq.ServiceQWorker``
(``--burst`` for W2/W4/W5, long-running for W3); "all done" is the batch finalized
(report built, batch-end callback run) with nothing queued or in flight.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path
from typing import Any

import rq

import rq_serviceq
from rq_serviceq import ServiceQ

from . import harness
from .timing import PAYLOAD, begin, end, mark_callback

NAME = "benchsq"
HERE = "bench.peers.sq_peer"  # by name: this module runs as __main__ in the adapter


# --- what the workers run ---------------------------------------------------------------------
def noop(task: Any) -> bool:
    begin()
    end()
    return True


def sleep10(task: Any) -> bool:
    begin()
    time.sleep(0.01)
    end()
    return True


async def sleep10_async(task: Any) -> bool:
    begin()
    await asyncio.sleep(0.01)
    end()
    return True


def on_batch_end(report: Any) -> None:
    mark_callback()


class ServiceQAdapter(harness.Adapter):
    name = "rq-serviceq"

    def __init__(self, url: str, workdir: Path) -> None:
        super().__init__(url, workdir)
        self.sq = ServiceQ(NAME, connection=self.redis)

    def prepare(self, workload: str, config: str) -> None:
        concurrency = 8 if config.endswith("8") else 1
        self.sq.set_worker_config(worker_count=0, auto_start=False, concurrency=concurrency)
        task = {"threads8": "sleep10", "async8": "sleep10_async"}.get(config, "noop")
        self.sq.set_task_function(f"{HERE}.{task}")
        self.sq.set_batch_end_callback(f"{HERE}.on_batch_end")

    def enqueue(self, n: int, kind: str) -> float | None:
        self.sq.push_many([PAYLOAD] * n)
        return None

    def queued(self) -> int:
        return self.sq.queue_lengths().queued

    def worker_cmds(self, workload: str, config: str, count: int, kind: str) -> list[list[str]]:
        cmd = [sys.executable, "-m", "rq.cli", "worker", "--worker-class", "rq_serviceq.ServiceQWorker", "--quiet"]
        cmd += ["--url", self.url] + ([] if workload == "W3" else ["--burst"])
        return [[*cmd, self.sq.queue_name] for _ in range(count)]

    def env(self) -> dict[str, str]:
        allowed = os.environ.get("RQ_SERVICEQ_ALLOWED_MODULES")
        return {"RQ_SERVICEQ_ALLOWED_MODULES": f"{allowed},bench.peers.sq_peer"} if allowed else {}

    def drained(self, n: int, workload: str) -> str:
        progress = self.sq.batch_progress()
        if progress.finalized and not progress.queued and not self.sq.queue_lengths().in_flight:
            if progress.total_success != n:
                return f"batch finalized with {progress.total_success} passed of {n}"
            return ""
        return f"finalized={progress.finalized} queued={progress.queued} pending={progress.total_pending}"

    def batch(self, n: int, tag: str) -> float | None:
        self.sq.push_many([PAYLOAD] * n)
        return None

    def versions(self) -> dict[str, str]:
        return {"rq_serviceq": rq_serviceq.__version__, "rq": rq.__version__, "hiredis": harness.hiredis_version()}


if __name__ == "__main__":
    sys.exit(harness.main(ServiceQAdapter))
