"""LeaseKeeper: renews, from a thread of its own, the leases of what a process holds.

A process holds claimed tasks (from the claim until they are settled or given
back) and batch work (a batch's end, or a begin callback whose pusher died).
Each is leased for ``leases.TASK_LEASE`` seconds and renewed every third of
that while the process lives, so a slow task or callback keeps its work as
long as it needs, and a process that dies hands it over within one lease.
Used by a worker for its whole life and by ``work_once`` for one call.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from redis import Redis

from rq_serviceq.store import keys as k
from rq_serviceq.store.outage import Outage
from rq_serviceq.worker import leases
from rq_serviceq.worker.claim import extend_leases

logger = logging.getLogger("rq_serviceq")


class LeaseKeeper:
    """The task ids and batch work one process holds, and the thread that renews their leases.

    The thread starts with the first thing held and runs until ``close()``; ``hold``,
    ``drop`` and ``doing`` may be called from any thread.
    """

    def __init__(
        self,
        conn: Redis,
        keys: k.Keys,
        lease: float | None = None,
        log: logging.Logger | None = None,
        outage: Outage | None = None,
    ) -> None:
        """``outage``: the process's Redis-away bookkeeping, which a failed renewal is told of (one line an outage)."""
        self.conn, self.keys = conn, keys
        self.lease = leases.TASK_LEASE if lease is None else lease  # read now: the policy, not a copy of it
        self.log = log or logger
        self.outage = outage or Outage(conn, "lease keeper", self.log)
        self._tasks: set[str] = set()
        self._work: set[str] = set()  # finalize-zset members: "begin:<batch id>" or a batch id
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._thread: threading.Thread | None = None

    def hold(self, task_ids: Iterable[str]) -> None:
        with self._lock:
            self._tasks.update(task_ids)
        self._start()

    def drop(self, task_ids: Iterable[str]) -> None:
        """Stop renewing these tasks' leases: settled or given back, they are no longer this process's."""
        with self._lock:
            self._tasks.difference_update(task_ids)

    @contextmanager
    def doing(self, member: str) -> Iterator[None]:
        """Keep batch work's lease (a finalize-zset member's) while the block runs."""
        with self._lock:
            self._work.add(member)
        self._start()
        try:
            yield
        finally:
            with self._lock:
                self._work.discard(member)

    def close(self) -> None:
        self._closed.set()

    def _start(self) -> None:
        with self._lock:
            if self._thread is not None or self._closed.is_set():
                return
            self._thread = threading.Thread(target=self._renew_until_closed, name="serviceq-leases", daemon=True)
        self._thread.start()

    def _renew_until_closed(self) -> None:
        while not self._closed.wait(leases.renew_every(self.lease)):
            with self._lock:
                tasks, work = list(self._tasks), list(self._work)
            try:
                with self.outage.riding_out("lease renewal"):
                    extend_leases(self.conn, self.keys, tasks, work, self.lease)
            except Exception:
                self.log.warning("could not extend task leases; will try again", exc_info=True)
