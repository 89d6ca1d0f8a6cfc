"""worker → ledger → passed/failed: recording outcomes and ending batches.

All accounting happens inside the SETTLE script, so "how many are left in
this batch" is never inferred from queue and registry lengths that RQ moves
between non-atomically.  The worker whose outcome takes the batch's pending
count to zero gets the batch id back and does the end work (``finalize``);
if it dies doing so, the finalize lease runs out and another worker takes it
over from its next claim.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from redis import Redis
from rq.utils import utcformat

from . import keys as k
from . import report, scripts
from .callbacks import call_hook
from .claim import LEASE_SECONDS
from .job import ServiceQJob
from .models import Settings
from .remarks import Outcome
from .state import text


@dataclass(frozen=True)
class Settled:
    task_id: str
    result: str  # passed | failed | retry | stale
    due: float | None
    retries: int


@dataclass(frozen=True)
class SettleResult:
    now: float
    tasks: list[Settled]
    ended_batches: list[str]


def settle(
    conn: Redis, keys: k.Keys, worker_name: str, settings: Settings, outcomes: list[tuple[ServiceQJob, Outcome]]
) -> SettleResult:
    """Record attempts' outcomes in one round trip."""
    args: list[str | float | int] = [
        k.JOB_PREFIX,
        keys.batch_prefix,
        settings.report_ttl,
        utcformat(datetime.now(UTC)),
        LEASE_SECONDS,
    ]
    for job, outcome in outcomes:
        args += [job.id, job.claim, outcome.verdict.value, outcome.remark]
    now, rows, ended = scripts.run(
        conn,
        scripts.SETTLE,
        keys=[
            keys.state,
            keys.retry,
            keys.leases,
            keys.started,
            keys.finished,
            keys.failed,
            keys.bell,
            k.worker_key(worker_name),
            keys.finalize,
        ],
        args=args,
    )
    return SettleResult(float(now), [_settled(row) for row in rows], [text(b) for b in ended])


def _settled(row: list[bytes | int]) -> Settled:
    task_id, result, due, retries = (text(x) for x in row)
    return Settled(task_id, result, float(due) if due else None, int(retries) if retries else 0)


def finalize(conn: Redis, keys: k.Keys, settings: Settings, batch_id: str, final_status: str = "FINISHED") -> bool:
    """Build the report, keep it for ``report_ttl``, run the batch-end callback, mark the batch done.

    Returns False when the batch had been finalized already (a worker that
    took the work over after a lease ran out finds nothing left to do).
    """
    if conn.hget(keys.batch(batch_id), "finalized"):
        conn.zrem(keys.finalize, batch_id)
        return False
    batch_report = report.build(conn, keys, settings, batch_id, status=final_status)
    call_hook(settings.batch_end_callback, batch_report, what="batch-end callback")
    report.keep_for(conn, keys, batch_id, settings.report_ttl)  # after the callback: it can be long
    done = scripts.run(
        conn,
        scripts.FINISH,
        keys=[keys.state, keys.finalize, keys.batch(batch_id)],
        args=[batch_id, final_status],
    )
    return bool(done)
