"""The task journal: what a worker that dies mid-group leaves behind.

A worker records a whole claimed group's outcomes with one SETTLE call at the
end of the group; that is what makes a no-op task cost a fraction of a round
trip.  The price was paid on a crash: a task that kills its worker
(``os._exit``, a segfault, the OOM killer) took with it the outcomes of the
tasks that had finished before it in the group (they ran again), and its
death was blamed on every task of the group.

So as each task is committed to start its job hash gets
``sq_started = <claim token>``, and as its outcome becomes known
``sq_outcome = "<claim>\\x1f<verdict>\\x1f<remark>"``.  The claim script, when
it takes over a lost task, settles it with a journaled outcome of the same
claim, counts a loss only against a task that had started, and hands out a
task that never started without counting; SETTLE clears both fields.

The first such write of a group tells RQ's tools what the worker is busy with:
``HSET rq:worker:<name> current_job <task id>`` (the group's first task; naming
each task as it starts would cost a command a task), as RQ's own worker sets
it, so that ``rq info`` and rq-dashboard show it; ``sync`` clears it (``HDEL``)
once the group has run, with the group's other journal writes.

The journal must not cost a round trip per task: its writes go out on a
connection of its own without waiting for replies (in serial mode the
outcome of one task and the start of the next in one write), and the replies
owed are read just before the group's SETTLE/RELEASE, so every journal write
has run before the settle that clears it (they travel on another connection,
so nothing else orders them).  The journal is advisory and the settle is
authoritative: a Redis error here is logged, the connection dropped, and the
group goes on unjournaled.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from redis import Redis

from rq_serviceq.job import ServiceQJob
from rq_serviceq.store import keys as k
from rq_serviceq.store.outage import Outage, expected
from rq_serviceq.task.remarks import Outcome

STARTED = "sq_started"
OUTCOME = "sq_outcome"
SEP = "\x1f"  # ASCII unit separator: cannot clash with a claim token or a verdict
_PREFIX = k.JOB_PREFIX.encode()

logger = logging.getLogger("rq_serviceq")


def encode_outcome(claim: str, outcome: Outcome) -> str:
    return f"{claim}{SEP}{outcome.verdict.value}{SEP}{outcome.remark}"


def _hset(task_id: str, field: bytes, value: str) -> bytes:
    """``HSET rq:job:<id> <field> <value>`` in RESP: packed here, as redis-py's general packer costs
    more than everything else the journal does per task."""
    key, data = _PREFIX + task_id.encode(), value.encode()
    return b"*4\r\n$4\r\nHSET\r\n$%d\r\n%b\r\n%b$%d\r\n%b\r\n" % (len(key), key, field, len(data), data)


def _bulk(data: bytes) -> bytes:
    return b"$%d\r\n%b\r\n" % (len(data), data)


_STARTED = _bulk(STARTED.encode())
_OUTCOME = _bulk(OUTCOME.encode())
_CURRENT_JOB = _bulk(b"current_job")  # RQ's worker-hash field (Worker.set_current_job_id)


class Journal:
    """Journal writes of one worker, sent without waiting; thread-safe (the threads runner shares it)."""

    def __init__(self, conn: Redis, worker_key: str | None = None, outage: Outage | None = None) -> None:
        """``worker_key``: RQ's ``rq:worker:<name>`` hash, whose ``current_job`` names the task running;
        ``outage``: the worker's Redis-away bookkeeping, told of a write lost to an outage."""
        self._pool = conn.connection_pool
        self._outage = outage
        self._failing = False  # a write failed since the last sync that worked: said once, not per task
        key = _bulk(worker_key.encode()) if worker_key else None
        # HSET <worker key> current_job, waiting for the task id; HDEL of the same field
        self._set_current = None if key is None else b"*4\r\n$4\r\nHSET\r\n" + key + _CURRENT_JOB
        self._clear_current = None if key is None else b"*3\r\n$4\r\nHDEL\r\n" + key + _CURRENT_JOB
        self._state_prefix = None if key is None else b"*4\r\n$4\r\nHSET\r\n" + key + _bulk(b"state")
        self._busy = False  # current_job was set since the last sync
        self._conn: Any = None  # a redis Connection of our own, taken from the pool when first needed
        self._unsent: list[bytes] = []  # packed commands
        self._replies = 0  # replies the unsent commands will owe
        self._owed = 0  # replies to commands sent and not yet read
        self._lock = threading.Lock()
        self._closed = False

    def started(self, job: ServiceQJob) -> None:
        """Mark ``job`` started, now: a worker may die in the very next instruction.  The first task of a
        group also becomes RQ's ``current_job``: naming every task as it starts cost a command a task."""
        start = _hset(job.id, _STARTED, job.claim)
        if self._set_current is None or self._busy:
            self._note(start, send=True)
        else:
            self._note(start + self._set_current + _bulk(job.id.encode()), send=True, replies=2, busy=True)

    def state(self, state: str) -> None:
        """RQ's worker state (``busy``/``idle``), which only tools read: sent without waiting, like the rest.
        Waiting for it cost two round trips a group, a fifth of a no-op worker's time."""
        if self._state_prefix is not None and not self._closed:  # closed: RQ deletes the worker's hash next
            self._note(self._state_prefix + _bulk(state.encode()), send=True)

    def ended(self, job: ServiceQJob, outcome: Outcome, send: bool = True) -> None:
        """Record ``job``'s outcome; with ``send=False`` it waits for the next start (or ``sync``) to go out with."""
        self._note(_hset(job.id, _OUTCOME, encode_outcome(job.claim, outcome)), send=send)

    def sync(self) -> None:
        """Send what waits and read every reply owed: afterwards every journal write has run in Redis,
        and the worker names no current job (a group is over whenever this is called)."""
        with self._lock:
            try:
                if self._busy and self._clear_current is not None:
                    self._busy = False
                    self._unsent.append(self._clear_current)
                    self._replies += 1
                self._send()
                while self._owed:
                    self._owed -= 1
                    self._conn.read_response()
                self._failing = False
            except Exception as exc:
                self._drop(exc)

    def close(self) -> None:
        self._closed = True
        self.sync()
        with self._lock:
            if self._conn is not None:
                self._pool.release(self._conn)
                self._conn = None

    def _note(self, command: bytes, send: bool, replies: int = 1, busy: bool = False) -> None:
        """Queue ``command`` (packed, owing ``replies``); ``busy``: it sets the worker's current_job."""
        with self._lock:
            self._unsent.append(command)
            self._replies += replies
            self._busy = self._busy or busy
            if send:
                try:
                    self._send()
                except Exception as exc:
                    self._drop(exc)

    def _send(self) -> None:
        if not self._unsent:
            return
        if self._conn is None:
            self._conn = _own_connection(self._pool)
        commands, self._unsent = self._unsent, []
        self._conn.send_packed_command([b"".join(commands)], check_health=False)
        self._owed, self._replies = self._owed + self._replies, 0

    def _drop(self, exc: Exception) -> None:
        """Never fail a task for the journal: forget what it held, give its connection back disconnected.

        Redis unreachable is the worker's outage, said once however many writes fail (the journal may be
        the first to meet it), and not again just after it (a connection held across the outage fails
        once more); anything else is worth a warning, once until a sync works again."""
        if self._outage is not None and expected(exc):
            if not self._outage.lately_away():
                self._outage.failed(exc, "task journal write")
        elif not self._failing:
            logger.warning("task journal write failed (%s: %s); the settle records these outcomes",
                           type(exc).__name__, exc)  # fmt: skip
        self._failing = True
        self._unsent, self._replies, self._owed = [], 0, 0
        if self._conn is not None:
            conn, self._conn = self._conn, None
            try:
                conn.disconnect()
            finally:
                self._pool.release(conn)


def _own_connection(pool: Any) -> Any:
    try:
        return pool.get_connection()
    except TypeError:  # redis-py < 5.3 wants a command name
        return pool.get_connection("HSET")
