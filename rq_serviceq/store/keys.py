"""Every Redis key rq-serviceq reads or writes, built in one place.

RQ owns the job hashes, the queue list and the registries; rq-serviceq keeps
those exactly where RQ and rq-dashboard look for them and adds its own keys
under ``rq:serviceq:<name>:`` for what RQ has no notion of (batches, retry
schedule, leases).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

PREFIX = "rq:serviceq:"
NAMES = PREFIX + "names"  # SET of every service queue name on this Redis
JOB_PREFIX = "rq:job:"  # RQ's job hash prefix (rq.job.Job.redis_job_namespace_prefix)
RESULTS_PREFIX = "rq:results:"  # RQ's result stream of a job (rq.results.Result.get_key)
SUSPENDED = "rq:suspended"  # RQ's global `rq suspend` flag, honoured by the claim script
RQ_QUEUES = "rq:queues"  # RQ's set of known queue keys (what rq-dashboard lists)
RQ_WORKER_PREFIX = "rq:worker:"  # RQ's worker hash prefix
RQ_WORKERS = "rq:workers"  # RQ's set of every registered worker's key


class Ledger:
    """The fields of a batch's ledger hash (``Keys.batch``), named once for every Python reader.

    The Lua scripts write them (``lua/_lib.lua``, ``push.lua``, ``finish.lua``) under the same names.
    """

    SUBMITTED = "submitted"
    PASSED = "passed"
    FAILED = "failed"
    PENDING = "pending"
    COUNTS = (SUBMITTED, PASSED, FAILED, PENDING)  # the counters, in the order reports and metrics show them
    STATUS = "status"
    START_TIME = "start_time"
    END_TIME = "end_time"  # set once, by the step that took pending to 0 (HSETNX): the batch has ended
    FINAL_STATUS = "final_status"  # FINISHED or STOPPED, for the batch-end work
    FINALIZED = "finalized"  # the report is built and the batch-end callback has run
    BEGIN_CALLBACK = "begin_callback"  # "ok", or "failed: <error>"
    END_CALLBACK = "end_callback"


class State:
    """The fields of a service queue's state hash (``Keys.state``) besides its settings."""

    STATUS = "status"
    ACTIVE_BATCH = "active_batch"
    LAST_BATCH = "last_batch"
    PAUSE_REASON = "pause_reason"  # why it is PAUSED: "paused by hand" or the breaker's reason (lua/includes/pause.lua)


def pending_queue_name(name: str) -> str:
    """The RQ queue that holds a service queue's pending tasks (the seed's ``NAME-pending``)."""
    return f"{name}-pending"


def job_key(task_id: str) -> str:
    return JOB_PREFIX + task_id


def results_key(task_id: str) -> str:
    return RESULTS_PREFIX + task_id


def worker_key(worker_name: str) -> str:
    return RQ_WORKER_PREFIX + worker_name


@dataclass(frozen=True)
class Keys:
    """The keys of one service queue.

    A frozen value object so that scripts, workers and the facade cannot drift
    apart on a key name.
    """

    name: str

    @property
    def queue_name(self) -> str:
        return pending_queue_name(self.name)

    # --- RQ's keys for the pending queue -------------------------------------------
    @property
    def queue(self) -> str:  # LIST of task ids waiting for a worker (RQ's queue)
        return "rq:queue:" + self.queue_name

    @property
    def intermediate(self) -> str:  # LIST RQ's intermediate queue: where a plain `rq worker` moves an id it takes
        return self.queue + ":intermediate"

    @property
    def started(self) -> str:  # ZSET RQ's StartedJobRegistry: "<id>:<claim>" of running tasks
        return "rq:wip:" + self.queue_name

    @property
    def workers(self) -> str:  # SET RQ's registry of the workers listening on the pending queue
        return "rq:workers:" + self.queue_name

    @property
    def finished(self) -> str:  # ZSET RQ's FinishedJobRegistry: the passed queue
        return "rq:finished:" + self.queue_name

    @property
    def failed(self) -> str:  # ZSET RQ's FailedJobRegistry: the failed queue
        return "rq:failed:" + self.queue_name

    # --- rq-serviceq's own keys ---------------------------------------------------
    @property
    def base(self) -> str:
        return PREFIX + self.name + ":"

    @property
    def state(self) -> str:  # HASH config, status, active/last batch id
        return self.base + "state"

    @property
    def retry(self) -> str:  # ZSET task id -> due time (float epoch) of waiting retries
        return self.base + "retry"

    @property
    def leases(self) -> str:  # ZSET task id -> lease expiry of claimed (in-flight) tasks
        return self.base + "leases"

    @property
    def journal_prefix(self) -> str:  # + worker name: that worker's task journal (``journal``)
        return self.base + "journal:"

    def journal(self, worker_name: str) -> str:  # LIST a worker's journal of its claimed group (worker/journal.py)
        return self.journal_prefix + worker_name

    @property
    def bell(self) -> str:  # LIST of wake-up tokens idle workers block on
        return self.base + "bell"

    @property
    def batches(self) -> str:  # ZSET batch id -> start time: the batch history
        return self.base + "batches"

    @property
    def finalize(self) -> str:  # ZSET batch id -> lease expiry of batch-end work not yet done
        return self.base + "finalize"

    @property
    def events(self) -> str:  # STREAM batch events (opened, progress, paused, ..., finished), capped near 10,000
        return self.base + "events"

    @property
    def totals(self) -> str:  # HASH running totals for metrics: pushed, passed, failed, retried, lost (totals.py)
        return self.base + "totals"

    @property
    def rate(
        self,
    ) -> str:  # HASH the start budget: rate limit (GCRA), Throttle's hold, recent rate (lua/includes/rate.lua)
        return self.base + "rate"

    @property
    def supervisors(self) -> str:  # ZSET supervisor id -> heartbeat expiry, for dividing worker_count
        return self.base + "supervisors"

    @property
    def task_function_errors(self) -> str:  # HASH worker name -> "path: error" of workers that cannot import it
        return self.base + "task_function_errors"

    def acks(self, gen: int) -> str:  # SET workers that took in pause/stop generation `gen`
        return f"{self.base}acks:{gen}"

    @property
    def batch_prefix(self) -> str:
        return self.base + "batch:"

    def batch(self, batch_id: str) -> str:  # HASH the batch ledger: counters, times, status
        return self.batch_prefix + batch_id

    def batch_passed(self, batch_id: str) -> str:  # LIST task ids that passed, in order
        return self.batch(batch_id) + ":passed"

    def batch_failed(self, batch_id: str) -> str:  # LIST task ids that failed, in order
        return self.batch(batch_id) + ":failed"

    def batch_open(self, batch_id: str) -> str:  # SET task ids counted in but not yet ended
        return self.batch(batch_id) + ":open"

    def batch_audit(self, batch_id: str) -> str:  # STRING the worker auditing the batch (RECONCILE), 2 s TTL or more
        return self.batch(batch_id) + ":audit"

    def batch_keys(self, batch_id: str) -> list[str]:
        """Every key of one batch (the Lua scripts build the same names from ``batch_prefix``)."""
        return [
            self.batch(batch_id),
            self.batch_passed(batch_id),
            self.batch_failed(batch_id),
            self.batch_open(batch_id),
            self.batch_audit(batch_id),
        ]

    def own_keys(self) -> list[str]:
        """The fixed keys of this service queue (batch keys are found through ``batches``)."""
        return [
            self.queue,
            self.intermediate,
            self.started,
            self.finished,
            self.failed,
            self.state,
            self.retry,
            self.leases,
            self.bell,
            self.batches,
            self.finalize,
            self.supervisors,
            self.events,
            self.task_function_errors,
            self.totals,
            self.rate,
        ]


_NAME_MARK = "\x00"  # no service queue name holds it (models.NAME_PATTERN)


def shape(key_of: Callable[[Keys], str]) -> tuple[str, str]:
    """A service queue's key as the text before and after the queue's name: how a script that reads many
    queues (``lua/reads/``) builds their keys without spelling them out a second time."""
    before, _, after = key_of(Keys(_NAME_MARK)).partition(_NAME_MARK)
    return before, after
