"""claim → run → record: the one path a claimed group of tasks takes, in a worker and in ``work_once``.

After a claim, the order of the steps is what keeps the accounting exact:
the claimed tasks' leases are renewed from the moment they are claimed; the
journal's writes land before the settle that clears them (``Journal.sync``);
tasks that did not start go back to the head of the queue (RELEASE) and the
outcomes of those that did are recorded in one SETTLE; each settled task is
reported; and the batches either step ended come back to the caller, whose
end work runs under a renewed lease too.  ``ServiceQWorker`` and
``ServiceQ.work_once`` once each had a copy of these steps, and the copies
had drifted (a long lease instead of a renewed one, no journal); ``process``
is now the only one.  ``GroupSizer`` decides how many tasks a worker claims.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from redis import Redis

from rq_serviceq.batch import ledger
from rq_serviceq.job import ServiceQJob
from rq_serviceq.models import Settings
from rq_serviceq.store import keys as k
from rq_serviceq.store.outage import Retrying, once
from rq_serviceq.task.remarks import Outcome
from rq_serviceq.worker.claim import Claim, claim, release
from rq_serviceq.worker.journal import Journal
from rq_serviceq.worker.keeper import LeaseKeeper
from rq_serviceq.worker.run import Gate, Runner, Running, always


@dataclass(frozen=True)
class Claimant:
    """Who claims and processes groups: a worker, or a ``work_once`` caller.  Its keeper renews its leases."""

    conn: Redis
    keys: k.Keys
    name: str  # the worker name its claims, settles and logs carry
    keeper: LeaseKeeper
    retrying: Retrying = once

    def claim(self, settings: Settings, count: int, retrying: Retrying | None = None) -> Claim:
        """Claim up to ``count`` tasks (and maybe batch work) and keep their leases from now on; ``retrying``
        (the claimant's own by default) is how Redis is reached."""
        lease = self.keeper.lease
        reach = retrying or self.retrying
        got = reach("claim", lambda: claim(self.conn, self.keys, self.name, settings, count, lease))
        self.keeper.hold([job.id for job in got.jobs])
        return got

    def batch_work(self, settings: Settings, member: str) -> None:
        """A batch's end, or a begin callback whose pusher died, with its lease kept while it runs."""
        with self.keeper.doing(member):
            self.retrying(
                "batch work", lambda: ledger.batch_work(self.conn, self.keys, settings, member, self.retrying)
            )


@dataclass(slots=True)  # not frozen: one per task, and a frozen dataclass costs 4x as much to build
class Done:
    """A task that ran, its outcome, and what SETTLE made of it (at ``now``, Redis' clock)."""

    job: ServiceQJob
    outcome: Outcome
    settled: ledger.Settled
    now: float

    def qtask(self, serviceq_id: str) -> dict[str, Any]:
        """The seed's reported Qtask, as the push-update callback and ``work_once`` give it."""
        qtask = self.job.qtask(serviceq_id, remark=self.outcome.remark, last=self.now)
        qtask["total_retry_attempts"] = self.settled.retries
        return qtask


@dataclass(frozen=True)
class Processed:
    done: list[Done]
    ended: list[str] = field(default_factory=list)  # batches whose end work is the caller's (``batch_work``)
    seconds: float = 0.0  # how long the group ran
    unavailable: str | None = None  # why the task function cannot be had here (the group was given back)
    pause_gen: int = 0  # the service queue's pause generation as the settle left it
    breaker: str = ""  # why the breaker paused the service queue as this group settled ('' when it did not)


def process(
    claimant: Claimant,
    settings: Settings,
    group: list[ServiceQJob],
    runner: Runner,
    gate: Gate,
    report: Callable[[Done], None] | None = None,
    running: Running | None = None,
    refill: Callable[[Running], int] | None = None,
) -> Processed:
    """Run a claimed group and record it: give back what did not start, settle what did, ``report`` each
    settled task (in order), and return the batches this ended for the caller to finalize.

    ``running``: the group, started already (queued behind the one before).  ``refill`` is called once the
    group is started and may queue the next group behind it, so that slots refill as they free; it returns
    how many journal entries the settle must keep for that group (0: none was started)."""
    conn, keys, name, lease = claimant.conn, claimant.keys, claimant.name, claimant.keeper.lease
    started = running or runner.start(settings, group, gate)
    keep = refill(started) if refill is not None else 0
    result = started.wait()
    if gate.journal is not None:
        gate.journal.sync()  # the journal's writes (another connection) land before the settle that clears them
    unstarted = [(job.id, job.claim) for job in result.unstarted]
    ended = claimant.retrying("release", lambda: release(conn, keys, name, settings, unstarted, lease))
    settled = claimant.retrying("settle", lambda: ledger.settle(conn, keys, name, settings, result.done, lease, keep))
    if gate.journal is not None:
        gate.journal.settled(keep)  # a spool is cut as SETTLE cut the list: after it, never before
    claimant.keeper.drop([job.id for job in group])
    rows = zip(result.done, settled.tasks, strict=True)
    done = [Done(job, outcome, row, settled.now) for (job, outcome), row in rows]
    if report is not None:
        for task in done:
            report(task)
    return Processed(
        done, ended + settled.ended_batches, result.seconds, result.unavailable, settled.pause_gen, settled.breaker
    )


class _InlineRunner(Runner):
    gives_back = False  # nobody else runs the task for a work_once caller: an import error is its outcome


def work_once(conn: Redis, keys: k.Keys, worker_name: str, settings: Settings) -> Done | None:
    """Claim one task, run it in this process and record it, as a worker would, then do any batch work due.

    Its lease is a worker's, renewed while it runs; a SystemExit raised in it is the caller's own.
    """
    claimant = Claimant(conn, keys, worker_name, LeaseKeeper(conn, keys))
    journal = Journal(conn, key=keys.journal(worker_name))
    runner = _InlineRunner()
    try:
        got = claimant.claim(settings, 1)
        if got.finalize_batch:
            claimant.batch_work(got.settings, got.finalize_batch)
        if not got.jobs:
            return None
        gate = Gate(journal=journal, exiting=always)
        processed = process(claimant, got.settings, got.jobs, runner, gate)
        for batch_id in processed.ended:
            claimant.batch_work(got.settings, batch_id)
        return processed.done[0] if processed.done else None
    finally:
        runner.close()  # an async task function's loop
        claimant.keeper.close()
        journal.close()


class GroupSizer:
    """How many tasks one claim takes: about ``seconds`` of work, learned from how long tasks take here.

    Many no-op tasks then share one claim and one settle (a fraction of a round trip each), while a
    slow task is claimed alone and its outcome recorded as soon as it is known.
    """

    def __init__(self, seconds: float = 0.05, most: int = 256) -> None:
        self.seconds = seconds
        self.most = most  # the most tasks one claim takes (ServiceQWorker.max_group, measured there)
        self.task_seconds = 0.0  # moving average of one task's run time, per concurrency slot

    def size(self, settings: Settings, concurrency: int) -> int:
        """One task at a time when the seed's resting period applies; else about ``seconds`` of work."""
        if settings.resting_period > 0:
            return 1
        per_slot = self.seconds / max(self.task_seconds, 1e-4)
        size = max(1, min(self.most, int(per_slot * concurrency)))
        # Whole rounds of the slots: 33 tasks on 8 slots take five task lengths, 32 four.
        return size - size % concurrency if size > concurrency else size

    def deadline(self) -> float:
        """The ``perf_counter()`` time past which a group starting now gives its unstarted tasks back:
        four times its intended length, so that a group of tasks slower than learned does not hold
        back its outcomes (0.2 s at least, so that it does not give back tasks merely for jitter)."""
        return time.perf_counter() + max(4 * self.seconds, 0.2)

    def learn(self, seconds: float, tasks: int, concurrency: int) -> None:
        """A group of ``tasks`` ran in ``seconds`` on ``concurrency`` slots."""
        if tasks:
            per_task = seconds / tasks * concurrency
            self.task_seconds = per_task if not self.task_seconds else 0.7 * self.task_seconds + 0.3 * per_task
