"""The task journal: what a worker that dies mid-group leaves behind.

A worker records a whole claimed group's outcomes with one SETTLE call at the
end of the group; that is what makes a no-op task cost a fraction of a round
trip.  The price was paid on a crash: a task that kills its worker
(``os._exit``, a segfault, the OOM killer) took with it the outcomes of the
tasks that had finished before it in the group (they ran again), and its
death was blamed on every task of the group.

So each worker keeps a journal of its group: a list,
``rq:serviceq:NAME:journal:<worker>``, to which it appends ``s<id>\x1f<claim>``
as each task is committed to start and ``o<id>\x1f<claim>\x1f<verdict>\x1f<remark>``
as its outcome becomes known.  The claim script, when it takes over a lost
task, reads its worker's journal: it settles a task with a journaled outcome of
the same claim, counts a loss only against a task that had started, and hands
out a task that never started without counting; SETTLE deletes the journal.
(The journal lived in each task's hash before: two fields more per task made
Redis grow every hash's table, some 60 bytes a task kept for its report.)

The first write of a group also tells RQ's tools what the worker is busy with:
``HSET rq:worker:<name> current_job <task id>`` (the group's first task; naming
each task as it starts would cost a command a task), as RQ's own worker sets
it, so that ``rq info`` and rq-dashboard show it; ``sync`` clears it (``HDEL``)
once the group has run, with the group's other journal writes.  The same
connection carries RQ's worker state (``busy``, ``idle``), which only tools read.

Where a worker has one (the default), the entries go to a file of its own machine instead, a
memory map that outlives the process, and a watcher puts them in the list once the worker is gone
(``spool.py``): no write a task at all.  The rest of this text is about the list.

The journal must not cost a round trip per task: its writes go out on a
connection of its own without waiting for replies (in serial mode the
outcome of one task and the start of the next in one RPUSH), and the replies
owed are read just before the group's SETTLE/RELEASE, so every journal write
has run before the settle that deletes it (they travel on another connection,
so nothing else orders them).  The journal is advisory and the settle is
authoritative: a Redis error here is logged, the connection dropped, and the
group goes on unjournaled.  A journal its worker never settled (it died)
expires after ``JOURNAL_TTL``: a takeover after that treats a task that ran as one
that never started (it runs again, uncounted as a loss).
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from redis import Redis

from rq_serviceq.job import ServiceQJob
from rq_serviceq.store.connection import own_connection
from rq_serviceq.store.outage import Outage, expected, refused_for_memory
from rq_serviceq.task.remarks import Outcome
from rq_serviceq.worker.spool import JOURNAL_TTL, Spool

SEP = "\x1f"  # ASCII unit separator: cannot clash with a task id, a claim token or a verdict

logger = logging.getLogger("rq_serviceq")


def encode_outcome(claim: str, outcome: Outcome) -> str:
    return f"{claim}{SEP}{outcome.sent}{SEP}{outcome.remark}"


def _bulk(data: bytes) -> bytes:
    return b"$%d\r\n%b\r\n" % (len(data), data)


def _command(*parts: bytes) -> bytes:
    """A command in RESP, packed here: redis-py's general packer cost more than the rest of the journal."""
    return b"*%d\r\n" % len(parts) + b"".join(_bulk(part) for part in parts)


_CURRENT_JOB = b"current_job"  # RQ's worker-hash field (Worker.set_current_job_id)


class Journal:
    """Journal writes of one worker, sent without waiting; thread-safe (the threads runner shares it)."""

    def __init__(
        self, conn: Redis, worker_key: str | None = None, outage: Outage | None = None, key: str | None = None
    ) -> None:
        """``worker_key``: RQ's ``rq:worker:<name>`` hash, whose ``current_job`` names the task running;
        ``outage``: the worker's Redis-away bookkeeping, told of a write lost to an outage; ``key``: the
        journal's list (``Keys.journal``), None for a journal that only names the current job."""
        self._pool = conn.connection_pool
        self._outage = outage
        self._failing = False  # a write failed since the last sync that worked: said once, not per task
        self._key = key.encode() if key else None
        self._worker_key = worker_key.encode() if worker_key else None
        self._busy = False  # the group has begun since the last sync (current_job set, TTL given)
        self._conn: Any = None  # a redis Connection of our own, taken from the pool when first needed
        self._entries: list[bytes] = []  # journal entries not yet sent: one RPUSH when they go
        self._unsent: list[bytes] = []  # other packed commands
        self._replies = 0  # replies the unsent commands will owe (the RPUSH's not included)
        self._owed = 0  # replies to commands sent and not yet read
        self._carried = 0  # of those, the ones sent by the last sync's time: the next lazy sync reads them
        self._lock = threading.Lock()
        self._reading = threading.Lock()  # one reader of replies at a time (``sync``), writers go on meanwhile
        self._orphan: Any = None  # a connection dropped while ``sync`` read from it, for it to give back
        self._closed = False
        self.spool: Spool | None = None  # the entries' file (spool.py), set as the worker starts; None: the list
        self._spool_broken = False  # a write into the spool failed (its disk full): the list from then on

    def started(self, job: ServiceQJob, send: bool = True) -> None:
        """Mark ``job`` started, now: a worker may die in the very next instruction.  The first task of a
        group also becomes RQ's ``current_job``: naming every task as it starts cost a command a task.
        ``send=False``: the caller ``flush``es before the task begins (outside the gate's start lock)."""
        with self._lock:
            if not self._busy:
                self._busy = True
                if self._worker_key is not None:
                    self._queue(b"HSET", self._worker_key, _CURRENT_JOB, job.id.encode())
                if self._key is not None and not self._spooling:
                    self._queue(b"EXPIRE", self._key, b"%d" % JOURNAL_TTL)
            self._entry(f"s{job.id}{SEP}{job.claim}", send=send)

    def flush(self) -> None:
        """Send what waits (a start marked with ``send=False``), without waiting for replies."""
        with self._lock:
            self._send_now()

    def state(self, state: str) -> None:
        """RQ's worker state (``busy``/``idle``), which only tools read: sent without waiting, like the rest.
        Waiting for it cost two round trips a group, a fifth of a no-op worker's time."""
        if self._worker_key is None or self._closed:  # closed: RQ deletes the worker's hash next
            return
        with self._lock:
            self._queue(b"HSET", self._worker_key, b"state", state.encode())
            self._send_now()

    def ended(self, job: ServiceQJob, outcome: Outcome, send: bool = True) -> None:
        """Record ``job``'s outcome; with ``send=False`` it waits for the next start (or ``sync``) to go out with."""
        with self._lock:
            self._entry(f"o{job.id}{SEP}{encode_outcome(job.claim, outcome)}", send=send)

    @property
    def _spooling(self) -> bool:
        """Entries go to the spool (else to the list): there is one, and no write into it has failed."""
        return self.spool is not None and not self._spool_broken

    def _entry(self, entry: str, send: bool) -> None:
        if self._spooling:
            assert self.spool is not None
            try:
                self.spool.append(entry.encode())
            except Exception as exc:  # never fail a task for the journal: the rest of it goes to Redis
                logger.warning("task journal spool failed (%s: %s); journaling to Redis from now on",
                               type(exc).__name__, exc)  # fmt: skip
                self._spool_broken = True  # what it holds is carried if the worker dies; the list has the rest
                if self._key is not None:
                    self._queue(b"EXPIRE", self._key, b"%d" % JOURNAL_TTL)
        if not self._spooling and self._key is not None:
            self._entries.append(entry.encode())
        if send:
            self._send_now()

    def sync(self, strict: bool = False) -> None:
        """Send what waits and read replies owed: afterwards every journal write has run in Redis,
        and the worker names no current job (a group is over whenever this is called).

        With the entries in a spool, nothing the settle does depends on these writes (the worker's
        ``current_job`` and state, which only tools read), so only the replies of what was sent by the
        last sync are read, long arrived: waiting for this group's own was a fifth of a no-op worker's
        time.  ``strict`` (or entries in the list) reads them all, for a reader of the list after it.

        The replies are read outside the lock (under one of their own): a settle's sync waited for Redis
        while every task thread that ended or began, waiting for the lock, idled its slot.  Replies come
        in order, so the ones owed now come before those of anything sent meanwhile."""
        with self._lock:
            try:
                if self._busy and self._worker_key is not None:
                    self._queue(b"HDEL", self._worker_key, _CURRENT_JOB)
                self._busy = False
                self._send()
            except Exception as exc:
                self._drop(exc)
                return
            owed = self._owed if strict or not self._spooling else self._carried
            conn, self._owed = self._conn, self._owed - owed
            self._carried = self._owed
        with self._reading:
            try:
                for _ in range(owed):
                    conn.read_response()
            except Exception as exc:
                with self._lock:
                    if conn is self._conn:  # else dropped already, and its replies forgotten with it
                        self._drop(exc)
                return
            finally:
                with self._lock:
                    if self._orphan is not None:  # dropped by a writer while read here: given back now
                        self._pool.release(self._orphan)
                        self._orphan = None
        self._failing = False

    def settled(self, keep: int) -> None:
        """The settle went through: the spool keeps only the last ``keep`` entries, as SETTLE cuts the list."""
        if self.spool is not None:
            with self._lock:
                self.spool.keep_last(keep)

    def detach_spool(self) -> Spool | None:
        """The worker leaves: the spool is no longer written, and is the caller's to close."""
        with self._lock:
            spool, self.spool = self.spool, None
        return spool

    def spooled(self) -> list[bytes] | None:
        """The spool's entries; None when the journal is the list in Redis (read it there)."""
        with self._lock:
            return self.spool.entries() if self.spool is not None and self._spooling else None

    def close(self) -> None:
        self._closed = True
        self.sync(strict=True)
        with self._lock:
            if self._conn is not None:
                self._pool.release(self._conn)
                self._conn = None

    def _queue(self, *parts: bytes) -> None:
        """A command to go out with the next send, owing one reply (the caller holds the lock)."""
        self._unsent.append(_command(*parts))
        self._replies += 1

    def _send_now(self) -> None:
        try:
            self._send()
        except Exception as exc:
            self._drop(exc)

    def _send(self) -> None:
        """Send what waits, the entries as one RPUSH (the caller holds the lock)."""
        if self._entries:
            assert self._key is not None
            self._queue(b"RPUSH", self._key, *self._entries)
            self._entries = []
        if not self._unsent:
            return
        if self._conn is None:
            self._conn = own_connection(self._pool)
        commands, self._unsent = self._unsent, []
        self._conn.send_packed_command([b"".join(commands)], check_health=False)
        self._owed, self._replies = self._owed + self._replies, 0

    def _drop(self, exc: Exception) -> None:
        """Never fail a task for the journal: forget what it held, give its connection back disconnected.

        Redis unreachable is the worker's outage, said once however many writes fail (the journal may be
        the first to meet it), and not again just after it (a connection held across the outage fails
        once more).  A full Redis is left to the worker's own writes, which wait until one lands: begun
        by a journal write, whose loss is nobody's wait, the outage was ended by the worker's next read
        and a probe write that fitted, and begun again at its next write, a line each way each time.
        Anything else is worth a warning, once until a sync works again."""
        if self._outage is not None and expected(exc):
            if not refused_for_memory(exc) and not self._outage.lately_away():
                self._outage.failed(exc, "task journal write")
        elif not self._failing:
            logger.warning("task journal write failed (%s: %s); the settle records these outcomes",
                           type(exc).__name__, exc)  # fmt: skip
        self._failing = True
        self._entries, self._unsent, self._replies, self._owed, self._carried = [], [], 0, 0, 0
        if self._conn is not None:
            conn, self._conn = self._conn, None
            try:
                conn.disconnect()
            finally:
                if self._reading.acquire(blocking=False):  # nobody reads its replies: back to the pool now
                    self._pool.release(conn)
                    self._reading.release()
                else:  # ``sync`` is reading from it: handed out again meanwhile, it would read another's reply
                    self._orphan = conn


def starts(entries: list[bytes]) -> dict[str, str]:
    """The tasks a journal (its list's entries) says started: task id -> claim token."""
    started: dict[str, str] = {}
    for raw in entries:
        entry = raw.decode(errors="replace")
        if entry.startswith("s") and SEP in entry:
            task_id, _, claim = entry[1:].partition(SEP)
            started[task_id] = claim
    return started
