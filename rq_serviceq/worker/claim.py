"""pending → worker: claiming tasks.

One CLAIM script call hands a worker its next tasks together with a fresh
snapshot of the service queue's settings and the time of the next thing worth
waking up for (a retry falling due, a lease running out), so an idle worker
sleeps exactly until then and a waiting retry costs nothing.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field

from redis import Redis
from rq.exceptions import StopRequested

from rq_serviceq.job import ServiceQJob
from rq_serviceq.models import Settings, Status
from rq_serviceq.store import keys as k
from rq_serviceq.store import scripts
from rq_serviceq.store.replies import counter, decode_hash
from rq_serviceq.store.state import ServiceQDeleted, settings_from_hash


@dataclass
class Claim:
    now: float
    status: str
    active_batch: str
    wake_at: float | None
    finalize_batch: str
    settings: Settings
    pause_gen: int = 0
    jobs: list[ServiceQJob] = field(default_factory=list)
    in_flight: int = 0  # tasks under a lease and batch work not yet done, anywhere: a burst worker waits for them

    def seconds_to_wake(self) -> float | None:
        return None if self.wake_at is None else max(0.0, self.wake_at - self.now)


def claim(conn: Redis, keys: k.Keys, worker_name: str, settings: Settings, count: int, lease: float) -> Claim:
    """Claim up to ``count`` tasks under ``lease`` (batch work too); ``settings`` are the caller's latest
    (its previous claim's): the tasks this claim fails or retries follow them."""
    ending = scripts.Ending.of(worker_name, settings, lease)
    got = scripts.claim(conn, keys, ending, lease, count, uuid.uuid4().hex)
    if got.status == Status.DELETED:
        raise ServiceQDeleted(f"service queue {keys.name!r} was deleted")
    fields = decode_hash(got.state)
    return Claim(
        now=got.now,
        status=got.status,
        active_batch=got.active_batch,
        wake_at=got.wake_at,
        finalize_batch=got.finalize,
        settings=settings_from_hash(fields),
        pause_gen=counter(fields.get("pause_gen")),
        jobs=[_job(conn, task_id, token, flat) for task_id, token, flat in got.tasks],
        in_flight=got.in_flight,
    )


def _job(conn: Redis, task_id: str, token: str, flat: list[bytes]) -> ServiceQJob:
    """The claimed task as a job, its data decoded now: one that cannot be read is marked so and fails
    alone (``NO_RETRY``), instead of breaking the group it was claimed with."""
    job = ServiceQJob.blank(task_id, conn)
    try:
        job.restore(dict(zip(flat[::2], flat[1::2], strict=True)))
        job.args  # noqa: B018 -- RQ decodes lazily; decode here, where a failure concerns this task only
    except StopRequested:  # RQ's warm shutdown, raised by its signal handler: not this task's fault
        raise
    except Exception as exc:
        cause = exc.__cause__ or exc  # RQ's DeserializationError has no message of its own
        job.unreadable = f"{type(cause).__name__}: {cause}"
        job.sq["sq_claim"] = token  # so that its failure settles even if the hash's own fields are garbage
    return job


def release(
    conn: Redis, keys: k.Keys, worker_name: str, settings: Settings, claims: list[tuple[str, str]], lease: float
) -> list[str]:
    """Put claimed but unstarted tasks, (task id, claim token) each, back at the head of the queue;
    returns batches this ended (their end work leased to the caller for ``lease``)."""
    if not claims:
        return []
    return scripts.release(conn, keys, scripts.Ending.of(worker_name, settings, lease), claims).ended_batches


def extend_leases(conn: Redis, keys: k.Keys, task_ids: list[str], batch_work: list[str], lease: float) -> None:
    """Renew the leases of running tasks and of batch work (finalize-zset members) this worker holds."""
    if task_ids or batch_work:
        scripts.extend_leases(conn, keys, lease, task_ids, batch_work)


def leave(conn: Redis, keys: k.Keys, worker_name: str) -> bool:
    """Take a burst worker with nothing to do out of the pending queue's workers (LEAVE); False: work
    appeared since its claim, and it stays registered."""
    return scripts.leave(conn, keys, worker_name).left


def reclaim(conn: Redis, keys: k.Keys, worker_name: str, journal: Sequence[bytes] = (), journal_ttl: int = 0) -> int:
    """Make what a worker known to be dead held claimable now (RECLAIM); returns how many tasks.
    ``journal``: its spool's entries (``spool.carry``), in its journal before any of its tasks is due."""
    return scripts.reclaim(conn, keys, worker_name, journal, journal_ttl).held
