"""SAQ's adapter and its worker settings, run with ``.bench/venvs/saq``'s interpreter.

Workers: ``saq bench.peers.saq_peer.settings`` at concurrency 10 (the default) or 50, 8 for W5.
W1 ``enqueue`` x 100 at a time with ``asyncio.gather`` (SAQ has no pipelined bulk enqueue);
W3 has no native construct: a counter, as for arq.  "All done": SAQ's own counts of
queued, active and incomplete jobs all 0.
"""

from __future__ import annotations

import asyncio
import os
import sys
from importlib.metadata import version
from typing import Any

from saq import Queue

from . import harness
from .timing import PAYLOAD, begin, end, mark_callback

GATHER = 100
CONFIG = os.environ.get("BENCH_CONFIG", "c10")


async def noop(ctx: dict[str, Any], *, payload: Any) -> None:
    begin()
    end()


async def sleep10(ctx: dict[str, Any], *, payload: Any) -> None:
    begin()
    await asyncio.sleep(0.01)
    end()


async def counted(ctx: dict[str, Any], *, payload: Any, counter: str, target: int) -> None:
    begin()
    queue = ctx["worker"].queue
    if await queue.redis.incr(counter) == target:
        await queue.enqueue("on_done")
    end()


async def on_done(ctx: dict[str, Any]) -> None:
    mark_callback()


def _concurrency(config: str) -> int:
    return {"c50": 50, "c8": 8}.get(config, 10)


settings = {
    "queue": Queue.from_url(harness.redis_url()),
    "functions": [noop, sleep10, counted, on_done],
    "concurrency": _concurrency(CONFIG),
}


class SaqAdapter(harness.Adapter):
    name = "saq"

    async def _enqueue(self, n: int, function: str, **extra: Any) -> None:
        queue = Queue.from_url(self.url)
        await queue.connect()
        try:
            for start in range(0, n, GATHER):
                count = min(GATHER, n - start)
                await asyncio.gather(*(queue.enqueue(function, payload=PAYLOAD, **extra) for _ in range(count)))
        finally:
            await queue.disconnect()

    async def _counts(self) -> tuple[int, int, int]:
        queue = Queue.from_url(self.url)
        try:
            return (await queue.count("queued"), await queue.count("active"), await queue.count("incomplete"))
        finally:
            await queue.disconnect()

    def enqueue(self, n: int, kind: str) -> float | None:
        asyncio.run(self._enqueue(n, "sleep10" if kind == "sleep" else "noop"))
        return None

    def queued(self) -> int:
        return asyncio.run(self._counts())[0]

    def worker_cmds(self, workload: str, config: str, count: int, kind: str) -> list[list[str]]:
        return [[sys.executable, "-m", "saq", "bench.peers.saq_peer.settings", "--quiet"] for _ in range(count)]

    def drained(self, n: int, workload: str) -> str:
        queued, active, incomplete = asyncio.run(self._counts())
        return f"queued={queued} active={active} incomplete={incomplete}" if queued or active or incomplete else ""

    def batch(self, n: int, tag: str) -> float | None:
        asyncio.run(self._enqueue(n, "counted", counter=f"bench:count:{tag}", target=n))  # not key=: a Job field
        return None

    def versions(self) -> dict[str, str]:
        return {"saq": version("saq"), "hiredis": harness.hiredis_version()}


if __name__ == "__main__":
    sys.exit(harness.main(SaqAdapter))
