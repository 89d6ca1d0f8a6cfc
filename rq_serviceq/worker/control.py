"""Control: pause, resume and stop (SET_STATUS, STOP, STOP_SLICE) reach every worker, wherever it runs.

Status changes are atomic in Redis, and claims check the status in the same
script, so an idle worker can never take a task after ``pause()``.  The one
gap is a worker holding tasks it claimed, as a group, just before the pause:
``pause()`` closes it by telling each such worker over RQ's own worker
command channel (``rq:pubsub:<worker>``) and waiting for each to acknowledge
that it will start none of them.  Only then does ``pause()`` return.
"""

from __future__ import annotations

import inspect
import json
import time
from typing import Any

from redis import Redis
from redis.client import PubSubWorkerThread
from rq.command import PUBSUB_CHANNEL_TEMPLATE

from rq_serviceq.batch import ledger
from rq_serviceq.models import Settings
from rq_serviceq.store import keys as k
from rq_serviceq.store import scripts
from rq_serviceq.store.replies import text

PAUSE_COMMAND = "serviceq-pause"
STOP_SLICE_SIZE = 250  # tasks stop() fails per Lua call (about 12 ms of Redis time: bench/stop.py)


# From redis 8.2, PubSubWorkerThread.stop() joins the thread, by default for as long as it takes.
_STOP_JOINS = "timeout" in inspect.signature(PubSubWorkerThread.stop).parameters


def stop_listening(thread: PubSubWorkerThread, timeout: float = 1.0) -> bool:
    """Stop RQ's command-channel thread, waiting for it ``timeout`` at most, as RQ 2.12 means to; True
    when it has ended.

    Why not RQ's ``unsubscribe``: it calls ``stop()`` and then ``join(timeout=1)``, and with redis 8.2
    ``stop()`` itself joins without a bound.  A thread that read the UNSUBSCRIBE reply before the stop
    went back to wait up to 60 s (RQ's ``sleep_time``) for a subscription that never comes, so one
    worker exit in a few took a minute.  A thread still running must keep its pubsub: closing it would
    hand the pool a connection the thread may still read from (it closes the pubsub itself as it ends,
    and, a daemon, dies with the process)."""
    if _STOP_JOINS:
        thread.stop(timeout=timeout)
    else:
        thread.stop()
        thread.join(timeout)
    return not thread.is_alive()


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


def pause(conn: Redis, keys: k.Keys, timeout: float) -> None:
    """SET_STATUS paused, then wait for the workers holding claimed groups to acknowledge (``quiesce``)."""
    change = scripts.set_status(conn, keys, paused=True)
    quiesce(conn, keys, change.pause_gen, timeout)


def resume(conn: Redis, keys: k.Keys) -> None:
    scripts.set_status(conn, keys, paused=False)


def stop(conn: Redis, keys: k.Keys, settings: Settings, timeout: float, finalize: bool) -> str | None:
    """STOP the active batch and fail its tasks that are not running (``ServiceQ.stop``); returns its id.

    ``finalize``: the caller does the batch's end work itself (a producer leaves it to the next worker's
    claim, and waits only for the batch to end)."""
    lease = ledger.finalize_lease(settings) if finalize else 0.0
    stopped = scripts.stop(conn, keys)
    deadline = time.monotonic() + timeout
    quiesce(conn, keys, stopped.pause_gen, timeout)
    batch_id = stopped.batch_id
    if batch_id is None:
        return None
    while not _stopped_batch_ended(conn, keys, settings, batch_id, lease, finalize) and time.monotonic() < deadline:
        time.sleep(0.05)
    return batch_id


def _stopped_batch_ended(
    conn: Redis, keys: k.Keys, settings: Settings, batch_id: str, lease: float, finalize: bool
) -> bool:
    """One pass of STOP_SLICE over the stopped batch; True once the batch has finished.

    Passes repeat while running tasks finish, so that a task whose worker died
    meanwhile is failed when its lease runs out instead of waiting for a worker.
    """
    ending, cursor = scripts.Ending.of("", settings, lease), "q"
    while cursor != "done":
        piece = scripts.stop_slice(conn, keys, ending, batch_id, cursor, STOP_SLICE_SIZE)
        cursor = piece.cursor
        if piece.ended and finalize:
            ledger.finalize(conn, keys, settings, piece.ended)
    return bool(conn.hexists(keys.batch(batch_id), "finalized" if finalize else "end_time"))
