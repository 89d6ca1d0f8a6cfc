"""The shapes users see: configuration, Qtasks, batch reports, worker reports.

Pydantic models validate what users set and document what they get back.  They
hold no Redis code: ``state.py`` and ``report.py`` translate between these and
Redis hashes.
"""

from __future__ import annotations

import enum
import re
import time
from typing import Annotated, Any

from croniter import croniter
from pydantic import BaseModel, ConfigDict, Field, Strict, StrictBool, StrictInt, field_validator

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")

# Upper bounds: past them a setting is a typo, and an absurd one breaks workers (a sleep of 1e10 s
# overflows, 10**9 workers exhaust the machine).  docs/configuration.md lists them.
DAY = 86_400
MAX_WORKER_COUNT = 1_000
MAX_RETRY_LIMIT = 1_000
MAX_TASK_BYTES = 64 * 1024 * 1024  # Redis caps a string at 512 MB; a task that size is not a task
MAX_REPORT_TTL = 365 * DAY
MAX_REPORT_INLINE_LIMIT = 1_000_000
MAX_BREAKER_TASKS = 10_000_000  # the breaker's min_tasks and consecutive_failures
DEFAULT_BREAKER_MIN_TASKS = 20  # failure_ratio's min_tasks when none is given: one early failure is no trend

# Strict: True or "10" is refused rather than read as 1.0 or 10.0; ints are still fine.
Seconds = Annotated[float, Strict(), Field(ge=0, le=DAY, allow_inf_nan=False)]
# The field types of the settings, named so that other shapes (the HTTP service's requests) share their rules.
WorkerCount = Annotated[StrictInt, Field(ge=0, le=MAX_WORKER_COUNT)]
Concurrency = Annotated[StrictInt, Field(ge=1, le=1024)]  # tasks one worker process runs at once
RetryLimit = Annotated[StrictInt, Field(ge=0, le=MAX_RETRY_LIMIT)]
Timeout = Annotated[float, Strict(), Field(gt=0, le=DAY, allow_inf_nan=False)]
FailureRatio = Annotated[float, Strict(), Field(gt=0, le=1, allow_inf_nan=False)]
BreakerTasks = Annotated[StrictInt, Field(ge=1, le=MAX_BREAKER_TASKS)]

# At most this many task starts a second (a start every 1e-6 s: past that a limit limits nothing).
MAX_RATE_LIMIT = 1_000_000
RateLimit = Annotated[float, Strict(), Field(gt=0, le=MAX_RATE_LIMIT, allow_inf_nan=False)]
RateBurst = Annotated[StrictInt, Field(ge=1, le=MAX_RATE_LIMIT)]

MAX_REPLICAS = 16  # replicas a push or a settle may wait for (WAIT): past a handful it is a typo
Replicas = Annotated[StrictInt, Field(ge=0, le=MAX_REPLICAS)]

DEFAULT_REPORT_TTL = 7 * DAY
DEFAULT_MAX_TASK_BYTES = 512 * 1024


class Status(enum.StrEnum):
    """Statuses of a service queue, of a batch and of a worker report, shared with the Lua scripts
    (``scripts.prologue`` gives them to Lua as ``S.<NAME>``).

    A service queue is CREATED, then PENDING while a batch waits for its first claim,
    RUNNING, PAUSED, STOPPED, or FINISHED between batches.  A batch is PENDING,
    RUNNING, ENDING (its last task was counted; report and callback under way), then
    FINISHED or STOPPED.  SUSPENDED (RQ's ``rq suspend``) and DELETED are what a claim
    may answer.
    """

    CREATED = "CREATED"
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    PAUSED = "PAUSED"
    ENDING = "ENDING"
    STOPPED = "STOPPED"
    FINISHED = "FINISHED"
    SUSPENDED = "SUSPENDED"
    DELETED = "DELETED"


def validate_name(name: object) -> str:
    """Service queue names become RQ queue names and Redis key parts."""
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise ValueError(
            f"invalid service queue name {name!r}: use 1-100 letters, digits, '_', '.' or '-', "
            "starting with a letter or digit"
        )
    return name


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class WorkerConfig(_Strict):
    worker_count: WorkerCount = 1
    waiting_period: Seconds = 0.0
    resting_period: Seconds = 0.0
    auto_start: StrictBool = True
    concurrency: Concurrency = 1
    # Task starts a second across every worker (None: no limit), and how many may start at once after an
    # idle spell (None: one second's worth).  Enforced inside the claim, on Redis' clock (lua/includes/rate.lua).
    rate_limit: RateLimit | None = None
    rate_burst: RateBurst | None = None


class RetryConfig(_Strict):
    retry_limit: RetryLimit = 0
    loop_backoff: Seconds = 0.0


class BreakerConfig(_Strict):
    """The breaker (``ServiceQ.set_breaker``): when the active batch fails too much, the service queue pauses
    itself.  Each is None (off) by default; ``min_tasks`` counts only with ``failure_ratio``."""

    failure_ratio: FailureRatio | None = None  # pause once failed/ended >= this, with min_tasks ended
    min_tasks: BreakerTasks | None = None
    consecutive_failures: BreakerTasks | None = None  # pause once this many attempts in a row failed

    @classmethod
    def of(cls, **given: Any) -> BreakerConfig:
        """A whole breaker from what a caller gave (the rest off), checked: ``min_tasks`` without
        ``failure_ratio`` is refused (it would count for nothing), and ``failure_ratio`` without it
        takes ``DEFAULT_BREAKER_MIN_TASKS``.  Not a validator of the model: ``Settings`` inherits the
        fields, and a stored pair that breaks the rule must still load (it trips on nothing)."""
        config = cls.model_validate(given)
        if config.min_tasks is not None and config.failure_ratio is None:
            raise ValueError("min_tasks counts ended tasks for failure_ratio: give failure_ratio too")
        if config.failure_ratio is not None and config.min_tasks is None:
            config.min_tasks = DEFAULT_BREAKER_MIN_TASKS
        return config

    def is_on(self) -> bool:
        return self.failure_ratio is not None or self.consecutive_failures is not None


class Settings(WorkerConfig, RetryConfig, BreakerConfig):
    """Everything about a service queue that lives in Redis and every process shares.

    Every number has an upper bound (the constants above; docs/configuration.md):
    a value past it is a typo, and would only break the workers that read it.
    """

    id: str
    name: str
    verbose: StrictBool = False
    report_ttl: Annotated[StrictInt, Field(gt=0, le=MAX_REPORT_TTL)] = DEFAULT_REPORT_TTL
    report_inline_limit: Annotated[StrictInt, Field(ge=0, le=MAX_REPORT_INLINE_LIMIT)] = 10_000
    # Seconds an attempt's RQ Result entry is kept (RQ's own default result_ttl): what RQ's readers and
    # rq-dashboard show while a batch is fresh.  A Redis stream costs about 4.7 KB, so keeping one per
    # task as long as the report would triple a finished task's memory; 0 writes none.
    result_ttl: Annotated[StrictInt, Field(ge=0, le=MAX_REPORT_TTL)] = 500
    task_function: str | None = None
    batch_begin_callback: str | None = None
    batch_end_callback: str | None = None
    worker_push_update_callback: str | None = None
    schedule: str | None = None  # cron expression: work the queue only at these times
    task_timeout: Timeout | None = 180.0  # RQ's default job timeout
    callback_timeout: Timeout = 60.0
    max_task_bytes: Annotated[StrictInt, Field(gt=0, le=MAX_TASK_BYTES)] = DEFAULT_MAX_TASK_BYTES
    # A push and a settle are acknowledged only once WAIT says this many replicas have them (0: as soon as the
    # primary has), waiting at most durable_timeout seconds (docs/reliability.md: what a failover can lose).
    durable_replicas: Replicas = 0
    durable_timeout: Timeout = 1.0
    created_at: float = 0.0

    @field_validator("schedule")
    @classmethod
    def _cron(cls, value: str | None) -> str | None:
        if value is not None and not croniter.is_valid(value):
            raise ValueError(f"{value!r} is not a cron expression (e.g. '0 * * * *' for hourly)")
        return value or None

    def describe(self) -> dict[str, Any]:
        return self.model_dump()


class QTask(BaseModel):
    """A task as reported: the seed's reported Qtask form."""

    task_id: str
    batch_id: str
    serviceq_id: str
    task: Any
    total_retry_attempts: int = 0
    last_retry_timestamp: float | None = None
    created_at: float | None = None
    remark: str = ""


class BatchSummary(BaseModel):
    """A batch's ledger without its task lists: what a batch history lists and status info shows."""

    batch_id: str
    serviceq_id: str
    serviceq_name: str
    start_time: float | None = None
    end_time: float | None = None
    batch_duration: float | None = None
    total_submitted: int = 0
    total_success: int = 0
    total_failed: int = 0
    total_pending: int = 0
    status: str = Status.PENDING
    begin_callback: str | None = None  # "ok", or "failed: <error>"
    end_callback: str | None = None  # "ok", or "failed: <error>" after its bounded retries

    @field_validator("batch_duration")
    @classmethod
    def _round(cls, v: float | None) -> float | None:
        return None if v is None else round(v, 3)


class BatchReport(BatchSummary):
    """The seed's batch report.

    ``passed_tasks``/``failed_tasks`` are filled up to the service queue's
    ``report_inline_limit``; past it they are left empty and ``tasks_inline`` is
    False: page through them with ``ServiceQ.iter_tasks`` instead of holding a
    million tasks in memory.
    """

    tasks_inline: bool = True
    passed_tasks: list[QTask] = []
    failed_tasks: list[QTask] = []
    pending_tasks: list[QTask] = []


class WorkerReport(BaseModel):
    """The seed's worker report (status info's ``worker_reports``) and worker update (what the
    worker-push-update callback gets): one worker's counters."""

    id: str
    created_at: float | None = None
    status: str
    success_count: int = 0
    failed_count: int = 0
    uptime: float = 0.0


WorkerUpdate = WorkerReport


class WorkerInfo(BaseModel):
    """One worker of a service queue, from RQ's worker hash (``ServiceQ.roster``)."""

    name: str
    machine: str | None  # RQ's hostname
    process: int | None  # pid
    state: str  # RQ's: busy, idle, suspended, started
    current_task: str | None  # RQ's current job: the task running now (the first of its group)
    passed: int
    failed: int
    started: float | None  # epoch seconds
    last_seen: float | None  # RQ's last heartbeat, epoch seconds
    seconds_since_seen: float | None
    supervisor: str | None  # the supervisor that started it, when that can be told (see Roster)


class SupervisorInfo(BaseModel):
    """A live ``rq-serviceq worker NAME`` process and the share of worker_count it keeps alive."""

    id: str  # hostname-pid-random
    machine: str
    process: int | None
    share: int
    expires_in: float  # seconds until its heartbeat lapses (it renews it every interval)


class Roster(BaseModel):
    """Who works a service queue.  A worker's ``supervisor`` is set when the worker has a supervisor's naming
    (``<queue>-<12 hex>``) and exactly one supervisor of the queue runs on its machine; None otherwise
    (``rq worker`` started by hand, or several supervisors on one machine)."""

    name: str
    status: str
    worker_count: int
    workers: list[WorkerInfo]
    supervisors: list[SupervisorInfo]


class StatusInfo(BaseModel):
    """The seed's status info: the current (or last) batch's counters, queue lengths, workers."""

    batch_id: str | None = None
    batch_duration: float | None = None
    start_time: float | None = None
    end_time: float | None = None
    total_submitted: int = 0
    total_success: int = 0
    total_failed: int = 0
    total_pending: int = 0
    eta_seconds: float | None = None  # time left at the throughput so far; None until a task has ended
    status: str = Status.CREATED
    pending_q_length: int = 0  # queued plus waiting retries
    waiting_retries: int = 0  # of those, waiting for a retry's due time
    passed_q_length: int = 0  # RQ's finished registry of the pending queue, across batches while kept
    failed_q_length: int = 0  # RQ's failed registry
    worker_reports: dict[str, WorkerReport] = {}
    # Why the service queue is PAUSED ('' unless it is): "paused by hand" (pause()), or what tripped the
    # breaker, e.g. "breaker: 62 of 100 ended tasks failed"; resume() clears it.
    pause_reason: str = ""
    task_function_errors: dict[str, str] = {}  # live workers that cannot import the task function, and why
    # The start budget (set_worker_config(rate_limit=...), a task's Throttle): lua/includes/rate.lua.
    rate_limit: float | None = None  # task starts a second allowed, across every worker (None: no limit)
    rate_burst: int | None = None  # starts allowed at once after an idle spell (None: one second's worth)
    start_rate: float | None = None  # tasks claimed a second over the last 5-10 s (with a limit or a throttle)
    held_back: bool = False  # a claim in the last 2 s took fewer tasks than it could, for the limit or a throttle
    throttled_until: float | None = None  # no task starts before this (Redis' clock), after a task's Throttle
    throttle_remark: str | None = None  # that task's remark

    def start_budget(self) -> str:
        """The rate limit and a throttle in one line, as ``rq-serviceq status`` and the queue page show them
        ('' when neither applies)."""
        parts = []
        if self.rate_limit is not None:
            burst = "a second's worth" if self.rate_burst is None else str(self.rate_burst)
            parts.append(f"rate limit {self.rate_limit:g}/s (burst {burst})")
        if self.start_rate is not None:
            parts.append(f"claiming {self.start_rate:g}/s")
        if self.throttled_until is not None:
            until = time.strftime("%H:%M:%S", time.localtime(self.throttled_until))
            parts.append(f"throttled until {until}: {self.throttle_remark}")
        if self.held_back:
            parts.append("held back")
        return ", ".join(parts)


class BatchEvent(BaseModel):
    """One entry of a service queue's progress feed (``ServiceQ.events``).

    ``type`` is opened, progress, paused, resumed, stopped, throttled (a task raised
    ``Throttle``: no start until ``until``), breaker (it paused the service queue;
    ``reason`` says why, and a ``paused`` event follows), ended (the batch's last task
    was counted) or finished (its report and batch-end callback are done; ``status``
    says FINISHED or STOPPED).  A paused event's ``reason`` is the queue's
    ``pause_reason``.  A progress event carries the batch's
    ledger after the step (``submitted``, ``passed``, ``failed``, ``pending``) and
    how many tasks that step scheduled to retry (``retried``).
    """

    id: str  # the stream entry id: pass it as ``since`` to read what came after
    type: str
    batch_id: str
    time: float  # Redis' clock, epoch seconds (millisecond precision)
    status: str | None = None
    reason: str | None = None
    submitted: int | None = None
    passed: int | None = None
    failed: int | None = None
    pending: int | None = None
    retried: int | None = None
    until: float | None = None  # throttled: no task starts before this (Redis' clock)
    remark: str | None = None  # throttled: the remark of the task that raised Throttle


class QueueLengths(BaseModel):
    """Where a service queue's tasks are now, counted in one round trip."""

    queued: int = 0  # on NAME-pending, for a worker
    waiting_retries: int = 0  # waiting for a retry's due time
    in_flight: int = 0  # claimed by a worker (leased)
    passed: int = 0  # RQ's finished registry of the pending queue, across batches while kept
    failed: int = 0  # RQ's failed registry
    workers: int = 0  # registered on the pending queue (RQ's registry: not checked for a heartbeat)


class Progress(BatchSummary):
    """A batch's ledger and where its tasks are, read together: what ``watch`` and a batch page poll."""

    finalized: bool = False  # its report is built and its batch-end callback has run: nothing more changes
    queue_status: str = Status.CREATED  # the service queue's (PAUSED shows here while the batch is RUNNING)
    pause_reason: str = ""  # why it is PAUSED (StatusInfo.pause_reason), '' unless it is
    queued: int = 0
    waiting_retries: int = 0


class QueueFigures(BaseModel):
    """One service queue's figures, read with every other queue's in a few round trips: what
    ``rq-serviceq list`` shows and the metrics export."""

    name: str
    status: str = Status.CREATED
    batch_id: str | None = None  # the active batch, else the last one
    batch: dict[str, int] = {}  # that batch's ledger: submitted, passed, failed, pending (0 without a batch)
    totals: dict[str, float] = {}  # the running totals that are numbers (batch/totals.py)
    skipped: set[str] = set()  # totals fields that are not numbers: left out (with a warning), not reported as 0
    queue_depth: int = 0
    waiting_retries: int = 0
    tasks_in_flight: int = 0
    live_workers: int = 0  # registered on the pending queue, with a live RQ heartbeat
    supervisors: int = 0
    worker_count: int = 0
