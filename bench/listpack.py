"""python -m bench.listpack: Redis bytes per task with Redis' default ``hash-max-listpack-value`` and a larger one.

A task's job hash holds RQ's ``data`` (the call envelope around the task, 130-odd bytes for the bench's
payload); a value over ``hash-max-listpack-value`` (Redis' default 64) keeps the whole hash in Redis'
hashtable encoding, about twice the bytes of its compact listpack one.  For each setting, a throwaway
``redis-server`` (persistence off): ``push_many`` of ``--tasks`` tasks, then an in-process burst
``ServiceQWorker`` over them; ``used_memory`` deltas per task, queued and after the batch ended (its
report kept), and one job hash's ``MEMORY USAGE`` and encoding.
"""

from __future__ import annotations

import argparse

from redis import Redis

from rq_serviceq import ServiceQ, ServiceQWorker
from rq_serviceq.testing import RedisServer

from . import tasks

PAYLOAD = {"user_id": 12345, "action": "resize", "size": [640, 480], "tag": "bench"}  # the peers' payload


def measure(listpack_value: int | None, n: int) -> dict[str, object]:
    """Bytes per task under ``hash-max-listpack-value`` = ``listpack_value`` (None: Redis' default)."""
    with RedisServer() as server:
        conn = Redis.from_url(server.url)
        if listpack_value is not None:
            conn.config_set("hash-max-listpack-value", listpack_value)
        sq = ServiceQ("benchlistpack", connection=conn, role="producer")
        sq.set_task_function(tasks.sq_noop)
        base = int(conn.info("memory")["used_memory"])
        ids = sq.push_many([PAYLOAD] * n)
        queued = int(conn.info("memory")["used_memory"])
        ServiceQWorker(sq.keys.queue_name, connection=conn).work(burst=True, logging_level="WARNING")
        ended = int(conn.info("memory")["used_memory"])
        key = f"rq:job:{ids[0]}"
        return {
            "setting": conn.config_get("hash-max-listpack-value")["hash-max-listpack-value"],
            "queued": round((queued - base) / n),
            "finished": round((ended - base) / n),
            "hash": conn.memory_usage(key),
            "encoding": bytes(conn.object("encoding", key) or b"").decode(),
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=20_000)
    parser.add_argument("--value", type=int, default=256, help="the larger hash-max-listpack-value to try")
    args = parser.parse_args()
    print("| hash-max-listpack-value | bytes / queued task | bytes / task, push to kept report | job hash | encoding |")
    print("|---:|---:|---:|---:|---|")
    for value in (None, args.value):
        got = measure(value, args.tasks)
        print(f"| {got['setting']} | {got['queued']} | {got['finished']} | {got['hash']} | {got['encoding']} |")


if __name__ == "__main__":
    main()
