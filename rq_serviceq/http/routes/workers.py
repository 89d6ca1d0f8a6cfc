"""Who works a service queue (tag ``read``): its workers as RQ registers them, and its supervisors' shares.

Workers are read from RQ's own registry (``Worker.all`` of the pending queue:
name, hostname, pid, state, current job, counters, heartbeat), so this shows
what ``rq info`` and rq-dashboard show.  Supervisors record no more than a
heartbeat in one sorted set and each works out its share of worker_count
from it; the same sum is done here (``supervisor.shares``).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

from fastapi import APIRouter, Request
from pydantic import BaseModel
from rq import Queue, Worker
from rq.serializers import JSONSerializer
from rq.worker import BaseWorker

from rq_serviceq.batch.report import redis_now
from rq_serviceq.http.routes.common import ERRORS, Name, checked, service, with_queue
from rq_serviceq.serviceq import ServiceQ
from rq_serviceq.worker.supervisor import shares

router = APIRouter(responses=ERRORS)


class WorkerInfo(BaseModel):
    """One worker of the service queue, from RQ's worker hash."""

    name: str
    machine: str | None  # RQ's hostname
    process: int | None  # pid
    state: str  # RQ's: busy, idle, suspended, started
    current_task: str | None  # RQ's current job: the id of the task (the first of its group) running now
    passed: int
    failed: int
    started: float | None  # epoch seconds
    last_seen: float | None  # RQ's last heartbeat, epoch seconds
    seconds_since_seen: float | None
    supervisor: str | None  # the supervisor that started it, when that can be told (see WorkerList)


class SupervisorInfo(BaseModel):
    """A live ``rq-serviceq worker NAME`` process and the share of worker_count it keeps alive."""

    id: str  # host-pid-random
    machine: str
    process: int | None
    share: int
    expires_in: float  # seconds until its heartbeat lapses (it renews it every interval)


class WorkerList(BaseModel):
    """``supervisor`` of a worker is set when the worker has a supervisor's naming (``<queue>-<12 hex>``) and
    exactly one supervisor of the queue runs on its machine; None otherwise (``rq worker`` started by hand,
    or several supervisors on one machine)."""

    name: str
    status: str
    worker_count: int
    workers: list[WorkerInfo]
    supervisors: list[SupervisorInfo]


@router.get("/serviceqs/{name}/workers", tags=["read"])
async def list_workers(name: Name, request: Request) -> WorkerList:
    """Who works the service queue: each worker (machine, pid, state, current task, tasks done, last seen)
    and each supervisor's share of worker_count."""
    name = checked(name)
    svc = service(request)
    found: WorkerList = await svc.run(with_queue, svc, name, who_works)
    return found


def who_works(sq: ServiceQ) -> WorkerList:
    settings = sq.settings
    now = redis_now(sq.connection)
    held = shares(sq.connection, sq.keys, settings.worker_count)
    supervisors = [_supervisor(sid, expiry, share, now) for sid, expiry, share in held]
    queue = Queue(sq.queue_name, connection=sq.connection, serializer=JSONSerializer)
    workers = [_worker(w, now, sq.name, supervisors) for w in Worker.all(queue=queue)]
    workers.sort(key=lambda w: (w.machine or "", w.name))
    return WorkerList(
        name=sq.name,
        status=sq.get_status(),
        worker_count=settings.worker_count,
        workers=workers,
        supervisors=supervisors,
    )


def _supervisor(sid: str, expiry: float, share: int, now: float) -> SupervisorInfo:
    """A supervisor's id is ``<hostname>-<pid>-<6 hex>`` (hostnames may hold dashes, so read from the right)."""
    parts = sid.rsplit("-", 2)
    machine, pid = (parts[0], int(parts[1])) if len(parts) == 3 and parts[1].isdigit() else (sid, None)
    return SupervisorInfo(id=sid, machine=machine, process=pid, share=share, expires_in=round(expiry - now, 3))


def _worker(worker: BaseWorker, now: float, queue: str, supervisors: list[SupervisorInfo]) -> WorkerInfo:
    seen = _seconds(worker.last_heartbeat)
    ours = re.fullmatch(re.escape(queue) + r"-[0-9a-f]{12}", worker.name) is not None
    on_machine = [s.id for s in supervisors if s.machine == worker.hostname]
    return WorkerInfo(
        name=worker.name,
        machine=worker.hostname,
        process=worker.pid,
        state=str(worker.get_state()),
        current_task=worker.get_current_job_id(),
        passed=worker.successful_job_count,
        failed=worker.failed_job_count,
        started=_seconds(worker.birth_date),
        last_seen=seen,
        seconds_since_seen=None if seen is None else round(max(0.0, now - seen), 3),
        supervisor=on_machine[0] if ours and len(on_machine) == 1 else None,
    )


def _seconds(when: datetime | None) -> float | None:
    """Epoch seconds of an RQ date (RQ writes UTC; a naive one is read as UTC, not as this machine's zone)."""
    if when is None:
        return None
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()
