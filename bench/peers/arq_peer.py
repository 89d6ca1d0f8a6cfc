"""arq's adapter and its worker settings, run with ``.bench/venvs/arq``'s interpreter.

arq's default ``poll_delay`` (0.5 s) makes its workers poll-bound, so W2/W3/W4c/W5 run with
``poll_delay=0.01`` and W4 counts the defaults.  W1 ``enqueue_job`` x 100 at a time with
``asyncio.gather``; W3 has no native construct: every task INCRs a counter and the one
reaching N enqueues the callback.  "All done": the queue sorted set empty, no in-progress keys.
"""

from __future__ import annotations

import asyncio
import os
import sys
from typing import Any

import arq
from arq import create_pool
from arq.connections import RedisSettings

from . import harness
from .timing import PAYLOAD, begin, end, mark_callback

QUEUE = "arq:queue"
GATHER = 100
CONFIG = os.environ.get("BENCH_CONFIG", "")


async def noop(ctx: dict[str, Any], payload: Any) -> None:
    begin()
    end()


async def sleep10(ctx: dict[str, Any], payload: Any) -> None:
    begin()
    await asyncio.sleep(0.01)
    end()


async def counted(ctx: dict[str, Any], payload: Any, key: str, n: int) -> None:
    begin()
    if await ctx["redis"].incr(key) == n:
        await ctx["redis"].enqueue_job("on_done")
    end()


async def on_done(ctx: dict[str, Any]) -> None:
    mark_callback()


class WorkerSettings:
    functions = [noop, sleep10, counted, on_done]  # noqa: RUF012
    redis_settings = RedisSettings.from_dsn(harness.redis_url())
    poll_delay = 0.01 if "poll10ms" in CONFIG else 0.5
    max_jobs = 8 if CONFIG.startswith("j8") else 10


class ArqAdapter(harness.Adapter):
    name = "arq"

    async def _enqueue(self, n: int, function: str, *extra: Any) -> None:
        pool = await create_pool(RedisSettings.from_dsn(self.url))
        try:
            for start in range(0, n, GATHER):
                count = min(GATHER, n - start)
                await asyncio.gather(*(pool.enqueue_job(function, PAYLOAD, *extra) for _ in range(count)))
        finally:
            await pool.aclose()

    def enqueue(self, n: int, kind: str) -> float | None:
        asyncio.run(self._enqueue(n, "sleep10" if kind == "sleep" else "noop"))
        return None

    def queued(self) -> int:
        return int(self.redis.zcard(QUEUE))

    def worker_cmds(self, workload: str, config: str, count: int, kind: str) -> list[list[str]]:
        cmd = [sys.executable, "-m", "arq", "bench.peers.arq_peer.WorkerSettings"]
        cmd += ["--no-burst"] if workload == "W3" else ["--burst"]
        return [cmd for _ in range(count)]

    def drained(self, n: int, workload: str) -> str:
        queued = self.redis.zcard(QUEUE)
        running = sum(1 for _ in self.redis.scan_iter("arq:in-progress:*", count=1000))
        return f"queued={queued} in-progress={running}" if queued or running else ""

    def batch(self, n: int, tag: str) -> float | None:
        asyncio.run(self._enqueue(n, "counted", f"bench:count:{tag}", n))
        return None

    def versions(self) -> dict[str, str]:
        return {"arq": arq.VERSION, "hiredis": harness.hiredis_version()}


if __name__ == "__main__":
    sys.exit(harness.main(ArqAdapter))
