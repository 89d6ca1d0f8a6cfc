"""How long a claim holds what it took: the one lease policy.

Work a process takes (a claimed task, a batch's end, a batch's begin callback)
is *leased*: it stays that process's until the lease runs out, then the next
claim hands it to another worker (``lua/claim.lua``).  A lease trades two
things: short, and the work of a process that died is taken over soon; long,
and a live process that is merely slow keeps its work.  Both are had with a
short lease that a live process keeps renewing (``keeper.LeaseKeeper``), so
every process that can renew holds its work under ``TASK_LEASE``.  Only work
that nobody renews while it runs gets a lease long enough for the whole of it
(``unrenewed``).  Pure arithmetic: no Redis here.
"""

from __future__ import annotations

TASK_LEASE = 15.0
"""Seconds a claimed task or batch work stays its process's without a sign of life.

Long enough to ride out a Redis blink or a GC pause between two renewals
(``RENEWALS_PER_LEASE`` of them per lease); short enough that a dead worker's
tasks run again within seconds (``rq-serviceq worker`` supervisors reclaim
them at once: ``lua/reclaim.lua``)."""

RENEWALS_PER_LEASE = 3
"""A renewal every third of a lease: two in a row can fail before the lease runs out."""


def renew_every(lease: float = TASK_LEASE) -> float:
    """Seconds between two renewals of a lease of ``lease`` seconds."""
    return lease / RENEWALS_PER_LEASE


def unrenewed(callback_timeout: float, attempts: int = 1) -> float:
    """A lease for work nobody renews while it runs: callbacks run where no lease keeper is.

    That is a pusher's batch-begin callback (``push.iter_push``) and the batch end that
    ``stop()`` runs itself (``ledger.finalize_lease``).  The lease covers every attempt
    at its time limit, plus one ``TASK_LEASE`` for the rest of the work (the report,
    the writes around the callback).
    """
    return callback_timeout * attempts + TASK_LEASE
