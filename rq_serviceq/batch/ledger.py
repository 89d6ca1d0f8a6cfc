"""worker → ledger → passed/failed: recording outcomes and ending batches.

All accounting happens inside Lua scripts (``lua/includes/count_end.lua``),
so "how many are left in this batch" is never inferred from queue and
registry lengths that RQ moves between non-atomically.  The step whose
outcome takes the batch's pending count to zero gets the batch id back and
does the end work (``finalize``); if it dies doing so, the finalize lease
runs out and another worker takes it over from its next claim.
"""

from __future__ import annotations

import logging

from redis import Redis

from rq_serviceq.batch import report, totals
from rq_serviceq.job import ServiceQJob
from rq_serviceq.models import Settings
from rq_serviceq.store import keys as k
from rq_serviceq.store import scripts
from rq_serviceq.store.durable import Durable
from rq_serviceq.store.outage import Retrying, once
from rq_serviceq.store.replies import text
from rq_serviceq.task.imports import call_hook
from rq_serviceq.task.remarks import Outcome
from rq_serviceq.worker import leases

END_CALLBACK_ATTEMPTS = 3
BEGIN_PREFIX = "begin:"  # finalize-zset members for batch-begin work (see lua/push.lua)

logger = logging.getLogger("rq_serviceq")


def finalize_lease(settings: Settings) -> float:
    """The lease of batch-end work that no lease keeper renews (``stop()`` ending the batch itself)."""
    return leases.unrenewed(settings.callback_timeout, END_CALLBACK_ATTEMPTS)


# What SETTLE answers, as the worker reads it: defined with the script's wrapper, read here, since only the
# domain layer imports store/scripts.py (tests/unit/test_structure.py).
Settled = scripts.Settled
SettleResult = scripts.SettleResult


def settle(
    conn: Redis,
    keys: k.Keys,
    worker_name: str,
    settings: Settings,
    outcomes: list[tuple[ServiceQJob, Outcome]],
    batch_work_lease: float | None = None,
    keep_journal: int = 0,
) -> SettleResult:
    """Record attempts' outcomes in one round trip.

    A batch this ends is leased to the caller for ``batch_work_lease`` seconds: a worker,
    which renews the lease while it works, passes a short one; others get one long enough
    for the callback (``finalize_lease``).  ``keep_journal``: see ``scripts.settle``.
    """
    if not outcomes:
        return SettleResult(0.0, [], [])
    lease = finalize_lease(settings) if batch_work_lease is None else batch_work_lease
    durable = Durable.of(settings)
    settled = scripts.settle(
        conn,
        keys,
        scripts.Ending.of(worker_name, settings, lease),
        [(job.id, job.claim, outcome.sent, outcome.remark) for job, outcome in outcomes],
        keep_journal,
        durable,
    )
    if durable is not None and settled.replicas is not None and settled.replicas < durable.replicas:
        # Recorded on the primary all the same: a failover now could lose it, and the tasks would run again.
        logger.warning("settle of %d outcomes of %s: %d of %d replicas confirmed it within %g s", len(outcomes),
                       keys.name, settled.replicas, durable.replicas, durable.timeout)  # fmt: skip
    return settled


def begin(conn: Redis, keys: k.Keys, settings: Settings, batch_id: str, retrying: Retrying = once) -> None:
    """Run the batch-begin callback and record it; a worker runs it instead if the pusher died first.

    The record is retried in place (``retrying``) so that Redis going away (or full) after the callback
    ran does not run it again."""
    summary = report.summary(conn, keys, settings, batch_id).model_dump()
    error = call_hook(
        settings.batch_begin_callback, summary, what="batch-begin callback", timeout=settings.callback_timeout
    )

    def record() -> None:
        if settings.batch_begin_callback:
            conn.hset(keys.batch(batch_id), k.Ledger.BEGIN_CALLBACK, "ok" if error is None else f"failed: {error}")
        begun = scripts.finish(conn, keys, batch_id, "BEGUN").done
        if begun and error is not None:  # counted by the one caller that did the begin work
            totals.callback_failed(conn, keys, "begin")

    retrying("recording the batch begin", record)


def finalize(conn: Redis, keys: k.Keys, settings: Settings, batch_id: str, retrying: Retrying = once) -> bool:
    """Build the report, run the batch-end callback, keep the report for ``report_ttl``, mark the batch done.

    Returns False when the batch had been finalized already (a worker that
    took the work over after a lease ran out finds nothing left to do).  What
    follows the callback is retried in place (``retrying``), so that Redis going
    away (or full) after the callback ran does not run it again.
    """
    done_at, final_status = conn.hmget(keys.batch(batch_id), k.Ledger.FINALIZED, k.Ledger.FINAL_STATUS)
    if done_at:
        conn.zrem(keys.finalize, batch_id)
        return False
    status = text(final_status) if final_status else "FINISHED"
    batch_report = report.build(conn, keys, settings, batch_id, status=status)
    error = call_hook(
        settings.batch_end_callback,
        batch_report.model_dump(),  # the seed's map: what a callback gets
        what="batch-end callback",
        attempts=END_CALLBACK_ATTEMPTS,
        timeout=settings.callback_timeout,
    )
    return retrying("recording the batch end", lambda: _record_end(conn, keys, settings, batch_id, status, error))


def _record_end(conn: Redis, keys: k.Keys, settings: Settings, batch_id: str, status: str, error: str | None) -> bool:
    if settings.batch_end_callback:  # recorded where get_batch_report and the dashboard's operator look
        conn.hset(keys.batch(batch_id), k.Ledger.END_CALLBACK, "ok" if error is None else f"failed: {error}")
    done = scripts.finish(conn, keys, batch_id, status).done
    if done:  # counted once, by the caller whose FINISH ended the batch
        totals.batch_ended(conn, keys, batch_id, status)
        if error is not None and settings.batch_end_callback:
            totals.callback_failed(conn, keys, "end")
    # Last: a million EXPIREs take seconds, and nobody need wait for them.  Should this worker die
    # first, the report outlives report_ttl (a leak, never a loss).
    report.keep_for(conn, keys, batch_id, settings.report_ttl)
    report.forget_expired_batches(conn, keys)  # else the history outgrows the reports it lists
    return done


def batch_work(conn: Redis, keys: k.Keys, settings: Settings, member: str, retrying: Retrying = once) -> None:
    """Do the batch work a claim handed over: a batch's begin callback, or its end."""
    if member.startswith(BEGIN_PREFIX):  # the pusher died before running the batch-begin callback
        begin(conn, keys, settings, member.removeprefix(BEGIN_PREFIX), retrying)
    else:
        finalize(conn, keys, settings, member, retrying)
