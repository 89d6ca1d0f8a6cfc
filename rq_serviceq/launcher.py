"""start(): worker processes on this machine, launched through RQ's own CLI.

``start()`` runs exactly what an operator would type on another machine,
``rq worker --worker-class rq_serviceq.ServiceQWorker --burst NAME-pending``,
so there is one way a worker comes to life.  The Redis URL travels in the
environment (``RQ_REDIS_URL``), not on the command line where ``ps`` shows
passwords.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from urllib.parse import quote

from redis import Redis
from redis.connection import SSLConnection

from . import keys as k

WORKER_CLASS = "rq_serviceq.ServiceQWorker"
# Another ServiceQWorker subclass for the workers start() and supervisors launch, e.g.
# rq_serviceq.contrib.django.DjangoServiceQWorker (django.setup() in every worker process).
WORKER_CLASS_ENV = "RQ_SERVICEQ_WORKER_CLASS"


def connection_url(conn: Redis, hide_password: bool = False) -> str:
    """A redis:// URL that reaches the same server and database as ``conn``."""
    kw = conn.connection_pool.connection_kwargs
    db = kw.get("db", 0)
    user = kw.get("username") or ""
    password = kw.get("password") or ""
    auth = ""
    if password:
        auth = f"{quote(user, safe='')}:{'***' if hide_password else quote(password, safe='')}@"
    if kw.get("path"):
        return f"unix://{auth}{kw['path']}?db={db}"
    scheme = "rediss" if issubclass(conn.connection_pool.connection_class, SSLConnection) else "redis"
    return f"{scheme}://{auth}{kw.get('host', 'localhost')}:{kw.get('port', 6379)}/{db}"


def worker_command(name: str, burst: bool = True, worker_name: str | None = None) -> list[str]:
    worker_class = os.environ.get(WORKER_CLASS_ENV) or WORKER_CLASS
    cmd = [sys.executable, "-m", "rq.cli", "worker", "--worker-class", worker_class, "--quiet"]
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


def spawn_workers(name: str, url: str, count: int, burst: bool = True) -> list[subprocess.Popen[bytes]]:
    """Start ``count`` worker processes that can import whatever this process can.

    Each gets a daemon thread that waits for it, so that a long-lived producer (a web
    server) does not collect ``<defunct>`` children as its burst workers finish.
    """
    procs = [subprocess.Popen(worker_command(name, burst), env=worker_env(url)) for _ in range(count)]
    for proc in procs:
        threading.Thread(target=proc.wait, name=f"reap-{proc.pid}", daemon=True).start()
    return procs


def live_workers(conn: Redis, name: str) -> int:
    """Workers registered on the pending queue (RQ drops a dead worker once its heartbeat lapses)."""
    return int(conn.scard(k.Keys(name).workers))
