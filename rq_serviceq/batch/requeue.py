"""failed → pending again: ``requeue_failed`` pushes a batch's failed tasks as new tasks.

Each old task is claimed (HSETNX of ``sq_requeued_as``) before it is pushed, so that of two callers
racing only one pushes it, and its id is recorded there once pushed.  RQ's own ``rq requeue`` (and
rq-dashboard's Requeue) take the other road: they put the old job back on the queue, and the claim
script adopts it as a new task of the active batch (``adopt_requeued`` in ``store/lua/claim.lua``),
honouring the same field, so a task is requeued once whichever road it takes.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from typing import Any

from redis import Redis

from rq_serviceq.batch import report
from rq_serviceq.store import keys as k
from rq_serviceq.task import stored

REQUEUED_AS = "sq_requeued_as"  # job hash field: the task's id when pushed again (a claim marker until then)

logger = logging.getLogger("rq_serviceq")


def requeue_failed(conn: Redis, keys: k.Keys, batch_id: str, push: Callable[[list[Any]], list[str]]) -> int:
    """Push the failed tasks of ``batch_id`` again through ``push`` (the facade's ``push_many``); how many."""
    count = 0
    for ids in report.iter_id_pages(conn, keys, batch_id, "failed"):
        count += _requeue(conn, keys, tasks_to_requeue(conn, ids), push)
    return count


def _requeue(conn: Redis, keys: k.Keys, tasks: list[tuple[str, Any]], push: Callable[[list[Any]], list[str]]) -> int:
    """Claim each old task before pushing it; a caller that dies between the claim and the push leaves its
    tasks claimed and not requeued: the price of never requeueing one twice."""
    won = claim(conn, tasks, marker=f"requeueing:{uuid.uuid4().hex}")
    if not won:
        return 0
    try:
        new_ids = push([task for _, task in won])
    except Exception:
        release(conn, [old_id for old_id, _ in won])
        raise
    with conn.pipeline(transaction=True) as pipe:
        for (old_id, _), new_id in zip(won, new_ids, strict=True):
            pipe.hset(k.job_key(old_id), REQUEUED_AS, new_id)
            pipe.zrem(keys.failed, old_id)
        pipe.execute()
    return len(won)


def tasks_to_requeue(conn: Redis, ids: list[str]) -> list[tuple[str, Any]]:
    """(task id, task) of the failed tasks among ``ids`` that were not requeued already.

    A task whose data cannot be read is left out, with a log line: requeueing the rest
    is worth more than stopping at one.
    """
    with conn.pipeline(transaction=False) as pipe:
        for task_id in ids:
            pipe.hmget(k.job_key(task_id), ["sq_final", REQUEUED_AS, *stored.READ])
        rows = pipe.execute()
    found = []
    for task_id, (final, requeued, *task) in zip(ids, rows, strict=True):
        if task[0] is None or final != b"failed" or requeued:  # task[0]: its data, gone with a deleted hash
            continue
        try:
            found.append((task_id, stored.task_of(task)))
        except report.UNREADABLE as exc:
            logger.warning("not requeueing task %s: its data cannot be read (%s)", task_id, report.why(exc))
    return found


def claim(conn: Redis, tasks: list[tuple[str, Any]], marker: str) -> list[tuple[str, Any]]:
    """The tasks this caller won: HSETNX sets the requeue field only where no one set it first."""
    with conn.pipeline(transaction=False) as pipe:
        for task_id, _ in tasks:
            pipe.hsetnx(k.job_key(task_id), REQUEUED_AS, marker)
        won = pipe.execute()
    return [task for task, set_here in zip(tasks, won, strict=True) if set_here]


def release(conn: Redis, task_ids: list[str]) -> None:
    """Give back claims whose push failed (no one else writes the field once it is set)."""
    with conn.pipeline(transaction=False) as pipe:
        for task_id in task_ids:
            pipe.hdel(k.job_key(task_id), REQUEUED_AS)
        pipe.execute()
