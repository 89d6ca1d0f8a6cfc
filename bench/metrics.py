"""python -m bench.metrics: what a metrics scrape costs at 1,000 service queues, old writer and new side by side.

Creates N service queues of one task each on a fresh throwaway Redis, then times,
interleaved (so that a busy machine weighs on both alike), medians of --runs:
reading Redis (``ServiceQ.figures``: one read-only script call per 200 queues), the
text written from the figures (``metrics.render``), the whole scrape
(``metrics.generate_latest``), and the whole scrape through prometheus-client's
families (``make_registry``, how every scrape was written before).  Also reads
Redis' own time for the read script (INFO commandstats), which blocks Redis.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable

from redis import Redis

from rq_serviceq import ServiceQ, metrics
from rq_serviceq.testing import RedisServer


def populate(conn: Redis, n: int) -> None:
    for i in range(n):
        sq = ServiceQ(f"bench-{i:05d}", connection=conn)
        sq.set_worker_config(worker_count=0, auto_start=False)
        sq.push_many([{"i": i}])


def timed(work: Callable[[], object]) -> float:
    started = time.perf_counter()
    work()
    return (time.perf_counter() - started) * 1000


def measure(conn: Redis, runs: int) -> dict[str, float]:
    import prometheus_client

    registry = metrics.make_registry(conn)
    collector = metrics.ServiceQCollector(conn)
    rows = ServiceQ.figures(conn)
    conn.config_resetstat()
    steps: dict[str, Callable[[], object]] = {
        "read_ms": lambda: ServiceQ.figures(conn),
        "write_ms": lambda: metrics.render(rows),
        "scrape_ms": collector.exposition,
        "prometheus_client_scrape_ms": lambda: prometheus_client.generate_latest(registry),
    }
    figures: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(runs):
        for name, work in steps.items():
            figures[name].append(timed(work))
    stats = conn.info("commandstats").get("cmdstat_evalsha", {})
    result = {name: statistics.median(values) for name, values in figures.items()}
    result["ratio"] = result["prometheus_client_scrape_ms"] / result["scrape_ms"]
    result["redis_us_per_script_call"] = float(stats.get("usec_per_call", 0.0))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.metrics", description=__doc__.splitlines()[0])
    parser.add_argument("--queues", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    with RedisServer() as server:
        conn = Redis.from_url(server.url)
        populate(conn, args.queues)
        body = metrics.generate_latest(conn)
        lines = body.count(b"\n")
        print(f"{args.queues:,} queues: {len(body):,} bytes, {lines:,} lines", file=sys.stderr)
        figures = measure(conn, args.runs)
    with open("/proc/loadavg") as loadavg:  # the machine is shared: say how busy it was
        load = loadavg.read().split()[0]
    cells = " | ".join(f"{name} {value:,.3g}" for name, value in figures.items())
    print(f"| {args.queues:,} queues | {cells} | load {load} |")


if __name__ == "__main__":
    main()
