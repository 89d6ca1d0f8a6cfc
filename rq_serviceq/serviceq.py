"""ServiceQ: the seed's service queue, as a handle on state kept in Redis.

Every method reads or writes Redis; the object itself holds only the name,
the connection and the worker processes it started.  Build ``ServiceQ("drag")``
in as many processes as you like: they are one service queue.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, Literal

import redis
from redis import Redis

from rq_serviceq.batch import events, ledger, push, reads, report, requeue

# What a caller that encodes tasks itself (the HTTP service) needs around ``push_encoded``, re-exported so that
# it never reaches into batch/: a PUSH call's size (one atomic step), the rules a task's JSON must pass, and
# what a push wrote.
from rq_serviceq.batch.push import CHUNK_SIZE as CHUNK_SIZE
from rq_serviceq.batch.push import MAX_TASK_DEPTH as MAX_TASK_DEPTH
from rq_serviceq.batch.push import PushError
from rq_serviceq.batch.push import PushResult as PushResult
from rq_serviceq.batch.push import encode_task as encode_task
from rq_serviceq.batch.push import written as written
from rq_serviceq.models import (
    BatchEvent,
    BatchReport,
    BatchSummary,
    BreakerConfig,
    Progress,
    QTask,
    QueueFigures,
    QueueLengths,
    RetryConfig,
    Roster,
    Settings,
    Status,
    StatusInfo,
    WorkerConfig,
    WorkerReport,
    validate_name,
)
from rq_serviceq.store import keys as k
from rq_serviceq.store import replies, state
from rq_serviceq.store.connection import connect, connection_url, routes, url_for
from rq_serviceq.store.durable import NotReplicated as NotReplicated
from rq_serviceq.task.imports import import_path_of
from rq_serviceq.worker import control, launcher
from rq_serviceq.worker import cycle as group
from rq_serviceq.worker.roster import roster as read_roster

SETTINGS_MAX_AGE = 1.0  # seconds a push may rely on settings it read before
_UNSET: Any = object()
Role = Literal["default", "producer"]


class RedisUnavailable(redis.exceptions.ConnectionError):
    """Redis could not be reached; the message names the URL that was tried (without its password)."""


class RedisFull(redis.exceptions.OutOfMemoryError):
    """Redis refused a write at ``maxmemory`` (its ``-OOM`` reply); the message names the Redis (password hidden).
    A refused script wrote nothing: Redis refuses a script at its first write, before anything changed."""


class ServiceQ:
    """A named service queue: pending, passed and failed queues, batches and their reports.

    ``role="producer"`` is for processes that must not run user code, such as a web
    server: its pushes never start worker processes (``auto_start`` is left to
    supervisors) and a batch it opens has its begin callback run by the next
    worker that claims, not in this process.
    """

    def __init__(self, name: str, connection: Redis | None = None, role: Role = "default") -> None:
        """Attach to (or create) the service queue.  Without ``connection``, Redis is where the
        workers look too: ``RQ_REDIS_URL``, then ``REDIS_URL``, then localhost (``connection.py``)."""
        if role not in ("default", "producer"):
            raise ValueError(f"role must be 'default' or 'producer', not {role!r}")
        self.name = validate_name(name)
        self.role = role
        self.connection = connection if connection is not None else connect(url_for(name))
        self.keys = k.Keys(name)
        with self._reaching_redis():
            self.id = state.attach(self.connection, name).id
        # One object may serve a web server's or Django's threads: the worker processes it started
        # and the settings it caches change under this lock only.
        self._lock = threading.Lock()
        self._processes: list[launcher.WorkerProcess] = []
        self._recent: tuple[float, Settings] | None = None

    @classmethod
    def open(cls, name: str, connection: Redis | None = None, role: Role = "default") -> ServiceQ:
        """Attach to a service queue that must exist already (``ServiceQ(name)`` creates one)."""
        validate_name(name)
        conn = connection if connection is not None else connect(url_for(name))
        if not reads.exists(conn, name):
            where = connection_url(conn, hide_password=True)
            raise LookupError(f"no service queue named {name!r} on {where}; ServiceQ({name!r}) creates one")
        return cls(name, connection=conn, role=role)

    @staticmethod
    def statuses(connection: Redis) -> dict[str, str]:
        """Every service queue on this Redis and its status, by name."""
        return reads.statuses(connection)

    @staticmethod
    def names(connection: Redis) -> list[str]:
        """Every service queue on this Redis, sorted."""
        return reads.names(connection)

    @staticmethod
    def known(name: str, connection: Redis) -> bool:
        """Whether a service queue named ``name`` exists on this Redis (without attaching to it)."""
        return reads.exists(connection, validate_name(name))

    @staticmethod
    def figures(connection: Redis, routed: Mapping[str, Redis] | None = None) -> list[QueueFigures]:
        """Every service queue's figures (status, current batch, queue lengths, workers, running totals),
        in a few round trips however many queues there are: what ``rq-serviceq list`` and the metrics show.

        ``routed``: the other servers ``RQ_SERVICEQ_ROUTES`` names, by URL (``routed_servers``); each queue
        is then read from the server its route names, an unrouted one from ``connection``."""
        if not routed:
            return reads.figures(connection)
        table = routes()
        found = [f for f in reads.figures(connection) if f.name not in table]
        for url, conn in routed.items():
            found += [f for f in reads.figures(conn) if table.get(f.name) == url]
        return sorted(found, key=lambda f: f.name)

    @staticmethod
    def routed_servers() -> dict[str, Redis]:
        """A connection to each server ``RQ_SERVICEQ_ROUTES`` names, by URL (none without routes)."""
        return {url: connect(url) for url in sorted(set(routes().values()))}

    @staticmethod
    def count(connection: Redis) -> int:
        """How many service queues this Redis holds (one round trip): what a cap on creating them counts."""
        return reads.count(connection)

    @staticmethod
    def where(connection: Redis) -> str:
        """The Redis ``connection`` reaches, as a URL with its password hidden: for messages and logs."""
        return connection_url(connection, hide_password=True)

    def __repr__(self) -> str:
        return f"ServiceQ({self.name!r}, id={self.id!r})"

    # --- configuration ------------------------------------------------------------------
    @property
    def settings(self) -> Settings:
        return state.load(self.connection, self.name)

    def _recent_settings(self) -> Settings:
        """Settings at most ``SETTINGS_MAX_AGE`` old, so a push need not read the config hash every time.

        Changes made through this object apply at once; changes made elsewhere within a second.
        """
        now = time.monotonic()
        recent = self._recent
        if recent is None or now - recent[0] > SETTINGS_MAX_AGE:
            recent = self._recent = (now, self.settings)
        return recent[1]

    def set_worker_config(
        self,
        *,
        worker_count: int = _UNSET,
        waiting_period: float = _UNSET,
        resting_period: float = _UNSET,
        auto_start: bool = _UNSET,
        concurrency: int = _UNSET,
        rate_limit: float | None = _UNSET,
        rate_burst: int | None = _UNSET,
    ) -> None:
        """Change the worker settings given; the others keep their value.

        ``concurrency`` is how many tasks one worker process runs at once (threads, or one
        event loop for ``async def`` task functions); 1 runs them one after another.
        ``rate_limit`` is the most task starts a second for this service queue across every worker on
        every machine (``None``: no limit; 0.5 is a start every 2 s), ``rate_burst`` how many may start
        at once after an idle spell (``None``: one second's worth).  Claims never take more than the
        budget, so no worker holds tasks it may not start (docs/configuration.md: sizing one).
        """
        self._update(
            WorkerConfig,
            worker_count=worker_count,
            waiting_period=waiting_period,
            resting_period=resting_period,
            auto_start=auto_start,
            concurrency=concurrency,
            rate_limit=rate_limit,
            rate_burst=rate_burst,
        )

    def set_retry_config(self, *, retry_limit: int = _UNSET, loop_backoff: float = _UNSET) -> None:
        """``retry_limit`` retries follow the first try; the n-th waits resting + (n-1)*loop_backoff."""
        self._update(RetryConfig, retry_limit=retry_limit, loop_backoff=loop_backoff)

    def set_breaker(
        self,
        *,
        failure_ratio: float | None = None,
        min_tasks: int | None = None,
        consecutive_failures: int | None = None,
    ) -> None:
        """Let the service queue pause itself when its batch fails too much (a provider down, say), instead
        of burning the whole list into ``failed``; ``set_breaker()`` turns it off.

        It trips when, in the active batch (since it opened, or since the last ``resume()``), at least
        ``min_tasks`` tasks have ended (default 20 with ``failure_ratio``) and failed/ended >=
        ``failure_ratio`` (in (0, 1]), or when ``consecutive_failures`` attempts in a row failed (one
        scheduled to retry counts; a pass starts the row again).  Then the queue is PAUSED as by
        ``pause()``, in the same Redis step as the outcomes that tripped it: no task starts until
        ``resume()``, and ``get_status_info()["pause_reason"]`` says why.  Each call replaces the whole
        breaker (what it leaves out is off); bad values raise ValueError and change nothing.  Workers
        follow from their next claim.
        """
        config = BreakerConfig.of(
            failure_ratio=failure_ratio, min_tasks=min_tasks, consecutive_failures=consecutive_failures
        )
        self._update(None, **config.model_dump())

    def breaker(self) -> BreakerConfig:
        """The breaker's settings (all None: off)."""
        settings = self.settings
        return BreakerConfig.model_validate({name: getattr(settings, name) for name in BreakerConfig.model_fields})

    def set_report_config(
        self, *, report_ttl: int = _UNSET, report_inline_limit: int = _UNSET, result_ttl: int = _UNSET
    ) -> None:
        """How long finished batches are kept (seconds) and up to how many tasks a report lists inline."""
        self._update(None, report_ttl=report_ttl, report_inline_limit=report_inline_limit, result_ttl=result_ttl)

    def _update(self, model: type[WorkerConfig] | type[RetryConfig] | None, **given: Any) -> None:
        changes = {name: value for name, value in given.items() if value is not _UNSET}
        if model is not None:
            model.model_validate(changes)  # the error names the field and the rule it broke
        current = self.settings
        updated = Settings.model_validate({**current.model_dump(), **changes})
        state.save(self.connection, updated, set(changes))
        self._recent = None

    def set_limits(
        self, *, task_timeout: float | None = _UNSET, callback_timeout: float = _UNSET, max_task_bytes: int = _UNSET
    ) -> None:
        """Time limits for one task attempt (None: none; default 180 s, RQ's) and for a callback
        (default 60 s), and the largest task accepted, in bytes of JSON (default 512 KiB)."""
        self._update(None, task_timeout=task_timeout, callback_timeout=callback_timeout, max_task_bytes=max_task_bytes)

    def set_durability(self, *, replicas: int = _UNSET, timeout: float = _UNSET) -> None:
        """Acknowledge a push, and record a settle, only once ``WAIT`` says ``replicas`` replicas have it
        (0, the default: once the primary has), waiting at most ``timeout`` seconds (default 1).  A push
        that falls short raises ``NotReplicated`` (its tasks are written on the primary); a settle that
        does is logged.  What a failover can lose without it: docs/reliability.md."""
        self._update(None, durable_replicas=replicas, durable_timeout=timeout)

    def set_task_function(self, func: Callable[..., Any] | str) -> None:
        self._set_path("task_function", func)

    def set_batch_begin_callback(self, func: Callable[..., Any] | str) -> None:
        self._set_path("batch_begin_callback", func)

    def set_batch_end_callback(self, func: Callable[..., Any] | str) -> None:
        self._set_path("batch_end_callback", func)

    def set_worker_push_update_callback(self, func: Callable[..., Any] | str) -> None:
        self._set_path("worker_push_update_callback", func)

    def _set_path(self, field: str, func: Callable[..., Any] | str) -> None:
        state.save(self.connection, self.settings.model_copy(update={field: import_path_of(func)}), {field})
        self._recent = None

    def verbose(self) -> None:
        """Workers print ``epoch | worker_id | message`` lines (the setting is shared through Redis)."""
        self._update(None, verbose=True)

    def silent(self) -> None:
        self._update(None, verbose=False)

    # --- pushing --------------------------------------------------------------------------
    def push(self, task: Any) -> str:
        """Add one task; returns its task id.  The first push while no batch is active opens one."""
        return self.push_many([task])[0]

    def push_many(self, tasks: Iterable[Any]) -> list[str]:
        """Add many tasks, one round trip per chunk of 1,000; returns their task ids in order.

        A refused task raises ``PushError``.  A list (any sequence) is checked whole first,
        so nothing is written then.  Any other iterable (a generator) is read a chunk at a
        time, so the chunks before the refused task are written: the error's ``task_ids``
        and ``batch_ids`` say which, and a batch the push opened has had its batch-begin
        callback and ``auto_start`` as after any push.
        """
        return push.written(self.push_chunks(tasks))[0]

    def push_chunks(self, tasks: Iterable[Any]) -> list[PushResult]:
        """``push_many``, telling for each chunk of 1,000 its task ids and the batch it joined or opened."""
        if isinstance(tasks, str | bytes | dict):
            raise TypeError("push_many takes an iterable of tasks; use push() for a single task")
        written: list[PushResult] = []
        lease = 0.0 if self.role == "producer" else None  # a producer's begin work is due at once, for a worker
        with self._reaching_redis():
            settings = self._recent_settings()
            try:
                for result in push.iter_push(self.connection, self.keys, tasks, settings, begin_lease=lease):
                    written.append(result)
            except Exception as exc:
                self._pushed_in_part(exc, settings, written)
                raise
            self._batches_opened(settings, written)
        return written

    def push_encoded(self, encoded: Sequence[bytes], settings: Settings | None = None) -> list[PushResult]:
        """``push_chunks`` for tasks the caller has encoded and checked itself (``encode_task``'s rules).

        For a caller that holds the JSON already, made by a faster codec (the HTTP service): encoding a
        task twice, once to check it and once to push it, was a fifth of a push's CPU.  Nothing here
        checks the bytes.  ``settings`` is the caller's own copy of them, at most ``SETTINGS_MAX_AGE``
        old (default: this object's).  Up to ``CHUNK_SIZE`` tasks are one atomic PUSH call.
        """
        lease = 0.0 if self.role == "producer" else None  # as push_chunks
        with self._reaching_redis():
            settings = settings or self._recent_settings()
            try:
                results = push.push_encoded(self.connection, self.keys, encoded, settings, begin_lease=lease)
            except NotReplicated as exc:  # written on the primary: its batches begin as after any push
                self._batches_opened(settings, exc.results)
                raise
            self._batches_opened(settings, results)
        return results

    def _pushed_in_part(self, exc: Exception, settings: Settings, written: list[PushResult]) -> None:
        """A push that raised half-way: the batches it opened still begin, and the error says what was written."""
        if isinstance(exc, redis.exceptions.RedisError):
            return  # Redis is out of reach: a worker runs the begin work once its lease runs out
        self._batches_opened(settings, written)
        task_ids, batch_ids = push.written(written)
        if isinstance(exc, PushError | NotReplicated):
            exc.task_ids, exc.batch_ids = task_ids, batch_ids
        elif task_ids:  # the caller's own iterator raised: its type is theirs, so only a note
            exc.add_note(f"push_many wrote {len(task_ids)} tasks before this, in batch {', '.join(batch_ids)}")

    def _batches_opened(self, settings: Settings, results: list[PushResult]) -> None:
        if self.role == "producer":
            return  # its begin work is a worker's (see push_chunks), and it starts no workers
        for res in results:
            if res.opened:
                ledger.begin(self.connection, self.keys, settings, res.batch_id)
                if settings.auto_start and settings.worker_count > 0 and not settings.schedule:
                    self.start()

    @contextlib.contextmanager
    def _reaching_redis(self) -> Iterator[None]:
        """Name the Redis that could not be reached (password hidden) in the error a caller sees."""
        try:
            yield
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
            where = self.where(self.connection)
            raise RedisUnavailable(f"cannot reach Redis at {where}: {exc}") from exc
        except redis.exceptions.OutOfMemoryError as exc:
            where = self.where(self.connection)
            raise RedisFull(f"Redis at {where} is full (maxmemory reached) and refused the write: {exc}") from exc

    # --- workers --------------------------------------------------------------------------
    def start(self) -> int:
        """Start worker processes on this machine up to ``worker_count``; returns how many were started.

        They stop by themselves when the batch is done (RQ's ``--burst``).  A producer
        starts none: its workers are run by supervisors (``rq-serviceq worker NAME``).
        """
        if self.role == "producer":
            raise RuntimeError(f"a producer-role ServiceQ starts no workers: run `rq-serviceq worker {self.name}`")
        with self._lock:
            self._processes = [p for p in self._processes if p.returncode is None]
            wanted = self.settings.worker_count
            running = launcher.workers_taking_work(self.connection, self.name, self._processes)
            count = max(0, wanted - running)
            if count:
                url = connection_url(self.connection)
                self._processes += launcher.spawn_workers(self.name, url, count)
            return count

    def join(self, timeout: float | None = None) -> None:
        """Wait for the worker processes this object started to exit."""
        deadline = None if timeout is None else time.monotonic() + timeout
        for proc in self._processes:
            proc.wait(None if deadline is None else max(0.0, deadline - time.monotonic()))

    # --- control ----------------------------------------------------------------------------
    def pause(self, timeout: float = 5.0) -> None:
        """Stop workers everywhere from starting tasks; running ones finish and are counted.

        When this returns, no task of this service queue starts until ``resume()``:
        claims are refused atomically, and workers holding a claimed group have
        acknowledged that they will start none of it.  Waiting retries wait.
        """
        control.pause(self.connection, self.keys, timeout)

    def resume(self) -> None:
        """Let workers take tasks again, where they left off."""
        control.resume(self.connection, self.keys)

    def stop(self, timeout: float = 30.0) -> str | None:
        """End the active batch now; returns its id (None when there was none).

        Tasks still queued or waiting to retry move to failed with a ``STOPPED | ...``
        remark, a bounded slice per Redis call (a million queued tasks never block
        Redis); running tasks finish and are counted.  Returns once the batch has
        ended and its batch-end callback has run, or after ``timeout`` seconds while
        running tasks are still finishing (the batch then ends when they do).
        Workers started by ``start()`` exit; the next push opens a new batch.  A
        producer leaves the batch-end callback to the next worker's claim and
        returns once the batch has ended, without waiting for it.
        """
        return control.stop(self.connection, self.keys, self.settings, timeout, finalize=self.role != "producer")

    def scale(self, worker_count: int) -> None:
        """Change the worker count at runtime.

        Supervisors (``rq-serviceq worker NAME``) follow within a second.  When this
        object started workers itself (``start()``, ``auto_start``), it adds more or asks
        some to leave (warm shutdown: a running task finishes) here and now.
        """
        self.set_worker_config(worker_count=worker_count)
        with self._lock:
            if not self._processes:
                return  # workers run elsewhere (supervisors, rq worker): they follow the setting
            alive = [p for p in self._processes if p.returncode is None]
            for proc in alive[worker_count:]:
                proc.send_signal(signal.SIGTERM)
            if len(alive) < worker_count and self.get_status() in (Status.PENDING, Status.RUNNING):
                url = connection_url(self.connection)
                self._processes += launcher.spawn_workers(self.name, url, worker_count - len(alive))

    def requeue_failed(self, batch_id: str | None = None) -> int:
        """Push a batch's failed tasks again, as new tasks with fresh retry counts; returns how many.

        They join the running batch, or open a new one.  The old batch's report keeps
        them as failed (that is what happened); they leave RQ's failed registry, and
        a task is never requeued twice, even by two callers at once.  A task whose data
        cannot be read is skipped, with a log line.
        """
        batch_id = batch_id or self.current_batch_id()
        if batch_id is None:
            return 0
        return requeue.requeue_failed(self.connection, self.keys, batch_id, self.push_many)

    def work_once(self) -> dict[str, Any] | None:
        """Process one task in this process (for when no workers run); returns its reported Qtask.

        None when no task is ready (the queue is empty, retries are not yet due, or
        the service queue is paused or stopped).  The task takes the path a worker's
        tasks take (``cycle.process``), under a worker's renewed lease.
        """
        worker_name = f"work-once-{socket.gethostname()}-{os.getpid()}"
        done = group.work_once(self.connection, self.keys, worker_name, self.settings)
        return None if done is None else done.qtask(self.id)

    def set_schedule(self, cron: str | None) -> None:
        """Work the pending queue on a cron schedule (``"0 * * * *"``: hourly), or always (None).

        With a schedule, pushes only fill the queue; at each scheduled time every
        supervisor (``rq-serviceq worker NAME``) starts its share of ``worker_count``
        workers, which work the batch to its end and exit.  A sixth field gives
        seconds (croniter's extension), e.g. ``"* * * * * */10"``.
        """
        self._update(None, schedule=cron)

    # --- reading ---------------------------------------------------------------------------
    def get_status(self) -> str:
        return state.status(self.connection, self.name)

    def describe(self) -> dict[str, Any]:
        return self.settings.describe()

    def exists(self) -> bool:
        """Whether the service queue is still in Redis (another process may have deleted it since)."""
        return reads.exists(self.connection, self.name)

    @property
    def queue_name(self) -> str:
        """The RQ queue its tasks wait on (``NAME-pending``), the one ``rq worker`` is given."""
        return self.keys.queue_name

    def live_workers(self) -> int:
        """Workers listening on it, on any machine (RQ drops a dead one once its heartbeat lapses)."""
        return launcher.live_workers(self.connection, self.name)

    def current_batch_id(self) -> str | None:
        """The active batch, or the last one when none is active."""
        return reads.current_batch_id(self.connection, self.keys)

    def _batch_id(self, batch_id: str | None) -> str:
        found = batch_id or self.current_batch_id()
        if found is None:
            raise LookupError(f"service queue {self.name!r} has had no batch yet")
        return found

    # The seed's maps (get_*) are the models below as dicts: built at this edge only.
    def get_status_info(self) -> dict[str, Any]:
        """The seed's progress map: the current batch's counters, queue lengths, worker reports
        (``status_info()`` as a dict)."""
        return self.status_info().model_dump()

    def get_batch_report(self, batch_id: str | None = None) -> dict[str, Any]:
        """The seed's batch report (``batch_report()`` as a dict); None means the current batch, or the last one."""
        return self.batch_report(batch_id).model_dump()

    def get_batch_summary(self, batch_id: str | None = None) -> dict[str, Any]:
        """The batch report without its task lists: what a progress view polls."""
        return self.batch_summary(batch_id).model_dump()

    def batches(self, offset: int = 0, limit: int = 50) -> list[dict[str, Any]]:
        """The batch history, newest first: each batch's summary (``batch_history()``, as dicts)."""
        return [b.model_dump() for b in self.batch_history(offset, limit)]

    def status_info(self) -> StatusInfo:
        """The current (or last) batch's counters, the queue lengths and the live workers' reports."""
        return report.status_info(self.connection, self.keys, self.settings, self.get_status(), self.current_batch_id())

    def batch_report(self, batch_id: str | None = None) -> BatchReport:
        """The batch report, task lists inline up to ``report_inline_limit``; None: the current (or last) batch."""
        return report.build(self.connection, self.keys, self.settings, self._batch_id(batch_id))

    def batch_summary(self, batch_id: str | None = None) -> BatchSummary:
        return report.summary(self.connection, self.keys, self.settings, self._batch_id(batch_id))

    def batch_history(self, offset: int = 0, limit: int = 50) -> list[BatchSummary]:
        """Batches newest first, from the ``offset``-th; those whose report has expired are left out."""
        return report.history(self.connection, self.keys, self.settings, offset, limit)

    def batch_progress(self, batch_id: str | None = None) -> Progress:
        """A batch's counters, whether it is finalized, the queue's status and where its tasks wait: one round trip."""
        return reads.progress(self.connection, self.keys, self.settings, self._batch_id(batch_id))

    def queue_lengths(self) -> QueueLengths:
        """Tasks queued, waiting to retry, in flight, passed and failed (RQ's registries), workers registered."""
        return reads.lengths(self.connection, self.keys)

    def worker_reports(self) -> dict[str, WorkerReport]:
        """The live workers' reports (PAUSED while the service queue is paused)."""
        return report.worker_reports(self.connection, self.keys, paused=self.get_status() == Status.PAUSED)

    def roster(self) -> Roster:
        """Who works it: each worker RQ registers on it (machine, pid, state, current task, counts, last
        heartbeat) and each live supervisor's share of worker_count."""
        return read_roster(self.connection, self.keys, self.settings.worker_count, self.get_status())

    def newest_event_id(self) -> str:
        """The id of the feed's newest event ('0-0' when it has none): follow ``events(since=...)`` from here."""
        return events.newest_id(self.connection, self.keys)

    def iter_tasks(
        self, batch_id: str, which: str = "passed", page_size: int = report.PAGE_SIZE, start: int = 0
    ) -> Iterator[QTask]:
        """Stream a batch's passed or failed tasks a page at a time (for batches too big to list inline),
        from the ``start``-th in completion order."""
        return report.iter_tasks(self.connection, self.keys, self.id, batch_id, which, page_size, start)

    def wait_for_batch(self, timeout: float = 600.0, batch_id: str | None = None) -> dict[str, Any]:
        """Block until the current batch has ended and its batch-end callback has run; return its report."""
        batch_id = batch_id or self.current_batch_id()
        if batch_id is None:
            raise LookupError(f"service queue {self.name!r} has no batch to wait for")
        deadline = time.monotonic() + timeout
        while not reads.batch_done(self.connection, self.keys, batch_id):
            if time.monotonic() >= deadline:
                raise TimeoutError(f"batch {batch_id} of service queue {self.name!r} did not end within {timeout} s")
            time.sleep(0.02)
        return self.get_batch_report(batch_id)

    def events(self, since: str = "$", block: float | None = None, count: int = 100) -> list[BatchEvent]:
        """The progress feed: batch events after ``since`` (an event id; '$' only new ones, '0' the
        oldest kept), waiting up to ``block`` seconds for one.  Follow it by passing the last id back."""
        return events.read(self.connection, self.keys, since, block, count)

    # --- removal ------------------------------------------------------------------------------
    def delete(self) -> None:
        """Remove everything of this service queue from Redis: tasks, batches, reports, config."""
        conn = self.connection
        batch_ids = [replies.text(b) for b in conn.zrange(self.keys.batches, 0, -1)]
        task_sources = [self.keys.queue, self.keys.retry, self.keys.leases, self.keys.finished, self.keys.failed]
        task_ids: set[str] = set()
        for key in task_sources:
            members = conn.lrange(key, 0, -1) if key == self.keys.queue else conn.zrange(key, 0, -1)
            task_ids.update(replies.text(m) for m in members)
        for batch_id in batch_ids:
            for key in (self.keys.batch_passed(batch_id), self.keys.batch_failed(batch_id)):
                task_ids.update(replies.text(m) for m in conn.lrange(key, 0, -1))
            task_ids.update(replies.text(m) for m in conn.smembers(self.keys.batch_open(batch_id)))
        with conn.pipeline(transaction=False) as pipe:
            for task_id in task_ids:
                pipe.delete(k.job_key(task_id), k.results_key(task_id))
            for batch_id in batch_ids:
                pipe.delete(*self.keys.batch_keys(batch_id))
            pipe.delete(*self.keys.own_keys())
            pipe.srem(k.NAMES, self.name)
            pipe.srem(k.RQ_QUEUES, self.keys.queue)
            pipe.execute()
