"""pending → worker, one group early: the next group's claim runs in Redis while this group runs here.

Claim, run, settle, claim, ...: the worker and Redis took turns, each idle while the other worked (some
40% of a no-op worker's time was spent waiting for CLAIM and SETTLE).  ``ClaimAhead`` sends the next
group's CLAIM from a thread of its own as the current group starts, so Redis runs it while the tasks
run, and the next ``take`` finds it done.

What it claims is leased, and its leases kept by the worker's ``LeaseKeeper``, from the moment the
reply is read (``Claimant.claim`` holds them): a claim made early is renewed like any other, so no task
is run twice for a lease that lapsed while it waited.  The worker claims ahead only when its tasks have
been short (see ``ServiceQWorker._ahead_count``), so early claims never keep a slow queue's tasks from an
idle worker, the way a prefetch does.  A claim that fails here (Redis away) is not retried: the worker
claims again itself, through its outage handling; tasks a lost reply leased come back with their lease.
"""

from __future__ import annotations

from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout

from rq_serviceq.models import Settings
from rq_serviceq.store.outage import once
from rq_serviceq.worker.claim import Claim
from rq_serviceq.worker.cycle import Claimant
from rq_serviceq.worker.run.runner import DaemonPool


class ClaimAhead:
    """At most one claim in flight, made on a daemon thread (one that hangs on a dead Redis does not keep
    the process from exiting)."""

    def __init__(self, claimant: Claimant) -> None:
        self._claimant = claimant
        self._pool: DaemonPool | None = None
        self._pending: Future[Claim] | None = None
        self._back: Claim | None = None  # taken, then put back unused

    @property
    def sent(self) -> bool:
        return self._pending is not None or self._back is not None

    def send(self, settings: Settings, count: int) -> None:
        """Start claiming up to ``count`` tasks under ``settings``, unless a claim is already in flight."""
        if self._pending is not None or count <= 0:
            return
        if self._pool is None:
            self._pool = DaemonPool(1, name="serviceq-claim-ahead")
        self._pending = self._pool.submit(self._claimant.claim, settings, count, once)

    def put_back(self, got: Claim) -> None:
        """A claim taken but not used (the worker refills no slots with it): the next ``take`` returns it."""
        self._back = got

    def take(self, patience: float | None = None) -> Claim | None:
        """The claim sent, once Redis answered it; None if none was sent, it failed, or ``patience`` ran
        out (then it is left to ``close``'s wait).  Waits in short steps, so a signal's handler runs."""
        back = self._back
        if back is not None:
            self._back = None
            return back
        pending = self._pending
        if pending is None:
            return None
        waited = 0.0
        while patience is None or waited < patience:
            try:
                got = pending.result(timeout=0.1)
            except FutureTimeout:
                waited += 0.1
                continue
            except Exception:  # Redis away, say: the caller claims again through its own outage handling
                got = None
            self._pending = None
            return got
        return None

    def close(self, patience: float = 5.0) -> None:
        """Wait (a while) for a claim in flight, so that what it leased is this worker's to give back."""
        self.take(patience)
        if self._pool is not None:
            self._pool.close()
            self._pool = None
