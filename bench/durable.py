"""python -m bench.durable: what ``set_durability(replicas=1)`` costs (issue 19).

A primary and one replica on loopback (``rq_serviceq.testing.SentinelCluster``, persistence off); for
``replicas`` 0 and 1, alternating for ``--rounds`` rounds: ``push_many`` of ``--push`` tasks, then an
in-process ``ServiceQWorker`` over ``--work`` no-op tasks.  Prints the medians and their ratio.
"""

from __future__ import annotations

import argparse
import statistics
import time

from redis import Redis

from rq_serviceq import ServiceQ, ServiceQWorker
from rq_serviceq.testing import SentinelCluster

from . import tasks


def _round(conn: Redis, replicas: int, push: int, work: int) -> tuple[float, float]:
    conn.flushdb()
    sq = ServiceQ("benchdurable", connection=conn)
    sq.set_worker_config(worker_count=0, auto_start=False)
    sq.set_durability(replicas=replicas, timeout=5.0)
    sq.set_task_function(tasks.sq_noop)
    started = time.perf_counter()
    sq.push_many([{"i": i} for i in range(push)])
    pushed = push / (time.perf_counter() - started)
    conn.flushdb()
    sq = ServiceQ("benchdurable", connection=conn)
    sq.set_worker_config(worker_count=0, auto_start=False)
    sq.set_durability(replicas=replicas, timeout=5.0)
    sq.set_task_function(tasks.sq_noop)
    sq.push_many([{"i": i} for i in range(work)])
    started = time.perf_counter()
    ServiceQWorker("benchdurable-pending", connection=conn).work(burst=True, logging_level="WARNING")
    return pushed, work / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--push", type=int, default=50_000)
    parser.add_argument("--work", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    cluster = SentinelCluster().start()
    try:
        conn = Redis.from_url(cluster.primary.url)
        runs: dict[int, list[tuple[float, float]]] = {0: [], 1: []}
        for _ in range(args.rounds):
            for replicas in (0, 1):
                runs[replicas].append(_round(conn, replicas, args.push, args.work))
    finally:
        cluster.stop()
    push = {r: statistics.median(p for p, _ in got) for r, got in runs.items()}
    work = {r: statistics.median(w for _, w in got) for r, got in runs.items()}
    print(f"push_many of {args.push:,}: {push[0]:,.0f}/s without, {push[1]:,.0f}/s with replicas=1 "
          f"({push[1] / push[0]:.2f}x)")  # fmt: skip
    print(f"no-op worker over {args.work:,}: {work[0]:,.0f}/s without, {work[1]:,.0f}/s with replicas=1 "
          f"({work[1] / work[0]:.2f}x)")  # fmt: skip
    print(f"medians of {args.rounds} alternating rounds; a primary and one replica on loopback")


if __name__ == "__main__":
    main()
