"""Who works a service queue: its workers as RQ registers them, and its supervisors' shares of worker_count.

Workers are read from RQ's own registry (``Worker.all`` of the pending queue:
name, hostname, pid, state, current job, counters, heartbeat), so this says
what ``rq info`` and rq-dashboard say.  Supervisors record no more than a
heartbeat in one sorted set, and each works out its share of worker_count
from it; the same sum is done here (``supervisor.shares``).  A read: it
writes nothing and evicts nobody.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

from redis import Redis
from rq import Queue, Worker
from rq.serializers import JSONSerializer
from rq.worker import BaseWorker

from rq_serviceq.batch.report import redis_now
from rq_serviceq.models import Roster, SupervisorInfo, WorkerInfo
from rq_serviceq.store import keys as k
from rq_serviceq.worker.supervisor import shares


def roster(conn: Redis, keys: k.Keys, worker_count: int, status: str) -> Roster:
    now = redis_now(conn)
    supervisors = [_supervisor(sid, expiry, share, now) for sid, expiry, share in shares(conn, keys, worker_count, now)]
    queue = Queue(keys.queue_name, connection=conn, serializer=JSONSerializer)
    workers = [_worker(w, now, keys.name, supervisors) for w in Worker.all(queue=queue)]
    workers.sort(key=lambda w: (w.machine or "", w.name))
    return Roster(name=keys.name, status=status, worker_count=worker_count, workers=workers, supervisors=supervisors)


def _supervisor(sid: str, expiry: float, share: int, now: float) -> SupervisorInfo:
    """A supervisor's id is ``<hostname>-<pid>-<6 hex>`` (hostnames may hold dashes, so read from the right)."""
    parts = sid.rsplit("-", 2)
    machine, pid = (parts[0], int(parts[1])) if len(parts) == 3 and parts[1].isdigit() else (sid, None)
    return SupervisorInfo(id=sid, machine=machine, process=pid, share=share, expires_in=round(expiry - now, 3))


def _worker(worker: BaseWorker, now: float, queue: str, supervisors: list[SupervisorInfo]) -> WorkerInfo:
    seen = _seconds(worker.last_heartbeat)
    ours = re.fullmatch(re.escape(queue) + r"-[0-9a-f]{12}", worker.name) is not None  # a supervisor's naming
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
