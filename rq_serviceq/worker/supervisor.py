"""The supervisor: ``rq-serviceq worker NAME`` keeps a machine's share of workers alive.

Every supervisor of a service queue heartbeats into one sorted set (scored by
Redis' clock, so a machine whose clock is ahead cannot evict the others); each takes
an even share of ``worker_count`` (the first ``worker_count % n`` supervisors
by id take one more).  So ``worker_count`` is the total across machines: an
operator who sets 3 workers for a WhatsApp provider's rate limit gets 3,
however many machines run a supervisor.  A machine that dies drops out of the
set within seconds and the others take its share.

Workers are RQ's own CLI (``rq worker --worker-class rq_serviceq.ServiceQWorker
--name ... NAME-pending``).  A worker that dies is replaced, and the tasks it
held are made claimable at once.  Scaling down sends SIGTERM (a warm shutdown:
the running task finishes).  SIGTERM to the supervisor does the same for all
its workers, then it leaves.  With a schedule (``set_schedule``), workers are
started in burst mode at each scheduled time instead of kept alive.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime

import redis
from croniter import croniter
from redis import Redis

from rq_serviceq.batch import report
from rq_serviceq.store import keys as k
from rq_serviceq.store import replies, state
from rq_serviceq.store.outage import Outage
from rq_serviceq.worker import launcher, spool
from rq_serviceq.worker.claim import reclaim
from rq_serviceq.worker.run.call import no_task_function

logger = logging.getLogger("rq_serviceq.worker.supervisor")


class Supervisor:
    def __init__(
        self, conn: Redis, name: str, url: str, interval: float = 0.5, clock: Callable[[], float] | None = None
    ) -> None:
        """``clock`` overrides the time the cron schedule is read at (for tests); heartbeats always
        use Redis' clock, so that a machine whose clock is ahead cannot evict the others."""
        self.conn = conn
        self.keys = k.Keys(name)
        self.url = url
        self.interval = interval
        self.clock = clock
        self.id = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.children: dict[str, subprocess.Popen[bytes]] = {}
        self.leaving: dict[str, subprocess.Popen[bytes]] = {}  # asked to stop, still finishing
        self._stopping = False
        self._next_run: float | None = None
        self._said_no_function = False  # warned that tasks wait for a task function (once, until one is set)
        self.outage = Outage(conn, f"supervisor {self.id}", logger)

    def run(self) -> None:
        signal.signal(signal.SIGTERM, self._request_stop)
        signal.signal(signal.SIGINT, self._request_stop)
        logger.info("supervisor %s for service queue %s started", self.id, self.keys.name)
        pause = self.interval
        try:
            while not self._stopping:
                # Redis away (restarting, cut off, full): keep the workers (they wait it out too), look again later.
                with self.outage.riding_out("a look at the service queue"):
                    self.tick()
                pause = self.interval if self.outage.since is None else min(pause * 2, 5.0)
                time.sleep(pause)
        finally:
            self.shutdown()

    def _request_stop(self, signum: int, frame: object) -> None:
        """The first signal is a warm shutdown (running tasks finish); another while the workers finish
        is passed on to them, which RQ takes for a cold one, as ``rq worker`` does with a second Ctrl+C."""
        if self._stopping and self.leaving:
            logger.warning("supervisor %s: second stop signal; workers stop without finishing", self.id)
            for proc in self.leaving.values():
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
        self._stopping = True

    def tick(self) -> None:
        """One look at the world: heartbeat, reap, then start or stop workers to match our share."""
        try:  # load, never attach: a service queue deleted under a running supervisor stays deleted
            settings = state.load(self.conn, self.keys.name)
        except LookupError:
            logger.warning("service queue %s was deleted; supervisor %s leaves", self.keys.name, self.id)
            self._stopping = True
            return
        self._check_task_function(settings.task_function)
        now = report.redis_now(self.conn)  # one clock for every supervisor: heartbeats and schedules agree
        share = self._heartbeat_and_share(settings.worker_count, now)
        self._reap()
        if settings.schedule:
            self._run_on_schedule(settings.schedule, share, self.clock() if self.clock else now)
            return
        running = list(self.children)
        for name in running[share:]:
            self._ask_to_leave(name)
        for _ in range(share - len(self.children)):
            self._spawn(burst=False)

    def _check_task_function(self, path: str | None) -> None:
        """Warn once when tasks wait and nothing can run them: else a batch sits PENDING without a word
        (the HTTP service pushes, and never sets one).  One LLEN a tick, only while none is set."""
        if path:
            self._said_no_function = False  # set now: should it be unset again, say so again
            return
        if not self._said_no_function and self.conn.llen(self.keys.queue):
            logger.warning("supervisor %s: tasks wait in service queue %s, but %s", self.id, self.keys.name,
                           no_task_function(self.keys.name))  # fmt: skip
            self._said_no_function = True

    def shutdown(self) -> None:
        started = time.monotonic()
        for name in list(self.children):
            self._ask_to_leave(name)
        said = False
        while any(proc.poll() is None for proc in list(self.leaving.values())):
            if not said and time.monotonic() - started > 10:
                logger.info("supervisor %s waits for %d workers to finish their tasks (signal again to stop "
                            "them at once)", self.id, len(self.leaving))  # fmt: skip
                said = True
            time.sleep(0.05)
        with contextlib.suppress(redis.exceptions.RedisError):
            self.conn.zrem(self.keys.supervisors, self.id)
        logger.info("supervisor %s left", self.id)

    def _heartbeat_and_share(self, total: int, now: float) -> int:
        with self.conn.pipeline(transaction=True) as pipe:
            pipe.zadd(self.keys.supervisors, {self.id: now + max(5.0, 6 * self.interval)})
            pipe.zremrangebyscore(self.keys.supervisors, "-inf", now)
            pipe.zrange(self.keys.supervisors, 0, -1)
            members = sorted(replies.text(m) for m in pipe.execute()[-1])
        return share_of(members.index(self.id) if self.id in members else 0, len(members), total)

    def _reap(self) -> None:
        for pool in (self.children, self.leaving):
            for name, proc in list(pool.items()):
                code = proc.poll()
                if code is None:
                    continue
                del pool[name]
                if code != 0 and spool.pending(self.keys.name, name):  # its watcher carries its journal, reclaims
                    logger.warning("worker %s exited with %s; its watcher makes its tasks claimable", name, code)
                elif code != 0:  # killed or crashed: its tasks need not wait for their leases
                    held = reclaim(self.conn, self.keys, name)
                    logger.warning("worker %s exited with %s; %s of its tasks made claimable", name, code, held)

    def _spawn(self, burst: bool) -> None:
        name = f"{self.keys.name}-{uuid.uuid4().hex[:12]}"
        cmd = launcher.worker_command(self.keys.name, burst=burst, worker_name=name, url=self.url)
        self.children[name] = subprocess.Popen(cmd, env=launcher.worker_env(self.url), preexec_fn=_die_with_parent)

    def _ask_to_leave(self, name: str) -> None:
        proc = self.children.pop(name)
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        self.leaving[name] = proc

    def _run_on_schedule(self, schedule: str, share: int, now: float) -> None:
        cron = croniter(schedule, datetime.fromtimestamp(now, UTC))
        if self._next_run is None:
            self._next_run = cron.get_next(float)
        if now >= self._next_run:
            self._next_run = cron.get_next(float)
            if not self.children:  # the last run's workers are still at it: let them finish
                for _ in range(share):
                    self._spawn(burst=True)


def share_of(index: int, supervisors: int, total: int) -> int:
    """The share of ``total`` workers the ``index``-th of ``supervisors`` (sorted by id) keeps alive."""
    return total // supervisors + (1 if index < total % supervisors else 0)


def shares(conn: Redis, keys: k.Keys, total: int, now: float) -> list[tuple[str, float, int]]:
    """Each live supervisor of the service queue at ``now`` (Redis' clock), as the supervisors themselves divide
    ``total`` (worker_count): (id, heartbeat expiry, share), sorted by id.  A read: it evicts nobody."""
    beats: list[tuple[bytes, float]] = conn.zrange(keys.supervisors, 0, -1, withscores=True)  # type: ignore[assignment]
    live = sorted((replies.text(member), float(score)) for member, score in beats if float(score) > now)
    return [(sid, expiry, share_of(i, len(live), total)) for i, (sid, expiry) in enumerate(live)]


def _die_with_parent() -> None:
    """Linux: a worker gets SIGTERM (a warm shutdown) when its supervisor dies, even by SIGKILL,
    so that a restarted supervisor does not find orphans running on top of its own share."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
