"""ServiceQJob: an RQ job that knows its batch, attempts and remark.

The ServiceQ fields are plain hash fields next to RQ's (``sq_batch``,
``sq_retries``, ...) so that the Lua scripts can read them; RQ keeps unknown
fields in place when it saves, so plain RQ tools do not disturb them.

Every name RQ would import from a job hash goes through rq-serviceq's import policy
(``task.imports.resolve``) instead of RQ's ``import_attribute``, which imports any module: RQ's own
maintenance in a ServiceQ worker (failing an abandoned job of ``rq:wip:NAME-pending`` calls its
``failure_callback_name``) meets jobs that anyone who can write ``rq:*`` keys may have shaped.
"""

from __future__ import annotations

import json
import weakref
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus, validate_job_id
from rq.results import Result
from rq.serializers import JSONSerializer
from rq.utils import now

from rq_serviceq.store.replies import rq_date, text
from rq_serviceq.task import stored
from rq_serviceq.task.imports import call_hook, resolve

_PROTOTYPES: weakref.WeakKeyDictionary[Any, ServiceQJob] = weakref.WeakKeyDictionary()
DESCRIPTION_LIMIT = 120  # characters of a task rq-dashboard's description shows (all with RQ_DASHBOARD_SHOW_FULL_ARGS)
_DATES = (b"created_at", b"enqueued_at", b"started_at", b"ended_at", b"last_heartbeat")
# The RQ fields of a job hash rq-serviceq writes (push.lua, claim.lua, end_task.lua): ServiceQJob.restore
# reads a hash of these (and sq_ fields) itself.
_PLAIN = frozenset({b"data", b"origin", b"status", b"worker_name", b"description", *_DATES})


# What a ServiceQWorker logs when its audit gives back tasks a plain `rq worker` took: a plain worker without
# `-S rq.serializers.JSONSerializer` reads jobs as pickle, so it cannot even read the placeholder's call and only
# RQ's own DeserializationError is printed there (no code of rq-serviceq runs in it); this says what to run.
PLAIN_WORKER_HINT = (
    "; a plain rq worker cannot run ServiceQ tasks: run `rq worker --worker-class rq_serviceq.ServiceQWorker {queue}`"
)


def perform_outside_serviceq_worker(task: Any = None) -> None:
    """What a plain ``rq worker -S rq.serializers.JSONSerializer`` would run for a ServiceQ job: a clear refusal."""
    raise RuntimeError(
        "this is a ServiceQ task: run its queue with `rq worker --worker-class rq_serviceq.ServiceQWorker NAME-pending`"
    )


class ServiceQJob(Job):
    """A Qtask as an RQ job (always JSON-serialized: no pickle is read from Redis)."""

    def __init__(self, id: str | None = None, connection: Any = None, serializer: Any = None) -> None:
        super().__init__(id, connection=connection, serializer=JSONSerializer)
        self.sq: dict[str, str] = {}
        self.unreadable = ""  # why the task's data cannot be read (see claim._job); such a task fails alone

    @classmethod
    def blank(cls, task_id: str, connection: Any) -> ServiceQJob:
        """A job to ``restore`` a claimed task into: a copy of one made per connection, as RQ's ``__init__``
        (its serializer check against a typing Protocol above all) was half of a claimed task's cost.
        ``restore`` sets again every attribute a copy could share (meta, webhooks, dependency ids)."""
        prototype = _PROTOTYPES.get(connection)
        if prototype is None:
            prototype = _PROTOTYPES[connection] = cls(connection=connection)
        validate_job_id(task_id)
        job = cls.__new__(cls)  # copy.copy's way (RQ's Job keeps its state in __dict__), a quarter of its cost
        job.__dict__.update(prototype.__dict__)
        job._id, job.sq, job.unreadable = task_id, {}, ""
        return job

    def restore(self, raw_data: dict[bytes, Any]) -> Any:
        """RQ's restore, with its dates read by ``datetime.fromisoformat`` (RQ's ``strptime`` was a tenth
        of a claim's cost) and RQ's ``meta`` answered from the ServiceQ fields where no meta is stored.

        A hash that holds only what rq-serviceq writes (``_PLAIN`` and its own ``sq_`` fields: every claimed
        task's) is read by ``_restore_plain``, which sets what RQ's restore sets for such a hash without
        asking for each of the forty fields RQ knows (its restore was most of a claimed task's job);
        tests/unit/test_job_restore.py holds the two to the same result.  Any other hash goes through RQ's."""
        sq: dict[str, str] = {}
        pieces: list[tuple[bytes, bytes]] = []  # the task's, put back into its data (task.stored)
        plain = True
        for key, val in raw_data.items():  # one pass: a claimed task's every field is read here
            if key[:3] == b"sq_":
                if key[3:7] == b"task":
                    pieces.append((key, val))
                else:
                    sq[key.decode()] = text(val)
            elif key not in _PLAIN:
                plain = False
        self.sq = sq
        restored = None
        if plain:
            self._restore_plain(raw_data, stored.in_order(pieces) if pieces else ())
        else:
            restored = self._restore_by_rq(raw_data)
        self.enqueued_at = self.enqueued_at or self.created_at
        if not self.meta and self.sq.get("sq_final"):
            self.meta = self._ended_meta()
        # RQ's webhooks are URLs read from the hash, requested when RQ ends the job (its maintenance fails one
        # stuck in the intermediate queue): rq-serviceq sets none, so none a Redis writer left is requested.
        self.webhooks = []
        return restored

    def _restore_by_rq(self, raw_data: dict[bytes, Any]) -> Any:
        dates = {field: raw_data.pop(field, None) for field in _DATES}
        restored = super().restore(raw_data)
        if pieces := stored.pieces_of(raw_data):
            self.data = stored.call_data(self.data, pieces)
        for field, raw in dates.items():
            if raw is not None:
                raw_data[field] = raw
                setattr(self, field.decode(), rq_date(raw))
        return restored

    def _restore_plain(self, raw: dict[bytes, Any], pieces: Sequence[bytes]) -> None:
        """What RQ's ``Job.restore`` (rq 2.12) sets for a hash of ``_PLAIN`` fields only; the attributes it
        sets only when their field is there (result, callbacks, webhooks, retry and repeat intervals,
        exc_info) keep the blank job's values, as they do in RQ's."""
        if b"data" not in raw:
            raise NoSuchJobError(f"Unexpected job format: {raw}")
        self.data = stored.call_data(raw[b"data"], pieces)
        get = raw.get
        self.created_at = (rq_date(v) if (v := get(b"created_at")) else None) or now()
        self.origin = v.decode() if (v := get(b"origin")) else ""
        self.worker_name = v.decode() if (v := get(b"worker_name")) else None
        self.description = v.decode() if (v := get(b"description")) else None
        self.enqueued_at = rq_date(v) if (v := get(b"enqueued_at")) else None
        self.started_at = rq_date(v) if (v := get(b"started_at")) else None
        self.ended_at = rq_date(v) if (v := get(b"ended_at")) else None
        self.last_heartbeat = rq_date(v) if (v := get(b"last_heartbeat")) else None
        self.group_id = None
        self.timeout = self.result_ttl = self.failure_ttl = None
        self._status = JobStatus(v.decode()) if (v := get(b"status")) else JobStatus.CREATED
        self._dependency_ids = []
        self.allow_dependency_failures = self.enqueue_at_front = self.ttl = None
        self.meta = {}
        self.number_of_retries = self.retries_left = self.repeats_left = None
        self.enqueue_at_front_on_retry = False

    def _ended_meta(self) -> dict[str, Any]:
        """The meta a failed task stores, for a passed one, which stores none (``lua/includes/end_task.lua``)."""
        return {
            "serviceq": self.origin.removesuffix("-pending"),
            "batch_id": self.batch_id,
            "remark": self.sq.get("sq_remark", ""),
            "total_retry_attempts": self.retries,
            "outcome": self.sq["sq_final"],
        }

    def get_meta(self, refresh: bool = True) -> dict[str, Any]:
        if refresh:
            self.refresh()  # type: ignore[no-untyped-call, unused-ignore]
        return self.meta

    def latest_result(self, timeout: int = 0) -> Result | None:
        """RQ's latest Result; for a passed task, which keeps no result stream, one built from its hash."""
        latest = super().latest_result(timeout=timeout)
        if latest is None and self.sq.get("sq_final") == "passed":
            remark = self.sq.get("sq_remark", "")
            ended = self.ended_at.timestamp() if self.ended_at else 0.0
            entry = f"{int(ended * 1000)}-0"  # an id as a kept entry has: RQ takes a Result without one for none
            latest = Result(self.id, Result.Type.SUCCESSFUL, self.connection, id=entry, created_at=self.ended_at,
                            return_value=remark, serializer=self.serializer)  # fmt: skip
        return latest

    def results(self) -> list[Result]:
        kept = super().results()
        latest = None if kept else self.latest_result()
        return [latest] if latest is not None else kept

    @property
    def func(self) -> Callable[..., Any] | None:
        """RQ's job function, resolved by the policy (RefusedPath when it refuses); a ServiceQ job's placeholder."""
        name = self.func_name
        if not name:
            return None
        return perform_outside_serviceq_worker if name == stored.PLACEHOLDER_FUNC else resolve(name)

    # RQ's callbacks, as RQ calls them (job, connection, ...), run by ``call_hook``: resolved by the policy when
    # called (a refused one is logged and never imported), and what one raises is logged, not raised into RQ's
    # registry cleanup, which would end the worker.  rq-serviceq sets none: its callbacks are settings.
    @property
    def success_callback(self) -> Callable[..., Any] | None:
        return self._rq_hook(self._success_callback_name, "success callback")

    @property
    def failure_callback(self) -> Callable[..., Any] | None:
        return self._rq_hook(self._failure_callback_name, "failure callback")

    @property
    def stopped_callback(self) -> Callable[..., Any] | None:
        return self._rq_hook(self._stopped_callback_name, "stopped callback")

    def _rq_hook(self, path: str | None, what: str) -> Callable[..., Any] | None:
        return partial(call_hook, path, what=f"task {self.id}'s RQ {what}") if path else None

    @property
    def task(self) -> Any:
        if self.unreadable:
            return None
        return self.args[0] if self.args else None

    @property
    def batch_id(self) -> str:
        return self.sq.get("sq_batch", "")

    @property
    def claim(self) -> str:
        return self.sq.get("sq_claim", "")

    @property
    def retries(self) -> int:
        return int(self.sq.get("sq_retries") or 0)

    def qtask(self, serviceq_id: str, remark: str | None = None, last: float | None = None) -> dict[str, Any]:
        """The seed's reported Qtask form."""
        created = self.created_at.timestamp() if self.created_at else None
        last_raw = self.sq.get("sq_last")
        return {
            "task_id": self.id,
            "batch_id": self.batch_id,
            "serviceq_id": serviceq_id,
            "task": self.task,
            "total_retry_attempts": self.retries,
            "last_retry_timestamp": last if last is not None else (float(last_raw) if last_raw else None),
            "created_at": created,
            "remark": remark if remark is not None else self.sq.get("sq_remark", ""),
        }


def description_of(job: Job, label: str, limit: int | None = DESCRIPTION_LIMIT) -> str:
    """What rq-dashboard shows of a task that stores no description (a push writes none: it would cost
    some 130 bytes a task): ``label(<its task, shortened to limit characters unless None>)``, its task
    function named as it is when the dashboard looks, so a task pushed before its queue had one is named
    by it once it is set."""
    if job.description:
        return job.description
    try:
        task = json.dumps(job.args[0], ensure_ascii=False, separators=(",", ":")) if job.args else ""
    except Exception:
        task = "(unreadable)"
    return f"{label}({task if limit is None or len(task) <= limit else task[: limit - 3] + '...'})"
