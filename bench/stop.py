"""python -m bench.stop: stop() on a big batch, and how long it blocks Redis at a stretch.

Pushes N tasks (no workers), then calls ``stop()``, timing every STOP_SLICE call
from the client (an upper bound on how long Redis ran it: each is one EVALSHA,
and Redis runs nothing else meanwhile) and reading Redis' SLOWLOG for anything
else over 10 ms.  On a shared machine a single call can be descheduled by the
OS, so the median and p99 say more than the maximum.  Against a fresh throwaway
Redis of its own.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from typing import Any

from redis import Redis

from rq_serviceq import ServiceQ
from rq_serviceq.store import scripts
from rq_serviceq.testing import RedisServer


def _timed_slices(durations: list[float]) -> Any:
    original = scripts.stop_slice

    def timed(*args: Any, **kwargs: Any) -> scripts.StopSlice:
        started = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            durations.append((time.perf_counter() - started) * 1000)

    return timed


def measure(url: str, n: int) -> dict[str, float]:
    conn = Redis.from_url(url)
    sq = ServiceQ("bench-stop", connection=conn)
    sq.set_worker_config(worker_count=0, auto_start=False)
    sq.set_task_function("bench.tasks.sq_noop")
    started = time.perf_counter()
    sq.push_many({"i": i} for i in range(n))
    pushed = time.perf_counter() - started
    conn.config_set("slowlog-log-slower-than", 10_000)  # every call over 10 ms
    conn.slowlog_reset()
    durations: list[float] = []
    scripts.stop_slice = _timed_slices(durations)
    started = time.perf_counter()
    batch_id = sq.stop(timeout=600)
    stopped = time.perf_counter() - started
    report = sq.get_batch_report(batch_id)
    assert report["status"] == "STOPPED" and report["total_failed"] == n, report["status"]
    for entry in sorted(conn.slowlog_get(100), key=lambda e: -e["duration"])[:3]:
        print(f"slowlog {entry['duration'] / 1000:.1f} ms: {entry['command'][:60]!r}", file=sys.stderr)
    quantiles = statistics.quantiles(durations, n=100)
    return {
        "push_s": pushed,
        "stop_s": stopped,
        "slices": len(durations),
        "slice_p50_ms": quantiles[49],
        "slice_p99_ms": quantiles[98],
        "slice_max_ms": max(durations),
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.stop", description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=1_000_000)
    args = parser.parse_args()
    with RedisServer() as server:
        figures = measure(server.url, args.tasks)
    with open("/proc/loadavg") as loadavg:  # the machine is shared: say how busy it was
        load = loadavg.read().split()[0]
    cells = " | ".join(f"{k} {v:,.3g}" for k, v in figures.items())
    print(f"| {args.tasks:,} queued tasks | {cells} | load {load} |")


if __name__ == "__main__":
    main()
