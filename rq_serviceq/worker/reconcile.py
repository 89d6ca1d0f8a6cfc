"""RQ's own tools → ledger: tasks that leave the service queue behind rq-serviceq's back.

`rq empty NAME-pending`, ``job.delete()`` and ``job.cancel()`` remove a task's
job without telling its batch, and a plain ``rq worker NAME-pending`` runs the
placeholder function and files the job under RQ's failed registry.  Left
alone, the batch would wait for those tasks forever.  Every batch keeps the
set of its open tasks (counted in, not yet ended), so an idle worker can audit
it: a task that is neither queued, running under a lease nor waiting to retry
is counted failed with a remark naming what happened, or, when a plain worker
took it, put back on the queue.  A task that says queued but whose id left
the queue's list (``Queue.remove(job)``, or a plain worker that died holding it
in RQ's intermediate queue) is looked for only once the list is empty, which is
when a worker is idle: finding one id in a long list costs O(its length).  The
audit runs a bounded slice per Lua call and one pass at a time per service queue, paced by the
batch's size (``lua/reconcile.lua``): every pass reads every open task.
"""

from __future__ import annotations

from dataclasses import dataclass

from redis import Redis

from rq_serviceq.models import Settings
from rq_serviceq.store import keys as k
from rq_serviceq.store import scripts

SLICE = 250  # open tasks looked at per RECONCILE call (about 12 ms of Redis time when every one is failed)


@dataclass(frozen=True)
class Audit:
    failed: int = 0  # tasks counted failed because RQ's tools removed them
    given_back: int = 0  # tasks a plain `rq worker` had taken, queued again
    ended: tuple[str, ...] = ()  # batches this audit ended


def reconcile(conn: Redis, keys: k.Keys, worker_name: str, settings: Settings, batch_id: str, lease: float) -> Audit:
    """Audit one batch's open tasks in slices; returns what was found (nothing when another
    worker's pass is under way or one ran lately: 2 s, or N / 2,500 s after a pass over N open tasks).
    A batch this ends is the caller's to finalize, its end work leased for ``lease``."""
    ending = scripts.Ending.of(worker_name, settings, lease)
    cursor, failed, back, ended = "0", 0, 0, []
    while True:
        audit = scripts.reconcile(conn, keys, ending, batch_id, cursor, SLICE)
        failed, back = failed + audit.failed, back + audit.given_back
        if audit.ended:
            ended.append(audit.ended)
        cursor = audit.cursor
        if cursor in ("0", ""):
            return Audit(failed, back, tuple(ended))
