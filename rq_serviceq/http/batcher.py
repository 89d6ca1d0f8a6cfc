"""Auto-batching: single-task requests to one service queue share one PUSH call.

Tasks wait per service queue and are flushed when ``max_size`` wait, or
``max_delay`` after the first one started waiting, whichever comes first.  A
request is answered from its flush's outcome, so a 2xx is never sent before
the task is in Redis; a failed flush fails every request in it, and since a
flush is one PUSH call (at most one chunk), it wrote none of them.  Flushes
run concurrently: a full batch need not wait for the previous one's round
trip, which is what hides a distant Redis' latency.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from rq_serviceq.store.outage import expected

logger = logging.getLogger("rq_serviceq.http")

# (service queue name, tasks) -> one result per task: a value, or an exception for that task alone.
FlushFunc = Callable[[str, list[Any]], Awaitable[list[Any]]]


# Requests answered per turn of the event loop after a flush.  Answering all of a
# flush's requests in one turn (64 at 64 clients: 5-7 ms of CPU) kept the loop
# from reading the next requests until the last answer was out, so the next
# batch's delay began only then, and every client's cycle grew by that time.
# One per turn: each answered client's next request is read before the next
# answer goes out, so the next batch holds the clients in the order they were
# answered, and each waits about as long as the last time.  Measured at 64
# clients behind 11 ms (bench.http): p99 70.6-71.4 ms at 1, 72-76 at 8, 85-124
# at 64; at 256 clients 3% fewer tasks/s than at 8, p99 113 ms against 170.
ANSWER_SLICE = 1


def _settle(future: asyncio.Future[Any], result: Any) -> None:
    if future.done():  # its request was cancelled (the client left)
        return
    if isinstance(result, Exception):
        future.set_exception(result)
    else:
        future.set_result(result)


@dataclass
class _Waiting:
    tasks: list[Any] = field(default_factory=list)
    futures: list[asyncio.Future[Any]] = field(default_factory=list)
    timer: asyncio.TimerHandle | None = None


class AutoBatcher:
    def __init__(self, flush: FlushFunc, max_size: int, max_delay_ms: float) -> None:
        self._flush_func = flush
        self.max_size = max_size
        self.max_delay = max_delay_ms / 1000
        self._waiting: dict[str, _Waiting] = {}
        self._flushing: set[asyncio.Task[None]] = set()
        self._closing = False

    async def submit(self, name: str, task: Any) -> Any:
        """Queue one task; returns its flush's result for it once that flush has succeeded."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        waiting = self._waiting.get(name)
        if waiting is None:
            waiting = self._waiting[name] = _Waiting()
            waiting.timer = loop.call_later(self.max_delay, self._on_timeout, name, waiting)
        waiting.tasks.append(task)
        waiting.futures.append(future)
        if len(waiting.tasks) >= self.max_size or self._closing:
            logger.info("Auto-flushing batch of %d tasks (batch full)", len(waiting.tasks))
            self._start_flush(name, waiting)
        return await future

    def _on_timeout(self, name: str, waiting: _Waiting) -> None:
        if self._waiting.get(name) is waiting:
            logger.info("Batch flusher: flushing %d tasks after timeout", len(waiting.tasks))
            self._start_flush(name, waiting)

    def _start_flush(self, name: str, waiting: _Waiting) -> None:
        del self._waiting[name]
        if waiting.timer is not None:
            waiting.timer.cancel()
        flush = asyncio.get_running_loop().create_task(self._flush(name, waiting))
        self._flushing.add(flush)
        flush.add_done_callback(self._flushing.discard)

    async def _flush(self, name: str, waiting: _Waiting) -> None:
        try:
            results = await self._flush_func(name, waiting.tasks)
        except Exception as exc:  # Redis away is the service's outage line (outage.py), not a line a flush
            log = logger.debug if expected(exc) else logger.warning
            log("flush of %d tasks to %s failed: %s", len(waiting.tasks), name, exc)
            for future in waiting.futures:
                if not future.done():  # done: its request was cancelled (the client left)
                    future.set_exception(exc)
            return
        logger.info("Enqueued batch of %d tasks", len(waiting.tasks))
        answers = list(zip(waiting.futures, results, strict=True))
        for start in range(0, len(answers), ANSWER_SLICE):
            if start:
                await asyncio.sleep(0)  # the loop reads new requests: the next batch's delay starts meanwhile
            for future, result in answers[start : start + ANSWER_SLICE]:
                _settle(future, result)

    @property
    def waiting(self) -> int:
        """Tasks collected and not yet being flushed."""
        return sum(len(w.tasks) for w in self._waiting.values())

    def flush_now(self) -> None:
        """Shutting down: flush what waits at once (not after its delay), and every later task on arrival."""
        self._closing = True
        for name, waiting in list(self._waiting.items()):
            logger.info("Shutting down: flushing %d waiting tasks", len(waiting.tasks))
            self._start_flush(name, waiting)

    async def close(self) -> None:
        """Flush what is waiting now and wait for every flush, so their requests are answered."""
        self.flush_now()
        while self._flushing:
            await asyncio.gather(*self._flushing, return_exceptions=True)
