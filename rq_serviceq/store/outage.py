"""Redis is away: what a long-running process says about it, and how long a burst worker waits.

Every process that outlives a Redis outage (workers, supervisors, the HTTP
service, ``watch``, the metrics exporter) keeps one ``Outage`` and tells it
of each Redis call that failed for an expected reason (Redis unreachable,
busy in a long script, full: ``-OOM`` under ``maxmemory``, or in a Sentinel
failover: ``-READONLY`` from a demoted primary, no primary found) and of each
that worked.  It logs one line when Redis goes away (what failed, where, the
URL with its password hidden), one a minute while it stays away, and one when
it is back: an outage is an event to note, not a bug, so no traceback at any
level above DEBUG, however many threads and attempts meet it.

A ``--burst`` worker is different: nobody waits for it, and a producer's
``start()`` launches exactly such workers, so one that waited for ever would
be an orphan.  It gives up once Redis has been away for
``RQ_SERVICEQ_BURST_OUTAGE_LIMIT`` seconds (default 300) and exits non-zero;
the leases of the tasks it held run out and other workers take them.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Protocol, TypeVar

import redis
from redis import Redis
from redis.sentinel import MasterNotFoundError

from rq_serviceq.store.connection import connection_url
from rq_serviceq.store.keys import PREFIX

T = TypeVar("T")

BURST_LIMIT_ENV = "RQ_SERVICEQ_BURST_OUTAGE_LIMIT"
DEFAULT_BURST_LIMIT = 300.0  # seconds a --burst worker waits for Redis before it gives up
REMIND_EVERY = 60.0  # seconds between two "still away" lines
FLAP_WINDOW = 5.0  # away again this soon after coming back: the same outage (a full Redis dips under
# maxmemory and over it again as buffers free and fill), said once each way, not once per dip
PROBE_KEY = PREFIX + "outage-probe"  # written (1 s TTL) to tell that a full Redis takes writes again


class Retrying(Protocol):
    """How a caller reaches Redis: a worker retries through outages (``Outage.through``), others once."""

    def __call__(self, what: str, call: Callable[[], T]) -> T: ...


def once(what: str, call: Callable[[], T]) -> T:
    """Reach Redis once; an error is the caller's."""
    return call()


class OutageLimit(SystemExit):
    """A burst worker stops waiting for Redis: a SystemExit, so RQ's work loop lets it through (exit 1)."""

    def __init__(self, message: str) -> None:
        super().__init__(1)
        self.message = message

    def __str__(self) -> str:
        return self.message


def expected(exc: BaseException) -> bool:
    """An outage rather than a bug: Redis unreachable or timing out, busy running a long script (BUSY), full
    (OOM: nothing was written, a script included, since Redis refuses a script's first write and so all of it),
    or a failover under way: the server reached is a replica now (READONLY: a demoted primary refuses the
    write, a script's whole), or one that lost its primary (MASTERDOWN), or no sentinel names a primary
    (``MasterNotFoundError``, a ConnectionError).  Each is waited out, the call retried."""
    if isinstance(exc, redis.exceptions.ConnectionError | redis.exceptions.TimeoutError):
        return True
    if isinstance(exc, redis.exceptions.OutOfMemoryError | redis.exceptions.ReadOnlyError):
        return True
    return isinstance(exc, redis.exceptions.ResponseError) and str(exc).startswith(_OUTAGE_REPLIES)


_OUTAGE_REPLIES = ("BUSY", "OOM", "READONLY", "MASTERDOWN", "NOREPLICAS")


def refused_for_memory(exc: BaseException) -> bool:
    """Redis is full (OOM): it refused a write, and reads still work."""
    return isinstance(exc, redis.exceptions.OutOfMemoryError) or str(exc).startswith("OOM")


def refuses_writes(exc: BaseException) -> bool:
    """Redis answers reads but refused a write (full, or a replica now): only a write tells it is back."""
    return refused_for_memory(exc) or _read_only(exc)


def _read_only(exc: BaseException) -> bool:
    return isinstance(exc, redis.exceptions.ReadOnlyError) or str(exc).startswith(("READONLY", "NOREPLICAS"))


def _state(exc: BaseException) -> str:
    if refused_for_memory(exc):
        return "full (maxmemory reached; writes refused)"
    if _read_only(exc):
        return "refusing writes (a replica now, or too few replicas: a failover?)"
    if str(exc).startswith("MASTERDOWN"):
        return "a replica that lost its primary (a failover?)"
    if isinstance(exc, MasterNotFoundError):
        return "without a primary (no sentinel names one yet: a failover?)"
    if str(exc).startswith("BUSY"):
        return "busy running a script"
    return "unreachable"


def burst_limit() -> float:
    """``RQ_SERVICEQ_BURST_OUTAGE_LIMIT`` (seconds, default 300); a bad value is an error naming the variable."""
    raw = os.environ.get(BURST_LIMIT_ENV, "").strip()
    if not raw:
        return DEFAULT_BURST_LIMIT
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise ValueError(f"{BURST_LIMIT_ENV} must be a number of seconds above 0 (got {raw!r})")
    return value


class Outage:
    """One process's view of whether Redis is away, shared by its threads.

    ``limit``: seconds after which ``through`` stops retrying (a burst worker's bound); None waits for ever.
    """

    def __init__(
        self,
        conn: Redis,
        who: str,
        log: logging.Logger,
        limit: float | None = None,
        max_wait: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.conn, self.where = conn, connection_url(conn, hide_password=True)
        self.who, self.log, self.limit, self.max_wait, self.clock = who, log, limit, max_wait, clock
        self.since: float | None = None  # clock() when the current outage began; None while Redis answers
        self._back_at = float("-inf")  # clock() when the last outage ended
        self._full = False  # the current outage includes Redis refusing writes (OOM): reads say nothing of it
        self._quiet = False  # the current outage began within FLAP_WINDOW of the last one's end: not said
        self._reminded = 0.0
        self._lock = threading.Lock()

    def failed(self, exc: BaseException, what: str) -> None:
        """A Redis call failed for an expected reason: the first line of an outage, or a reminder a minute.
        Away again within FLAP_WINDOW of coming back continues the outage already said (no new line)."""
        with self._lock:
            now = self.clock()
            full = refuses_writes(exc)
            self._full = full or (self._full and self.since is not None)
            if self.since is None:
                self.since = self._reminded = now
                self._quiet = now - self._back_at < FLAP_WINDOW  # a flap: the line already said holds
                if not self._quiet:
                    self.log.warning("%s: Redis at %s is %s (%s: %s, during %s); waiting for it", self.who,
                                     self.where, _state(exc), type(exc).__name__, exc, what)  # fmt: skip
            elif now - self._reminded >= REMIND_EVERY:
                self._reminded = now
                self.log.warning("%s: Redis at %s still %s after %.0f s (%s)", self.who, self.where, _state(exc),
                                 now - self.since, exc)  # fmt: skip
        self.log.debug("Redis call failed during %s", what, exc_info=exc)

    def ok(self, started: float) -> None:
        """A Redis call begun at ``started`` (``clock()``) worked: the end of an outage, if one was on, once a
        PING confirms it (a call may have touched nothing, or its reply was on its way when Redis went), or
        for a full Redis a write (a read works at maxmemory)."""
        if self.since is None or started < self.since:
            return
        try:
            if self._full:
                self.conn.set(PROBE_KEY, 1, px=1000)
            else:
                self.conn.ping()
        except redis.exceptions.RedisError:
            return
        with self._lock:
            if self.since is None:
                return
            self._back_at = self.clock()
            away, self.since = self._back_at - self.since, None
            if self._quiet and away < FLAP_WINDOW:  # the end of a flap begun quietly: the "back" said holds too
                self.log.debug("%s: Redis at %s back again after %.1f s", self.who, self.where, away)
            else:
                self.log.warning("%s: Redis at %s is back after %.1f s", self.who, self.where, away)

    def lately_away(self, within: float = 10.0) -> bool:
        """Redis is away, or was until ``within`` seconds ago: a connection held across the outage fails once
        more after it, which is no news worth a line."""
        return self.since is not None or self.clock() - self._back_at < within

    def away_for(self) -> float:
        since = self.since
        return 0.0 if since is None else self.clock() - since

    def through(self, what: str, call: Callable[[], T], stop: Callable[[], bool] = lambda: False) -> T:
        """``call()``, retried through an outage with backoff (0.1 s doubling to ``max_wait``) until it works.

        An outcome is never dropped because Redis blinked: a settle is retried until it lands (its claim
        token makes a repeat harmless).  Only ``stop()`` (a stop request) or the ``limit`` ends the wait;
        the tasks' leases then run out and another worker takes them.
        """
        pause = 0.1
        while True:
            started = self.clock()
            try:
                result = call()
            except redis.exceptions.RedisError as exc:
                if stop() or not expected(exc):
                    raise
                self.failed(exc, what)
                self._check_limit(what)
                time.sleep(pause)
                pause = min(pause * 2, self.max_wait)
            else:
                self.ok(started)
                return result

    @contextmanager
    def noting(self, what: str) -> Iterator[None]:
        """Run the block, noting how its Redis calls went; every error propagates (a request's 503, say)."""
        started = self.clock()
        try:
            yield
        except redis.exceptions.RedisError as exc:
            if expected(exc):
                self.failed(exc, what)
            raise
        self.ok(started)

    @contextmanager
    def riding_out(self, what: str) -> Iterator[None]:
        """Run the block; an expected Redis error ends it quietly (noted here), anything else propagates."""
        try:
            with self.noting(what):
                yield
        except redis.exceptions.RedisError as exc:
            if not expected(exc):
                raise

    def _check_limit(self, what: str) -> None:
        if self.limit is not None and self.away_for() >= self.limit:
            raise OutageLimit(
                f"{self.who}: giving up: Redis at {self.where} away for {self.away_for():.0f} s during {what} "
                f"(over {BURST_LIMIT_ENV}={self.limit:g} s); the leases of the tasks held run out and other "
                "workers take them"
            )
