"""python -m bench.stop: stop() on a big batch, and the longest Redis call it makes.

Pushes N tasks (no workers), then calls ``stop()`` and reads Redis' SLOWLOG:
the longest single command (every STOP_SLICE is one EVALSHA) says for how long
Redis was blocked at a stretch.  Against a fresh throwaway Redis of its own.
"""

from __future__ import annotations

import argparse
import sys
import time

from redis import Redis

from rq_serviceq import ServiceQ
from rq_serviceq.testing import RedisServer


def measure(url: str, n: int) -> dict[str, float]:
    conn = Redis.from_url(url)
    sq = ServiceQ("bench-stop", connection=conn)
    sq.set_worker_config(worker_count=0, auto_start=False)
    sq.set_task_function("bench.tasks.sq_noop")
    started = time.perf_counter()
    sq.push_many({"i": i} for i in range(n))
    pushed = time.perf_counter() - started
    conn.config_set("slowlog-log-slower-than", 1000)  # every call over 1 ms
    conn.config_set("slowlog-max-len", 100_000)
    conn.slowlog_reset()
    started = time.perf_counter()
    batch_id = sq.stop(timeout=600)
    stopped = time.perf_counter() - started
    report = sq.get_batch_report(batch_id)
    assert report["status"] == "STOPPED" and report["total_failed"] == n, report["status"]
    entries = conn.slowlog_get(100_000)
    calls = [entry["duration"] / 1000 for entry in entries]
    for entry in sorted(entries, key=lambda e: -e["duration"])[:3]:  # what the longest calls were
        print(f"{entry['duration'] / 1000:.1f} ms: {entry['command'][:70]!r}", file=sys.stderr)
    return {
        "push_s": pushed,
        "stop_s": stopped,
        "longest_call_ms": max(calls, default=0.0),
        "calls_over_1ms": len(calls),
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.stop", description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=1_000_000)
    args = parser.parse_args()
    with RedisServer() as server:
        figures = measure(server.url, args.tasks)
    print(f"| {args.tasks:,} queued tasks | " + " | ".join(f"{k} {v:,.3g}" for k, v in figures.items()) + " |")


if __name__ == "__main__":
    main()
