"""start(): worker processes on this machine, launched through RQ's own CLI.

``start()`` runs exactly what an operator would type on another machine,
``rq worker --worker-class rq_serviceq.ServiceQWorker --burst NAME-pending``,
so there is one way a worker comes to life.  The Redis URL travels in the
environment (``RQ_REDIS_URL``), not on the command line where ``ps`` shows
passwords.  A Sentinel URL (``redis+sentinel://``) travels the same way: the
command then names ``--connection-class`` ``SentinelAwareRedis``, whose
``from_url`` RQ's CLI calls with it, so the worker finds the primary as its
parent did.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import uuid

from redis import Redis

from rq_serviceq.store import keys as k
from rq_serviceq.store.connection import SENTINEL_AWARE_CLASS, is_sentinel_url

WORKER_CLASS = "rq_serviceq.ServiceQWorker"
# Another ServiceQWorker subclass for the workers start() and supervisors launch, e.g.
# rq_serviceq.contrib.django.DjangoServiceQWorker (django.setup() in every worker process).
WORKER_CLASS_ENV = "RQ_SERVICEQ_WORKER_CLASS"


def worker_command(name: str, burst: bool = True, worker_name: str | None = None, url: str = "") -> list[str]:
    """RQ's CLI as an operator types it; for a ``redis+sentinel://`` ``url`` (RQ reads only redis:// URLs)
    with a connection class whose ``from_url`` asks the sentinels for the primary."""
    worker_class = os.environ.get(WORKER_CLASS_ENV) or WORKER_CLASS
    cmd = [sys.executable, "-m", "rq.cli", "worker", "--worker-class", worker_class, "--quiet"]
    if is_sentinel_url(url):
        cmd += ["--connection-class", SENTINEL_AWARE_CLASS]
    if burst:
        cmd.append("--burst")
    if worker_name:
        cmd += ["--name", worker_name]
    return [*cmd, k.pending_queue_name(name)]


def worker_env(url: str) -> dict[str, str]:
    """This process's environment, the Redis URL, and a PYTHONPATH that finds what this process finds."""
    env = dict(os.environ)
    env["RQ_REDIS_URL"] = url
    env["PYTHONPATH"] = os.pathsep.join(p or os.getcwd() for p in sys.path)
    return env


class WorkerProcess(subprocess.Popen[bytes]):
    """A worker process, under the RQ worker name it registers with (so that ``start()`` can tell it is still
    starting: RQ's worker hash does not exist yet)."""

    def __init__(self, name: str, url: str, burst: bool) -> None:
        self.worker_name = uuid.uuid4().hex
        super().__init__(worker_command(name, burst, self.worker_name, url), env=worker_env(url))


def spawn_workers(name: str, url: str, count: int, burst: bool = True) -> list[WorkerProcess]:
    """Start ``count`` worker processes that can import whatever this process can.

    Each gets a daemon thread that waits for it, so that a long-lived producer (a web
    server) does not collect ``<defunct>`` children as its burst workers finish.
    """
    procs = [WorkerProcess(name, url, burst) for _ in range(count)]
    for proc in procs:
        threading.Thread(target=proc.wait, name=f"reap-{proc.pid}", daemon=True).start()
    return procs


def workers_taking_work(conn: Redis, name: str, procs: list[WorkerProcess]) -> int:
    """Workers that will take a batch opened now: those registered on the pending queue (a burst worker that
    is leaving has taken itself out: LEAVE), and those of ``procs`` still starting (alive, not registered
    yet: no RQ worker hash).  Read in one transaction, so that none registering meanwhile is counted twice
    or not at all."""
    alive = [p for p in procs if p.returncode is None]
    with conn.pipeline(transaction=True) as pipe:
        pipe.scard(k.Keys(name).workers)
        for proc in alive:
            pipe.exists(k.worker_key(proc.worker_name))
        registered, *exists = pipe.execute()
    return int(registered) + sum(1 for found in exists if not found)


def live_workers(conn: Redis, name: str) -> int:
    """Workers registered on the pending queue (RQ drops a dead worker once its heartbeat lapses)."""
    return int(conn.scard(k.Keys(name).workers))
