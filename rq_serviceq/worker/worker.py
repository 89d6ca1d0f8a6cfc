"""ServiceQWorker: an RQ worker that works one service queue by ServiceQ rules.

RQ's ``work()`` loop stays in charge (registration, signals, ``rq suspend``,
maintenance, heartbeats); this class replaces only the two template methods
that decide *which* work runs and *what happens after*:

- ``dequeue_job_and_maintain_ttl`` claims a group of tasks through the CLAIM
  script (lost tasks and due retries first, then the queue) and otherwise
  sleeps until the next retry falls due or a push rings the bell;
- ``execute_job`` runs the group in this process (serially, on threads, or
  on an event loop) and records every verdict with one SETTLE call, which
  also ends the batch exactly once.

What happens between the claim and the record is ``cycle.process``, the same
path ``ServiceQ.work_once`` takes; the worker adds what only a long-lived
process has: a ``GroupSizer`` (a group takes about ``group_seconds`` to run,
from the tasks' measured durations), a ``LeaseKeeper`` thread, pause notices,
RQ's signals, and RQ's worker hash (``state``, and ``current_job`` written by
the journal as each task starts).  ``--max-jobs`` counts tasks, not groups.

Run it with RQ's CLI: ``rq worker --worker-class rq_serviceq.ServiceQWorker drag-pending``.
With ``--burst`` it stops once nothing of the batch is left, waiting retries included.
"""

from __future__ import annotations

import inspect
import os
import threading
import time
from collections.abc import Callable, Sequence
from types import FrameType
from typing import Any, TypeVar

import redis
from rq.exceptions import StopRequested
from rq.queue import Queue
from rq.serializers import JSONSerializer
from rq.utils import now
from rq.worker import SimpleWorker, WorkerStatus

from rq_serviceq.batch import ledger
from rq_serviceq.job import PLAIN_WORKER_HINT, ServiceQJob
from rq_serviceq.log import worker_log
from rq_serviceq.models import Settings
from rq_serviceq.store import keys as k
from rq_serviceq.store import replies, state
from rq_serviceq.store.connection import harden
from rq_serviceq.store.outage import Outage, OutageLimit, burst_limit, expected
from rq_serviceq.store.state import ServiceQDeleted
from rq_serviceq.task.imports import call_hook
from rq_serviceq.task.remarks import Verdict
from rq_serviceq.worker import control, journal, spool
from rq_serviceq.worker.ahead import ClaimAhead
from rq_serviceq.worker.claim import Claim, leave, release
from rq_serviceq.worker.cycle import Claimant, Done, GroupSizer, Processed, process
from rq_serviceq.worker.journal import Journal
from rq_serviceq.worker.keeper import LeaseKeeper
from rq_serviceq.worker.leases import TASK_LEASE
from rq_serviceq.worker.reconcile import reconcile
from rq_serviceq.worker.run import ForkRunner, Gate, Hold, Runner, Running

_IDLE_STATUSES = ("PAUSED", "STOPPED", "SUSPENDED")
T = TypeVar("T")
CONCURRENCY_ENV = "RQ_SERVICEQ_CONCURRENCY"
JOURNAL_KEEP_GROUPS = 4  # a settle with a next group running keeps this many groups' journal entries (2 each)
TASK_FUNCTION_ERROR_TTL = 120  # seconds a "cannot import" note outlives its last refresh (a worker killed meanwhile)


def _service_name(queues: Any) -> str:
    items = [queues] if isinstance(queues, str | Queue) else list(queues)
    names = [q if isinstance(q, str) else q.name for q in items]
    if len(names) != 1 or not names[0].endswith("-pending") or names[0] == "-pending":
        raise ValueError(
            f"ServiceQWorker works exactly one service queue, named NAME-pending (got {names}); "
            "start one worker per service queue"
        )
    return names[0].removesuffix("-pending")


class ServiceQWorker(SimpleWorker):
    """Works a service queue: claim, perform, settle; retries wait in Redis, not in the worker."""

    job_class = ServiceQJob
    lease_seconds: float = TASK_LEASE  # renewed by the lease keeper every third of it (``leases.py``)
    max_wait: float = 5.0  # longest sleep between claims, so heartbeats and config changes are seen
    beat_every: float = 1.0  # RQ's heartbeat and suspension check, at most this often (seconds)
    # Most tasks one claim takes.  A claim and a settle cost Redis some 0.5 ms each whatever their size (and
    # the worker as much): no-op groups of 128 ran 1.16-1.2x as fast as 64, and 256 another 1.05-1.10x; a
    # call of 256 holds Redis about 2.5 ms, under a push chunk's 4 ms.  Only tasks of under 0.2 ms make such
    # groups (a group is about ``group_seconds`` of work).
    max_group: int = 256
    group_seconds: float = 0.05  # how long a claimed group should take to run
    max_reconnect_wait: float = 5.0  # longest pause between attempts to reach Redis again
    runner_class: type[Runner] = Runner  # how a group runs: in this process (threads, asyncio) or forked
    max_backoff: float = 30.0  # longest wait before trying a task function that did not import again
    claim_ahead: bool = True  # claim the next group while this one runs, when tasks are short (``ahead.py``)

    def __init__(self, queues: str | Queue | Sequence[str | Queue], *args: Any, **kwargs: Any) -> None:
        name = _service_name(queues)
        # ServiceQ jobs are JSON whatever the CLI says (-S): no pickle is ever read from Redis.
        kwargs["serializer"] = JSONSerializer
        kwargs["job_class"] = ServiceQJob
        if kwargs.get("connection") is not None:
            harden(kwargs["connection"])  # made from RQ's SENTINEL settings: a stop inside BLPOP must not skew it
        super().__init__([k.pending_queue_name(name)], *args, **kwargs)
        self.sq_keys = k.Keys(name)
        if not hasattr(self, "_outage"):  # else made as RQ's __init__ named the connection (_set_ip_address)
            self._outage = self._new_outage(self.connection)
        self._gave_up = False  # a burst worker stopped waiting for Redis (OutageLimit): teardown skips Redis
        # Attach here, once: a worker may well start before any producer has run.  Never later, or a
        # worker would re-create a service queue deleted while it runs (it leaves instead: CLAIM says DELETED).
        self.sq_settings: Settings = self._with_redis("attach", lambda: state.attach(self.connection, name))
        self._next_pop_at: float | None = None
        self._claimed: dict[str, Claim] = {}  # the claim whose group RQ's dequeued job stands for, by its id
        self._counts = {"passed": 0, "failed": 0}
        self._claim_gen = 0  # the service queue's pause generation when the running group was claimed
        self._pause_gen_seen = 0  # the newest pause/stop generation this worker was told of
        self._tasks_left: int | None = None  # tasks this worker may still run (RQ's max_jobs), None: no limit
        self._runner: Runner | None = None
        self._keeper = LeaseKeeper(self.connection, self.sq_keys, self.lease_seconds, self.log, self._outage)
        self._claimant = Claimant(self.connection, self.sq_keys, self.name, self._keeper, self._with_redis)
        self._ahead = ClaimAhead(self._claimant)
        self._next: tuple[Claim, Running] | None = None  # the group queued behind the running one (_refill)
        self._running_count = 0  # tasks in the group execute_job runs
        self._hold = Hold()  # a task's Throttle: no task of this worker starts before it ends (the claim's too)
        self._sizer = GroupSizer(self.group_seconds, self.max_group)
        self._start_lock = threading.Lock()  # deciding to start a task vs. acknowledging a pause (see Gate)
        self._journal = Journal(
            self.connection, worker_key=self.key, outage=self._outage, key=self.sq_keys.journal(self.name)
        )  # also names RQ's current_job and state
        self._watcher: spool.Watcher | None = None  # carries the journal's spool to Redis if this worker dies
        self._beat_at = self._suspension_checked_at = float("-inf")
        self._cold_stop = False  # RQ's cold shutdown is raising SystemExit: it is the worker's, not a task's
        self._unavailable: str | None = None  # why the task function cannot be had here, while it cannot
        self._backoff = 0.0
        self._retry_function_at: float | None = None

    # --- RQ template methods ---------------------------------------------------------
    def work(self, *args: Any, **kwargs: Any) -> bool:
        """RQ's work loop, with ``max_jobs`` (``--max-jobs``) counting tasks, as its users expect.

        RQ counts ``execute_job`` calls, and one runs a whole claimed group; so RQ is given no
        limit, claims are capped at what is left, and the worker leaves once it is used up.
        """
        bound = inspect.signature(super().work).bind(*args, **kwargs)
        self._tasks_left = bound.arguments.pop("max_jobs", None)
        if bound.arguments.get("burst"):  # nobody waits for a burst worker: it waits for Redis only so long
            try:
                self._outage.limit = burst_limit()
            except ValueError as exc:
                raise SystemExit(str(exc)) from None
        return super().work(*bound.args, **bound.kwargs)

    def dequeue_job_and_maintain_ttl(
        self, timeout: int | None, max_idle_time: int | None = None
    ) -> tuple[ServiceQJob, Queue] | None:
        if self._next is not None:  # started already, behind the last group: it is recorded whatever comes
            first = self._next[0].jobs[0]
            self._claimed = {first.id: self._next[0]}
            return first, self.queues[0]
        if self._tasks_left is not None and self._tasks_left <= 0:
            self.log.info("Worker %s: ran the tasks --max-jobs allowed, quitting", self.name)
            return None
        burst = timeout is None
        idle_until = None if max_idle_time is None else time.monotonic() + max_idle_time
        self.set_state(WorkerStatus.IDLE)
        if self._retry_function_at is not None:
            if burst:  # leave the batch to a worker that can run it
                self.log.warning("Worker %s: leaving: cannot run this service queue's tasks here", self.name)
                return None
            self._back_off()
        self._rest_before_pop()
        while not self._stop_requested:
            try:
                got = self._claim()
            except ServiceQDeleted as exc:
                self.log.warning("%s; worker %s leaves", exc, self.name)
                self._log(f"{exc}; leaving")
                return None
            if got.finalize_batch:
                self._finalize(got.finalize_batch)
            if got.jobs:
                self._claimed = {got.jobs[0].id: got}  # execute_job runs the whole group
                return got.jobs[0], self.queues[0]
            if got.finalize_batch or (got.active_batch and self._audit(got.active_batch)):
                continue
            if burst and ((not got.active_batch and not got.in_flight) or got.status == "SUSPENDED"):
                if got.status == "SUSPENDED" or self._leave():
                    self._log("no Qtask pending")
                    return None
                continue  # a batch opened since the claim: it may have counted this worker as its own
            if idle_until is not None and time.monotonic() >= idle_until:
                return None
            self._wait(got)
        return None  # a stop was requested: RQ's loop ends on None

    def execute_job(self, job: ServiceQJob, queue: Queue) -> None:  # type: ignore[override]
        """Run the claimed group ``job`` stands for (it and the tasks claimed with it), record every
        verdict (``cycle.process``) and do the end work of the batches that ended."""
        claimed = self._claimed.pop(job.id, None)
        group = claimed.jobs if claimed is not None else [job]
        running = None
        if self._next is not None and self._next[0] is claimed:
            running, self._next = self._next[1], None
        if claimed is not None:
            self._claim_gen = claimed.pause_gen
        self.set_state(WorkerStatus.BUSY)
        settings = self._settings()
        runner = self._runner_for(settings)
        self._running_count = len(group)  # for ``_refill``'s next claim, under ``--max-jobs``
        self._ahead.send(settings, self._ahead_count(settings, len(group), runner))
        gate = running.gate if running is not None else self._gate()
        processed = process(self._claimant, settings, group, runner, gate, self._report, running, self._refill)
        self._sizer.learn(processed.seconds, len(processed.done), runner.concurrency)
        if self._tasks_left is not None:
            self._tasks_left -= len(processed.done)
        self._paused_by_settle(processed)
        for batch_id in processed.ended:
            self._finalize(batch_id)
        self._task_function_found(processed.unavailable)
        self._next_pop_at = time.monotonic() + settings.resting_period
        self.set_state(WorkerStatus.IDLE)

    def clean_registries(self) -> None:
        """RQ's registry maintenance, which must not end the worker: the jobs it meets may have been shaped by
        anyone who can write ``rq:*`` keys (a dependent with no dependencies makes RQ send an empty WATCH)."""
        try:
            super().clean_registries()  # type: ignore[no-untyped-call, unused-ignore]
        except StopRequested:  # RQ's warm shutdown, raised by its signal handler wherever the worker is
            raise
        except Exception:
            self.log.exception("Worker %s: RQ's registry cleanup failed; again at next maintenance", self.name)
            self.last_cleaned_at = now()  # type: ignore[assignment]  # else RQ runs it again at every turn of its loop

    def heartbeat(self, timeout: int | None = None, pipeline: Any = None) -> None:
        """RQ's heartbeat, which RQ's loop sends after every group: at most one a second (RQ's worker_ttl is
        420 s) unless RQ asks for a particular timeout; a group of no-op tasks takes milliseconds."""
        if pipeline is not None:
            super().heartbeat(timeout, pipeline)
            return
        if timeout is None and time.monotonic() - self._beat_at < self.beat_every:
            return
        self._with_redis("heartbeat", lambda: super(ServiceQWorker, self).heartbeat(timeout))
        self._beat_at = time.monotonic()

    def check_for_suspension(self, burst: bool) -> None:
        """RQ's `rq suspend` check, at most once a second: CLAIM sees a suspension at once anyway."""
        if time.monotonic() - self._suspension_checked_at < self.beat_every:
            return
        self._with_redis("suspension check", lambda: super(ServiceQWorker, self).check_for_suspension(burst))
        self._suspension_checked_at = time.monotonic()

    def set_state(self, state: str, pipeline: Any = None) -> None:
        """RQ's worker state: kept here at once (RQ's warm shutdown reads it), told to Redis on the journal's
        connection without waiting (only tools read it); RQ's own writes in a pipeline go as RQ sends them."""
        if pipeline is not None:
            super().set_state(state, pipeline)
        elif not hasattr(self, "_journal"):  # RQ's __init__, before this class's has made the journal
            self._with_redis("state update", lambda: super(ServiceQWorker, self).set_state(state))
        else:
            self._state = state
            self._journal.state(state)

    def _with_redis(self, what: str, call: Callable[[], T]) -> T:
        """Retry through a Redis restart, network cut or full Redis (``Outage.through``); a stop request ends
        the wait (RQ's StopRequested), and so does a burst worker's bound, with one line saying why."""
        try:
            return self._outage.through(what, call, stop=lambda: self._stop_requested)
        except OutageLimit as exc:
            self._gave_up = True
            self.log.error("%s", exc)
            raise
        except redis.exceptions.RedisError as exc:
            if not (self._stop_requested and expected(exc)):
                raise
            self.log.warning("Worker %s: stopping on request while Redis is away; what it holds comes back "
                             "as its leases run out", self.name)  # fmt: skip
            raise StopRequested from None  # RQ's work loop ends on it, quietly

    def _new_outage(self, connection: redis.Redis) -> Outage:
        return Outage(connection, f"Worker {self.name}", self.log, max_wait=self.max_reconnect_wait)

    def _set_ip_address(self, connection: redis.Redis) -> None:
        """RQ's CLIENT SETNAME and CLIENT LIST in its ``__init__``, through an outage too (a worker still being
        built when a network cut began left with ``Connection closed by server``).  The first Redis call of
        this class, so the outage bookkeeping starts here."""
        self._outage, self._gave_up = self._new_outage(connection), False
        self._with_redis("naming its connection", lambda: super(ServiceQWorker, self)._set_ip_address(connection))

    def run_maintenance_tasks(self) -> None:
        """RQ's registry cleaning, through an outage like every other Redis call of the work loop."""
        self._with_redis("maintenance", super().run_maintenance_tasks)

    def _pubsub_exception_handler(self, exc: Exception, pubsub: Any, pubsub_thread: Any) -> None:
        """RQ's command-channel thread logs an error every 2 s while Redis is away: one outage line instead."""
        if not expected(exc):
            super()._pubsub_exception_handler(exc, pubsub, pubsub_thread)
            return
        self._outage.failed(exc, "command channel")
        time.sleep(2.0)

    def register_birth(self) -> None:
        """RQ's registration as the worker starts, through an outage (a worker still starting when a network
        cut began left with ``Connection closed by server``).  Its MULTI/EXEC is atomic, so a retry that finds
        this name registered and alive is one whose reply was lost: registered, then."""
        attempts = 0

        def register() -> None:
            nonlocal attempts
            attempts += 1
            try:
                super(ServiceQWorker, self).register_birth()  # type: ignore[no-untyped-call, unused-ignore]
            except ValueError:  # "There exists an active worker named ..."
                if attempts == 1:
                    raise

        spool.carry_left(self.connection, self.sq_keys, self.name)  # before: RECLAIM unregisters the name
        self._with_redis("registration", register)
        self._start_spool()

    def _start_spool(self) -> None:
        """The journal's spool and its watcher (``spool.py``): made once this name is registered as this
        worker's, and before RQ's command channel starts its thread, since the watcher is forked."""
        started = spool.start(self.connection, self.sq_keys, self.name)
        if started is not None:
            self._journal.spool, self._watcher = started

    def subscribe(self) -> None:
        """RQ's command channel, subscribed to through an outage too."""
        self._with_redis("subscribing to the command channel", super().subscribe)

    def register_death(self) -> None:
        """RQ's unregistration at exit, skipped once Redis is given up on (the worker hash expires by itself)."""
        if not self._gave_up:
            with self._outage.riding_out("unregistering"):
                super().register_death()  # type: ignore[no-untyped-call, unused-ignore]

    def unsubscribe(self) -> None:
        """RQ's, with the wait for its pubsub thread bounded on every redis-py (control.stop_listening)."""
        if self._gave_up or self.pubsub_thread is None:
            return
        with self._outage.riding_out("unsubscribing"):
            self.pubsub.unsubscribe()
        if control.stop_listening(self.pubsub_thread):
            self.pubsub.close()  # else the thread, still reading, closes it as it ends

    def _leave(self) -> bool:
        """Deregister from the pending queue in one step with seeing no work (LEAVE): a push opening a batch
        just now either finds this worker gone, and starts another, or finds it here, and it stays."""
        return self._with_redis("leave", lambda: leave(self.connection, self.sq_keys, self.name))

    def _audit(self, batch_id: str) -> bool:
        """Idle with a batch still pending: look for its tasks that RQ's tools removed (``reconcile.py``).

        True when the audit changed something worth claiming again for.
        """
        audit = self._with_redis(
            "audit",
            lambda: reconcile(self.connection, self.sq_keys, self.name, self._settings(), batch_id, self.lease_seconds),
        )
        if audit.failed or audit.given_back:
            self.log.warning(
                "batch %s: %d tasks removed outside rq-serviceq counted failed, %d a plain rq worker took given back%s",
                batch_id,
                audit.failed,
                audit.given_back,
                PLAIN_WORKER_HINT.format(queue=self.sq_keys.queue_name) if audit.given_back else "",
            )
        for ended in audit.ended:
            self._finalize(ended)
        return bool(audit.given_back or audit.ended)

    def handle_payload(self, message: dict[str, Any]) -> None:
        """RQ's worker command channel, plus ServiceQ's pause/stop notice (see ``control.py``)."""
        payload = control.parse(message)
        if payload.get("command") != control.PAUSE_COMMAND:
            super().handle_payload(message)  # type: ignore[no-untyped-call, unused-ignore]
            return
        # From here on no task of a group claimed before this generation starts; then say so.  Under the
        # start lock, so that no task is between "may start" and "started" while this is acknowledged.
        with self._start_lock:
            self._pause_gen_seen = max(self._pause_gen_seen, int(payload["gen"]))
            control.acknowledge(self.connection, self.sq_keys, int(payload["gen"]), self.name)

    def _paused_by_settle(self, processed: Processed) -> None:
        """What the settle said of pauses: its pause generation, which a group claimed before it (the one
        claimed early, while this one ran) starts none of; and whether the breaker tripped on this group's
        outcomes, which this worker then tells the others holding groups, as ``pause()`` would (without
        waiting for their word: each learns it at its next settle anyway)."""
        with self._start_lock:
            self._pause_gen_seen = max(self._pause_gen_seen, processed.pause_gen)
        if not processed.breaker:
            return
        self.log.warning("Worker %s: %s; service queue %s paused until resume()", self.name, processed.breaker,
                         self.sq_keys.name)  # fmt: skip
        self._log(f"{processed.breaker}; the service queue is paused until resumed")
        gen = processed.pause_gen
        self._with_redis("breaker notice", lambda: control.quiesce(self.connection, self.sq_keys, gen, 0.0))

    def _must_not_start(self) -> bool:
        """Asked (under the start lock) before each task of a claimed group: a stop or a pause since the
        claim gives the rest back."""
        return self._stop_requested or self._pause_gen_seen > self._claim_gen

    def request_stop(self, signum: int, frame: FrameType | None) -> None:
        """RQ's warm shutdown, which raises StopRequested wherever an idle worker is: the flag is set too, so
        that a stop swallowed on its way up (inside a callback's ``except Exception``, say) still ends the
        loop.  It matters because RQ ignores a second signal within a second, and a supervisor stopped with
        its process group sends one just after the group's."""
        self._stop_requested = True
        super().request_stop(signum, frame)  # type: ignore[no-untyped-call, unused-ignore]

    def request_force_stop(self, signum: int, frame: FrameType | None) -> None:
        """RQ's cold shutdown raises SystemExit from the signal handler, maybe inside a task function: flag it,
        so that the runner lets it through instead of taking it for the task's own SystemExit."""
        try:
            super().request_force_stop(signum, frame)
        except SystemExit:
            self._cold_stop = True
            raise

    def _exiting(self) -> bool:
        return self._cold_stop

    def teardown(self) -> None:
        self._finish_next()
        self._ahead.close()  # what a claim still in flight leases is given back below with the rest
        self._keeper.close()
        if not self._gave_up:  # else Redis is away: what this worker holds comes back as its leases run out
            self._give_back_leftovers()
        if self._runner is not None:
            self._runner.close()
        if not self._gave_up:
            self._journal.close()
            if self._unavailable is not None:  # a worker that left cannot import anything: drop its note
                self._note_unavailable(None)
        self._leave_spool()
        self._log("worker terminated")
        super().teardown()  # type: ignore[no-untyped-call, unused-ignore]

    def _leave_spool(self) -> None:
        """A spool with nothing in it goes with the worker; one still holding entries (its last group never
        settled: a cold stop, a stop while Redis was away, an error out of RQ's loop) is left to the watcher,
        which carries it to Redis and reclaims the tasks, as it would had the worker died."""
        spool_ = self._journal.detach_spool()
        if spool_ is not None:
            spool_.close(remove=not spool_.entries())
        if self._watcher is not None:  # its carrying can wait for Redis: only a clean leave is waited for
            self._watcher.close(wait=5.0 if spool_ is not None and not self._gave_up else 0.0)

    def _give_back_leftovers(self) -> None:
        """Give back tasks still leased to this worker that never started.

        RQ's signal handler raises StopRequested wherever an idle worker happens to be, which can
        be just after a CLAIM leased it tasks and before they reached the runner.  Their leases
        would run out in time and another worker would take them; a warm shutdown puts them
        back on the queue at once instead.  A task that started was finished (warm shutdown).
        """
        conn, leases = self.connection, self.sq_keys.leases
        self._journal.sync(strict=True)  # its starts, sent on its own connection, in Redis before it is read here
        try:
            ids = [replies.text(x) for x in conn.zrange(leases, 0, -1)]
            spooled = self._journal.spooled()
            with conn.pipeline(transaction=False) as pipe:
                for task_id in ids:
                    pipe.hmget(k.job_key(task_id), "worker_name", "sq_claim")
                if spooled is None:
                    pipe.lrange(self.sq_keys.journal(self.name), 0, -1)
                rows = pipe.execute()
            entries = spooled if spooled is not None else rows.pop()
            started = journal.starts(entries)
            mine: list[tuple[str, str]] = []
            for task_id, (owner, token) in zip(ids, rows, strict=True):
                claim = replies.text(token or b"")
                ours = owner is not None and replies.text(owner) == self.name
                if ours and claim and not claim.startswith("-") and started.get(task_id) != claim:  # "-": let go
                    mine.append((task_id, claim))
            release(conn, self.sq_keys, self.name, self._settings(), mine, self.lease_seconds)
        except redis.exceptions.RedisError:
            self.log.warning("could not give back this worker's unstarted tasks; their leases will run out")

    # --- a task function this worker cannot import --------------------------------------------
    def _task_function_found(self, unavailable: str | None) -> None:
        """Note where operators look (the logs, ``get_status_info()``) whether this worker can have the task
        function, and when it cannot, wait longer each time before trying again (its group was given back)."""
        if unavailable is None:
            if self._unavailable is not None:
                self._unavailable, self._backoff = None, 0.0
                self._log("task function imports again")
                self._note_unavailable(None)
            return
        said_before = unavailable == self._unavailable
        self._unavailable = unavailable
        self._backoff = min(self.max_backoff, max(1.0, 2 * self._backoff))
        self._retry_function_at = time.monotonic() + self._backoff
        message = f"cannot run tasks here ({unavailable}); gave them back, trying again in {self._backoff:g} s"
        if said_before:  # once per reason: a worker backing off for an hour must not fill the log with it
            self.log.debug("Worker %s: %s", self.name, message)
        else:
            self.log.warning("Worker %s: %s", self.name, message)
            self._log(message)
        self._note_unavailable(unavailable)  # refreshed each time: the note outlives its last refresh only so long

    def _note_unavailable(self, why: str | None) -> None:
        key = self.sq_keys.task_function_errors
        try:
            with self.connection.pipeline(transaction=False) as pipe:
                if why is None:
                    pipe.hdel(key, self.name)
                else:
                    pipe.hset(key, self.name, why)
                    pipe.expire(key, TASK_FUNCTION_ERROR_TTL)
                pipe.execute()
        except redis.exceptions.RedisError as exc:
            if expected(exc):  # Redis away: one outage line, not a traceback each time
                self._outage.failed(exc, "noting why this worker cannot run tasks")
            else:
                self.log.warning("could not record in Redis why this worker cannot run tasks", exc_info=True)

    def _back_off(self) -> None:
        """Wait before claiming again; sooner when the task function setting changes (a fix, perhaps).

        A stop request ends the wait: RQ's signal handler raises StopRequested while the worker is idle.
        """
        until, self._retry_function_at = self._retry_function_at or 0.0, None
        path = self._settings().task_function or ""
        while not self._stop_requested and (left := until - time.monotonic()) > 0:
            time.sleep(min(left, 1.0))
            current = self._with_redis(
                "task function check", lambda: self.connection.hget(self.sq_keys.state, "task_function")
            )
            if replies.text(current or b"") != path:
                break

    # --- claiming and waiting ------------------------------------------------------------
    def _settings(self) -> Settings:
        return self.sq_settings

    def _claim(self) -> Claim:
        """Claim a group (its leases kept from now on by the keeper), no bigger than ``--max-jobs`` leaves:
        the one claimed while the last group ran, if it brought work; else a claim made now, which also
        brings the news an early one could not (nothing left, a batch to wait for)."""
        early = self._ahead.take()
        if early is not None and (early.jobs or early.finalize_batch):
            self.sq_settings = early.settings
            return early
        settings = self._settings()
        count = self._sizer.size(settings, self._concurrency(settings))
        got = self._claimant.claim(settings, count if self._tasks_left is None else min(count, self._tasks_left))
        self.sq_settings = got.settings
        return got

    def _gate(self) -> Gate:
        deadline = self._sizer.deadline()
        return Gate(self._must_not_start, deadline, self._start_lock, self._journal, self._exiting, hold=self._hold)

    def _refill(self, started: Running) -> int:
        """As soon as the group claimed early is here, queue it behind the running one (on threads), so that
        each slot takes a next task as it frees instead of idling through the group's tail and its settle.
        Returns the journal entries that group may already have written, for the settle to keep.

        Not once every task of the running group has started, as before: the slots do not free together
        (their tasks started as each freed), so the first of them often freed before the group was queued;
        the pool's queue is first in, first out, so the running group's tasks still all start first, and the
        queued group's gate gives back what has not started within its deadline (``GroupSizer.deadline``)."""
        runner = self._runner
        if started.decided is None or runner is None:
            return 0
        if not self._ahead.sent and not self._sizer.task_seconds:
            self._first_ahead(started, runner)
        if not self._ahead.sent:
            return 0
        early = self._ahead.take()
        if early is None:
            return 0
        usable = early.jobs and not self._must_not_start() and runner.concurrency == self._concurrency(early.settings)
        if not usable:
            self._ahead.put_back(early)  # claimed as usual at the next dequeue (a pause gives it back there)
            return 0
        self.sq_settings = early.settings
        self._next = (early, runner.start(early.settings, early.jobs, self._gate()))
        # The group after it is claimed now, not once this one has settled: sent then, its reply came back
        # as the queued group's last tasks were starting, or after (a slot idled till it came).
        queued = self._running_count + len(early.jobs)
        self._ahead.send(early.settings, self._ahead_count(early.settings, queued, runner))
        return JOURNAL_KEEP_GROUPS * 2 * self.max_group

    def _first_ahead(self, started: Running, runner: Runner) -> None:
        """The worker's first group, claimed before anything was learned of its tasks, so nothing was claimed
        early: once all its tasks have started, learn from those that ended and claim the next group now if
        they were short, so that its last round's slots refill too (they idled through the settle and a
        claim, some 20 ms of all 8 slots at the start of a run of 10 ms tasks)."""
        settings, decided = self._settings(), started.decided
        if started.progress is None or decided is None or not decided.wait(settings.task_timeout or None):
            return
        done, busy = started.progress()
        if done:
            self._sizer.learn(busy / runner.concurrency, done, runner.concurrency)
            self._ahead.send(settings, self._ahead_count(settings, self._running_count, runner))

    def _finish_next(self) -> None:
        """A group queued behind the last one when the worker leaves: its started tasks finish and are
        recorded (a warm stop), the rest are given back."""
        if self._next is None or self._runner is None or self._gave_up:
            return
        got, running = self._next
        self._next = None
        try:
            processed = process(self._claimant, got.settings, got.jobs, self._runner, running.gate, self._report,
                                running)  # fmt: skip
            for batch_id in processed.ended:
                self._finalize(batch_id)
        except redis.exceptions.RedisError:
            self.log.warning("Worker %s: could not record its last group; its leases will run out", self.name)

    def _ahead_count(self, settings: Settings, group: int, runner: Runner) -> int:
        """How many tasks to claim while a group of ``group`` runs: none unless tasks here have been taking
        at most twice ``group_seconds`` a slot (tasks claimed early then wait no longer than that for one),
        none with a resting period (the seed's pause between pops) or a work horse per task."""
        learned = self._sizer.task_seconds
        if not self.claim_ahead or runner.isolated or settings.resting_period or self._stop_requested:
            return 0
        if not learned or learned > 2 * self.group_seconds:
            return 0
        count = self._sizer.size(settings, runner.concurrency)
        return count if self._tasks_left is None else min(count, self._tasks_left - group)

    def _concurrency(self, settings: Settings) -> int:
        return int(os.environ.get(CONCURRENCY_ENV) or settings.concurrency)

    def _runner_for(self, settings: Settings) -> Runner:
        wanted = self._concurrency(settings)
        if self._runner is None or self._runner.concurrency != wanted:
            if self._runner is not None:
                self._runner.close()
            self._runner = self.runner_class(wanted)
        return self._runner

    def _rest_before_pop(self) -> None:
        """The seed's waiting period before the first pop and resting period between pops."""
        if self._next_pop_at is None:
            wait = self._settings().waiting_period
            if wait:
                self._log(f"waiting for {wait:g} seconds before starting")
            self._next_pop_at = time.monotonic() + wait
        delay = self._next_pop_at - time.monotonic()
        if delay > 0:
            if self._settings().resting_period and self._counts["passed"] + self._counts["failed"]:
                self._log(f"sleeping for resting period of {delay:.3g} seconds")
            time.sleep(delay)

    def _wait(self, got: Claim) -> None:
        """Sleep until the next retry or lease falls due, or until a push rings the bell."""
        wake = got.seconds_to_wake()
        timeout = self.max_wait if wake is None or got.status in _IDLE_STATUSES else min(wake, self.max_wait)
        if timeout > 0.001:
            self._with_redis("wait", lambda: self.connection.blpop([self.sq_keys.bell], timeout=max(timeout, 0.01)))
        self.heartbeat()

    # --- after a task -------------------------------------------------------------------
    def _report(self, done: Done) -> None:
        """Log a settled task, count it for the worker update, and call the push-update callback."""
        settings = self._settings()
        job, outcome, settled = done.job, done.outcome, done.settled
        if settled.result == "stale":
            self._log(f"task {job.id} was taken over by another worker; its outcome here is dropped")
            return
        if settled.result == "retry":
            self._log(f"task {job.id} failed, retrying at {settled.due:.3f} epoch")
        elif settled.result == "passed":
            self._counts["passed"] += 1
            self._log(f"task {job.id} passed: {outcome.remark}")
        else:
            self._counts["failed"] += 1
            if outcome.verdict is Verdict.RETRY:
                self._log("retry limit reached, pushing the task to failed queue")
            self._log(f"task {job.id} failed: {outcome.remark}")
        if settings.worker_push_update_callback:
            qtask = done.qtask(settings.id)
            call_hook(
                settings.worker_push_update_callback, self.worker_update(), qtask, what="worker push update callback"
            )

    def _finalize(self, member: str) -> None:
        """Batch work: ``begin:<id>`` (a begin callback whose pusher died) or a drained batch's end.

        Its lease is renewed while it runs, as a task's is, so a callback may take as long
        as it needs, yet a worker killed meanwhile hands the work over within a lease.
        """
        if not member.startswith(ledger.BEGIN_PREFIX):
            self._log(f"batch {member} drained: building its report and running the batch-end callback")
        before = self.get_state()
        self.set_state(WorkerStatus.BUSY)  # a stop now is a warm one: the callback finishes, then the worker leaves
        try:
            self._claimant.batch_work(self._settings(), member)
        except StopRequested:  # RQ's warm shutdown, raised by its signal handler while idle
            raise
        except Exception:  # not this worker's end: the work stays leased, and is tried again when the lease runs out
            self.log.exception("Worker %s: batch work %s failed; it is tried again in %g s", self.name, member,
                               self.lease_seconds)  # fmt: skip
        if before != WorkerStatus.BUSY:
            self.set_state(before)

    def worker_update(self) -> dict[str, Any]:
        """The seed's worker update: this worker's counters as the push-update callback sees them."""
        born = self.birth_date.timestamp() if self.birth_date else time.time()
        return {
            "id": self.name,
            "created_at": born,
            "status": "RUNNING",
            "success_count": self._counts["passed"],
            "failed_count": self._counts["failed"],
            "uptime": round(time.time() - born, 3),
        }

    def _log(self, message: str) -> None:
        worker_log(bool(self.sq_settings and self.sq_settings.verbose), self.name, message)


class ForkingServiceQWorker(ServiceQWorker):
    """Runs each task in a forked work horse, RQ's default isolation, at the cost of a fork per task.

    ``rq worker --worker-class rq_serviceq.ForkingServiceQWorker drag-pending``
    """

    runner_class = ForkRunner
