"""Control: pause, resume and stop reach every worker, wherever it runs.

Status changes are atomic in Redis, and claims check the status in the same
script, so an idle worker can never take a task after ``pause()``.  The one
gap is a worker holding tasks it claimed, as a group, just before the pause:
``pause()`` closes it by telling each such worker over RQ's own worker
command channel (``rq:pubsub:<worker>``) and waiting for each to acknowledge
that it will start none of them.  Only then does ``pause()`` return.
"""

from __future__ import annotations

import json
import time
from typing import Any

from redis import Redis
from rq.command import PUBSUB_CHANNEL_TEMPLATE

from rq_serviceq.store import keys as k
from rq_serviceq.store.state import text

PAUSE_COMMAND = "serviceq-pause"


def parse(message: dict[str, Any]) -> dict[str, Any]:
    try:
        payload = json.loads(message["data"])
    except (TypeError, ValueError, KeyError):
        return {}
    return payload if isinstance(payload, dict) else {}


def acknowledge(conn: Redis, keys: k.Keys, gen: int, worker_name: str) -> None:
    with conn.pipeline(transaction=False) as pipe:
        pipe.sadd(keys.acks(gen), worker_name)
        pipe.expire(keys.acks(gen), 300)
        pipe.execute()


def lease_holders(conn: Redis, keys: k.Keys) -> set[str]:
    """Workers holding claimed tasks right now."""
    ids = [text(x) for x in conn.zrange(keys.leases, 0, -1)]
    with conn.pipeline(transaction=False) as pipe:
        for task_id in ids:
            pipe.hget(k.job_key(task_id), "worker_name")
        names = pipe.execute()
    return {text(n) for n in names if n}


def quiesce(conn: Redis, keys: k.Keys, gen: int, timeout: float) -> set[str]:
    """Tell workers holding claimed tasks of pause/stop generation ``gen``; wait for them to acknowledge.

    Returns the workers that did not acknowledge in time.
    """
    payload = json.dumps({"command": PAUSE_COMMAND, "gen": gen})
    # PUBLISH counts listeners: a worker that is gone (its tasks' leases will run out) is not waited for.
    holders = {name for name in lease_holders(conn, keys) if conn.publish(PUBSUB_CHANNEL_TEMPLATE % name, payload)}
    deadline = time.monotonic() + timeout
    missing = holders
    while missing and time.monotonic() < deadline:
        time.sleep(0.005)
        missing = holders - {text(n) for n in conn.smembers(keys.acks(gen))}
    return missing
