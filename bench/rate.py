"""python -m bench.rate: the rate limit of issue 18, measured as its acceptance run asks.

A service queue with ``rate_limit`` R (default 40) and the default ``rate_burst`` (one second's worth),
N no-op tasks (default 1,000) that note their start on Redis' clock, worked by ``--supervisors``
``rq-serviceq worker`` supervisors of ``--workers`` workers each (default 2 x 3), against a throwaway
Redis of its own.  It prints the most starts any one-second window held (the limit allows R + burst),
the rate after the first burst (R within 5% is the target) and the batch's wall time.

What the budget costs a claim is ``python -m bench.profiling run sq-worker-limited 20000`` beside
``... run sq-worker 20000`` (a limit that never binds, against none).
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time

from redis import Redis

from rq_serviceq import ServiceQ
from rq_serviceq.testing import RedisServer

from . import tasks
from .harness import PYTHONPATH, SQ_ROOT


def busiest_second(times: list[float]) -> int:
    """The most starts any one-second window holds (windows beginning at each start)."""
    first, most = 0, 0
    for i, t in enumerate(times):
        while times[first] <= t - 1.0:
            first += 1
        most = max(most, i - first + 1)
    return most


def run(rate: float, n: int, supervisors: int, workers: int) -> dict[str, float]:
    with RedisServer() as server:
        conn = Redis.from_url(server.url)
        sq = ServiceQ("benchrate", connection=conn)
        sq.set_worker_config(rate_limit=rate, worker_count=supervisors * workers, auto_start=False)
        sq.set_task_function(tasks.sq_record_start)
        sq.push_many([{"i": i} for i in range(n)])
        env = dict(os.environ, RQ_REDIS_URL=server.url, PYTHONPATH=os.pathsep.join(PYTHONPATH))
        cmd = [sys.executable, "-m", "rq_serviceq", "worker", "benchrate", "--interval", "0.2", "-q"]
        procs = [subprocess.Popen(cmd, env=env, cwd=SQ_ROOT, start_new_session=True) for _ in range(supervisors)]
        started = time.perf_counter()
        try:
            report = sq.wait_for_batch(timeout=max(120.0, 3 * n / rate))
        finally:
            for proc in procs:
                os.killpg(proc.pid, signal.SIGTERM)
            for proc in procs:
                proc.wait(30)
        times = sorted(float(x) for x in conn.lrange(tasks.STARTS_KEY, 0, -1))
    burst = max(1, int(-(-rate // 1)))
    return {
        "tasks": report["total_success"],
        "busiest_second": busiest_second(times),
        "allowed": rate + burst,
        "steady_rate": (len(times) - burst) / (times[-1] - times[0]),
        "wall_seconds": time.perf_counter() - started,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=40.0)
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--supervisors", type=int, default=2)
    parser.add_argument("--workers", type=int, default=3)
    args = parser.parse_args()
    got = run(args.rate, args.tasks, args.supervisors, args.workers)
    print(f"rate_limit {args.rate:g}/s, {args.supervisors} supervisors x {args.workers} workers, {got['tasks']} tasks")
    print(f"  busiest one-second window: {got['busiest_second']} starts (allowed {got['allowed']:g})")
    print(f"  after the first burst: {got['steady_rate']:.2f} starts/s ({got['steady_rate'] / args.rate - 1:+.1%})")
    print(f"  batch wall time, supervisors started to batch end: {got['wall_seconds']:.1f} s")


if __name__ == "__main__":
    main()
