"""The web process's side of Redis: producer-role ServiceQ handles, a connection pool, the threads that use it.

Every Redis call goes through the library's facade (``ServiceQ``) and its one
PUSH path, run on a bounded thread pool so the event loop never blocks.  The
client never retries a command by itself: a PUSH whose reply was lost and was
sent again would write its tasks twice, so a failure is reported (503) instead.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar

from redis import BlockingConnectionPool, Redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from .. import launcher
from ..push import CHUNK_SIZE, PushResult, encode_task
from ..serviceq import SETTINGS_MAX_AGE, ServiceQ
from .config import HttpConfig

T = TypeVar("T")


class UnknownServiceQ(LookupError):
    """404: reads and controls never create a service queue."""


class TaskRejected(ValueError):
    """A task that cannot be written: ``status`` 413 (too big) or 422 (not JSON-serializable)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class PartialBatch(RuntimeError):
    """A multi-chunk batch failed after some whole chunks were written; says which."""

    def __init__(self, written: list[PushResult], cause: BaseException) -> None:
        super().__init__(str(cause))
        self.written = written
        self.cause = cause


@dataclass(frozen=True)
class Pushed:
    task_id: str
    batch_id: str


class Service:
    """One per app: the Redis connection pool and the service queue handles of this web process."""

    def __init__(self, config: HttpConfig) -> None:
        self.config = config
        pool = BlockingConnectionPool.from_url(
            config.redis_url,
            max_connections=config.redis_pool,
            timeout=10,
            socket_connect_timeout=5,
            socket_timeout=60,
            retry=Retry(NoBackoff(), 0),
        )
        self.conn = Redis(connection_pool=pool)
        self.where = launcher.connection_url(self.conn, hide_password=True)
        self.executor = ThreadPoolExecutor(max_workers=config.redis_pool, thread_name_prefix="serviceq-redis")
        self._queues: dict[str, ServiceQ] = {}
        self._limits: dict[str, tuple[float, int]] = {}
        self._lock = threading.Lock()

    async def run(self, func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run a blocking Redis call on the service's threads."""
        return await asyncio.get_running_loop().run_in_executor(self.executor, partial(func, *args, **kwargs))

    def close(self) -> None:
        self.executor.shutdown(wait=True)
        self.conn.close()
        self.conn.connection_pool.disconnect()

    # --- handles ----------------------------------------------------------------------------
    def existing(self, name: str) -> ServiceQ:
        """The service queue, which must exist (reads and controls)."""
        sq = self._queues.get(name)
        if sq is not None:
            return sq
        try:
            sq = ServiceQ.open(name, connection=self.conn, role="producer")
        except LookupError:
            raise UnknownServiceQ(f"no service queue named {name!r} on {self.where}") from None
        return self._keep(sq)

    def for_push(self, name: str) -> ServiceQ:
        """The service queue to push to: created on first use when SERVICEQ_AUTO_CREATE is on."""
        sq = self._queues.get(name)
        if sq is not None:
            return sq
        if not self.config.auto_create:
            return self.existing(name)
        return self._keep(ServiceQ(name, connection=self.conn, role="producer"))

    def forget(self, name: str) -> None:
        with self._lock:
            self._queues.pop(name, None)

    def _keep(self, sq: ServiceQ) -> ServiceQ:
        with self._lock:
            return self._queues.setdefault(sq.name, sq)

    # --- pushing ------------------------------------------------------------------------------
    def push(self, name: str, tasks: Sequence[Any]) -> list[PushResult]:
        """One PUSH call per chunk of 1,000; a queue deleted elsewhere is recreated (or 404) and pushed to once more."""
        sq = self.for_push(name)
        try:
            return sq.push_chunks(tasks)
        except LookupError:  # deleted by another process since this one cached it
            self.forget(name)
            return self.for_push(name).push_chunks(tasks)

    def push_each(self, name: str, tasks: list[Any]) -> list[Pushed | TaskRejected]:
        """An auto-batcher flush: every task written in one PUSH call, or each bad one refused alone.

        A task too big or not JSON fails only its own request; the others are
        still written together, in one call.
        """
        try:
            results = self.push(name, tasks)
        except (TypeError, ValueError):
            problems = self.problems(name, tasks)
            if not problems:
                raise
            good = [task for i, task in enumerate(tasks) if i not in problems]
            pushed = iter(_flatten(self.push(name, good)) if good else [])
            return [problems[i] if i in problems else next(pushed) for i in range(len(tasks))]
        return list(_flatten(results))

    def push_batch(self, name: str, tasks: list[Any]) -> list[PushResult]:
        """The batch endpoint: all tasks checked first, then one PUSH call (one round trip) per chunk.

        Each chunk is atomic.  Should chunk n fail, chunks before it stay
        written and ``PartialBatch`` says which, so the caller is told exactly.
        A batch of one chunk is checked by the push itself, before it writes
        anything (a separate pass would encode every task twice).
        """
        if len(tasks) <= CHUNK_SIZE:
            try:
                return self.push(name, tasks)
            except (TypeError, ValueError):
                if not self.problems(name, tasks):
                    raise
        problems = self.problems(name, tasks)
        if problems:
            first = min(problems)
            raise TaskRejected(problems[first].status, f"tasks[{first}]: {problems[first]}; nothing was written")
        written: list[PushResult] = []
        for start in range(0, len(tasks), CHUNK_SIZE):
            try:
                written += self.push(name, tasks[start : start + CHUNK_SIZE])
            except Exception as exc:
                if not written:
                    raise
                raise PartialBatch(written, exc) from exc
        return written

    def problems(self, name: str, tasks: Sequence[Any]) -> dict[int, TaskRejected]:
        """Which tasks the service queue would refuse, and why (size limit: its ``max_task_bytes``)."""
        limit = self._task_limit(name)
        found: dict[int, TaskRejected] = {}
        for i, task in enumerate(tasks):
            try:
                encode_task(task, limit)
            except ValueError as exc:
                found[i] = TaskRejected(413, str(exc))
            except TypeError as exc:
                found[i] = TaskRejected(422, str(exc))
        return found

    def _task_limit(self, name: str) -> int:
        """The queue's ``max_task_bytes``, read at most once a second (as a push reads its settings)."""
        now = time.monotonic()
        seen = self._limits.get(name)
        if seen is None or now - seen[0] > SETTINGS_MAX_AGE:
            seen = self._limits[name] = (now, self.for_push(name).settings.max_task_bytes)
        return seen[1]


def _flatten(results: list[PushResult]) -> list[Pushed]:
    return [Pushed(task_id, res.batch_id) for res in results for task_id in res.task_ids]
