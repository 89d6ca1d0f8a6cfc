"""The web process's side of Redis: producer-role ServiceQ handles, a connection pool, the threads that use it.

Every Redis call goes through the library's facade (``ServiceQ``: no key is
built here), run on a bounded thread pool so the event loop never blocks.
Pushes hand it tasks encoded once, here (``codec``, the library's rules),
through ``ServiceQ.push_encoded``.  The client never retries a command by
itself: a PUSH whose reply was lost and was sent again would write its tasks
twice, so a failure is reported (503) instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar

from redis import Redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from rq_serviceq.http import codec
from rq_serviceq.http._fast import packer
from rq_serviceq.http.batcher import AutoBatcher
from rq_serviceq.http.config import HttpConfig
from rq_serviceq.models import Settings
from rq_serviceq.serviceq import CHUNK_SIZE, SETTINGS_MAX_AGE, NotReplicated, PushResult, ServiceQ, written

# The two pieces of the store every long-running process shares (workers, supervisors, watch, metrics):
# where Redis is (a URL, a Sentinel URL) and how an outage is noted and logged.  Neither builds a key.
from rq_serviceq.store.connection import connection_pool, routes
from rq_serviceq.store.outage import Outage

T = TypeVar("T")


class UnknownServiceQ(LookupError):
    """404: reads and controls never create a service queue."""


class TooManyServiceQs(PermissionError):
    """409: auto-create would make more service queues than SERVICEQ_AUTO_CREATE_MAX."""


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
        self.conn = self._connection_to(config.redis_url, config)
        # Service queues RQ_SERVICEQ_ROUTES puts on other Redis servers: a pool for each of those servers.
        table = routes()
        self._servers = {url: self._connection_to(url, config) for url in set(table.values())}
        self._routes = {name: self._servers[url] for name, url in table.items()}
        self.where = ServiceQ.where(self.conn)
        self.outage = Outage(self.conn, "HTTP service", logging.getLogger("rq_serviceq.http"))
        self.executor = ThreadPoolExecutor(max_workers=config.redis_pool, thread_name_prefix="serviceq-redis")
        self._queues: dict[str, ServiceQ] = {}
        self._settings: dict[str, tuple[float, Settings]] = {}
        self._refreshing: set[str] = set()
        self._lock = threading.Lock()

    async def run(self, func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run a blocking Redis call on the service's threads, noting an outage it meets (one log line each way)."""
        call = partial(self._noted, partial(func, *args, **kwargs))
        return await asyncio.get_running_loop().run_in_executor(self.executor, call)

    def _noted(self, call: Callable[[], T]) -> T:
        with self.outage.noting("a request"):
            return call()

    @staticmethod
    def _connection_to(url: str, config: HttpConfig) -> Redis:
        """A blocking pool of ``redis_pool`` connections (a redis+sentinel:// URL: the primary, found again
        after a failover), with the fast path's packer."""
        pool = connection_pool(url, blocking=True, max_connections=config.redis_pool, timeout=10,
                               socket_connect_timeout=5, socket_timeout=60, retry=Retry(NoBackoff(), 0))  # fmt: skip
        packer.install(pool)
        return Redis(connection_pool=pool)

    def conn_for(self, name: str) -> Redis:
        """The Redis service queue ``name`` lives on: its route (RQ_SERVICEQ_ROUTES), else the service's own."""
        return self._routes.get(name, self.conn)

    def all_servers(self) -> list[Redis]:
        """The service's own Redis, then each other server the routes name."""
        return [self.conn, *self._servers.values()]

    def close(self) -> None:
        self.executor.shutdown(wait=True)
        for conn in self.all_servers():
            conn.close()
            conn.connection_pool.disconnect()

    # --- handles ----------------------------------------------------------------------------
    def existing(self, name: str) -> ServiceQ:
        """The service queue, which must exist (reads and controls)."""
        sq = self._queues.get(name)
        if sq is not None:
            return sq
        try:
            sq = ServiceQ.open(name, connection=self.conn_for(name), role="producer")
        except LookupError:
            where = ServiceQ.where(self.conn_for(name))
            raise UnknownServiceQ(f"no service queue named {name!r} on {where}") from None
        return self._keep(sq)

    def for_push(self, name: str) -> ServiceQ:
        """The service queue to push to: created on first use when SERVICEQ_AUTO_CREATE is on, within its cap.

        Called only once the push's tasks are checked, so a refused push creates nothing.
        """
        try:
            return self.existing(name)
        except UnknownServiceQ:
            if not self.config.auto_create:
                raise
        self.check_room(name)
        return self._keep(ServiceQ(name, connection=self.conn_for(name), role="producer"))

    def check_room(self, name: str) -> None:
        """``TooManyServiceQs`` if creating ``name`` would pass SERVICEQ_AUTO_CREATE_MAX.

        Each service queue costs some ten keys and a row in every metrics scrape,
        so a client making up names must not make them without end.  The count
        is every service queue on the Redis, however made; creations racing
        across processes may pass the cap by as many as race.
        """
        limit = self.config.auto_create_max
        if ServiceQ.count(self.conn_for(name)) >= limit:
            raise TooManyServiceQs(
                f"no service queue named {name!r}, and {limit} exist (SERVICEQ_AUTO_CREATE_MAX): "
                "create it explicitly (ServiceQ(name) in Python) or raise the cap"
            )

    def forget(self, name: str) -> None:
        with self._lock:
            self._queues.pop(name, None)
            self._settings.pop(name, None)

    def _keep(self, sq: ServiceQ) -> ServiceQ:
        with self._lock:
            return self._queues.setdefault(sq.name, sq)

    # --- pushing ------------------------------------------------------------------------------
    async def push_one(self, name: str, task: Any, auto: AutoBatcher | None) -> Pushed:
        """One task into Redis: with the concurrent requests' tasks when auto-batching (``auto``), else alone.

        The single-task push of both paths, the FastAPI route and the fast path.
        """
        encoded = await self.encode_one(name, task)
        if auto is not None:
            pushed: Pushed = await auto.submit(name, encoded)
            return pushed
        (alone,) = await self.run(self.push_each, name, [encoded])
        if isinstance(alone, NotReplicated):
            raise alone
        return alone

    async def encode_one(self, name: str, task: Any) -> bytes:
        """A single-task request's JSON, checked against the service queue's limits as it arrives.

        So a bad task is refused at once rather than after waiting out a flush,
        and an auto-batcher flush carries only tasks already encoded and checked:
        its critical path (delay, then one round trip) does no encoding.  The
        settings come from the cache; a cold one is read on the Redis threads.
        """
        settings = self.cached_settings(name)
        if settings is None:
            settings = await self.run(self.settings, name)
        return encode_checked(task, settings.max_task_bytes)

    def push_each(self, name: str, encoded: list[bytes]) -> list[Pushed | NotReplicated]:
        """Single-task requests' tasks (``encode_one``'s bytes), written in one PUSH call: an auto-batcher flush.
        Too few replicas confirming it is told to each request of its own task alone."""
        try:
            return list(_flatten(self.push_encoded(name, encoded)))
        except NotReplicated as exc:
            pushed = _flatten(exc.results)
            return [exc.alone(task.task_id, task.batch_id) for task in pushed]

    def push_batch(self, name: str, tasks: list[Any]) -> list[PushResult]:
        """The batch endpoint: all tasks checked first, then one PUSH call (one round trip) per chunk.
        ``tasks`` is taken over (``encode``).

        Each chunk is atomic.  Should chunk n fail, chunks before it stay
        written and ``PartialBatch`` says which, so the caller is told exactly.
        """
        encoded = self.encode(name, tasks)
        pushed_so_far: list[PushResult] = []
        short: NotReplicated | None = None  # too few replicas confirmed a chunk: all are written, then it is told
        for start in range(0, len(encoded), CHUNK_SIZE):
            try:
                pushed_so_far += self.push_encoded(name, encoded[start : start + CHUNK_SIZE])
            except NotReplicated as exc:
                pushed_so_far += exc.results
                short = exc
            except Exception as exc:
                if not pushed_so_far:
                    raise
                raise PartialBatch(pushed_so_far, exc) from exc
        if short is not None:
            short.task_ids, short.batch_ids = written(pushed_so_far)
            raise short
        return pushed_so_far

    def encode(self, name: str, tasks: list[Any]) -> list[bytes]:
        """Every task's JSON (``encode_checked``), or ``TaskRejected`` naming the first refused one.

        Takes the tasks over: each parsed task is dropped from ``tasks`` once
        encoded, so a big batch is held parsed or encoded, not both at once
        (a 57 MiB body cost some 2.2 times its size, measured in docs/benchmarks.md).
        """
        limit = self.settings(name).max_task_bytes
        encoded: list[bytes] = []
        for i, task in enumerate(tasks):
            try:
                encoded.append(encode_checked(task, limit))
            except TaskRejected as exc:
                raise TaskRejected(exc.status, f"tasks[{i}]: {exc}; nothing was written") from None
            tasks[i] = None
        return encoded

    def push_encoded(self, name: str, encoded: Sequence[bytes]) -> list[PushResult]:
        """One PUSH call for at most a chunk of encoded tasks; a queue deleted elsewhere is recreated (or 404) and
        pushed to once more (a deleted queue's PUSH writes nothing)."""
        try:
            return self.for_push(name).push_encoded(encoded, self._push_settings(name))
        except LookupError:  # deleted by another process since this one cached it
            self.forget(name)
            return self.for_push(name).push_encoded(encoded, self._push_settings(name))

    def _push_settings(self, name: str) -> Settings:
        """The queue's settings, with the service's SERVICEQ_DURABLE_REPLICAS where it asks for more."""
        settings = self.settings(name)
        if self.config.durable_replicas > settings.durable_replicas:
            settings = settings.model_copy(update={"durable_replicas": self.config.durable_replicas})
        return settings

    def settings(self, name: str) -> Settings:
        """``cached_settings``, or read now (a blocking call: from the Redis threads)."""
        return self.cached_settings(name) or self._read_settings(name)

    def cached_settings(self, name: str) -> Settings | None:
        """The service queue's settings if this process read them under a second ago (as a library push
        relies on them), else None; never waits for Redis, so the event loop may call it.

        What a push takes from them is the size limit and the task function's
        name for the job's description (a producer's begin lease is 0).  Under
        steady traffic they are read again in the background once half that
        old, so no push waits a round trip for them: behind an 11 ms link that
        wait was one flush in thirteen, and the p99 of every request in it.
        """
        now = time.monotonic()
        seen = self._settings.get(name)
        if seen is None or now - seen[0] > SETTINGS_MAX_AGE:
            return None
        if now - seen[0] > SETTINGS_MAX_AGE / 2 and name not in self._refreshing:
            self._refreshing.add(name)
            with contextlib.suppress(RuntimeError):  # shutting down: the next push reads them itself
                self.executor.submit(self._refresh_settings, name)
        return seen[1]

    def _read_settings(self, name: str) -> Settings:
        """Read, never creating: a service queue not made yet is checked against the defaults it would get
        (or refused, 404 or over the cap), and made by its first push (``for_push``), once its tasks pass."""
        read_at = time.monotonic()
        try:
            current = self.existing(name).settings
        except LookupError:
            self.forget(name)  # deleted by another process since this one cached it
            if not self.config.auto_create:
                raise UnknownServiceQ(f"no service queue named {name!r} on {self.where}") from None
            self.check_room(name)
            return Settings(id="", name=name)
        self._settings[name] = (read_at, current)
        return current

    def _refresh_settings(self, name: str) -> None:
        """Read the settings again, never creating the queue; any failure is left for the next push to meet."""
        read_at = time.monotonic()
        try:
            sq = self._queues.get(name)
            if sq is not None:
                self._settings[name] = (read_at, sq.settings)
        except Exception:  # deleted, or Redis out of reach: the next push reads them itself, and says so
            self._settings.pop(name, None)
        finally:
            self._refreshing.discard(name)


def encode_checked(task: Any, limit: int) -> bytes:
    """A task's JSON, or ``TaskRejected``: 413 over ``limit`` bytes or nested too deep, 422 not JSON
    (impossible for a parsed body, possible for a caller's own values)."""
    try:
        return codec.encode_task(task, limit)
    except ValueError as exc:  # a PushError is both; over a limit is the one a parsed task can be
        raise TaskRejected(413, str(exc)) from None
    except TypeError as exc:
        raise TaskRejected(422, str(exc)) from None


def _flatten(results: list[PushResult]) -> list[Pushed]:
    return [Pushed(task_id, res.batch_id) for res in results for task_id in res.task_ids]
