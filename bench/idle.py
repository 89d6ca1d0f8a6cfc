"""python -m bench.idle: what an idle worker costs Redis while a big batch waits to retry.

Pushes N tasks whose first two attempts ask for a retry (the second one 600 s
later), runs them through one long-running ``rq worker`` until every task waits
in the retry set, then reads redis-server's and the worker's CPU and every
command Redis ran over a window with nothing due.  What is left then is the
worker waking every ``max_wait`` (5 s) and the audit of the batch's open tasks
(``lua/reconcile.lua``), whose passes read every open task.  Against a fresh
throwaway Redis of its own.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

from redis import Redis

from rq_serviceq import ServiceQ
from rq_serviceq.testing import RedisServer

from . import tasks
from .harness import wait_until
from .profiling import _cpu


def measure(server: RedisServer, n: int, window: float) -> dict[str, float]:
    conn = Redis.from_url(server.url)
    sq = ServiceQ("idle", connection=conn)
    sq.set_worker_config(auto_start=False, resting_period=0)
    sq.set_retry_config(retry_limit=2, loop_backoff=600)
    sq.set_task_function(tasks.retry_wait)
    env = dict(os.environ, BENCH_REDIS_URL=server.url)
    cmd = [sys.executable, "-m", "rq.cli", "worker", "--worker-class", "rq_serviceq.ServiceQWorker", "--quiet"]
    worker = subprocess.Popen([*cmd, "--url", server.url, "idle-pending"], env=env)
    try:
        sq.push_many([{"i": i} for i in range(n)])
        waiting = f"{n} tasks waiting to retry"
        wait_until(lambda: sq.get_status_info()["waiting_retries"] >= n, 60 + n / 1000, waiting, interval=0.5)
        time.sleep(1.0)  # the last settle's wake-ups
        assert server.proc is not None
        conn.config_resetstat()
        redis0, worker0 = _cpu(server.proc.pid), _cpu(worker.pid)
        time.sleep(window)
        redis_cpu, worker_cpu = _cpu(server.proc.pid) - redis0, _cpu(worker.pid) - worker0
        commands = sum(int(v["calls"]) for v in conn.info("commandstats").values())
    finally:
        worker.terminate()
        worker.wait(30)
    return {"redis_cpu_share": redis_cpu / window, "worker_cpu_share": worker_cpu / window,
            "commands_per_s": commands / window}  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.idle", description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=50_000, help="tasks waiting to retry (default 50,000)")
    parser.add_argument("--window", type=float, default=20.0, help="seconds measured while idle (default 20)")
    args = parser.parse_args(argv)
    with RedisServer() as server:
        got = measure(server, args.tasks, args.window)
    print(
        f"{args.tasks:,} tasks waiting to retry, {args.window:g} s idle: redis-server "
        f"{got['redis_cpu_share']:.1%} of a core, the worker {got['worker_cpu_share']:.1%}, "
        f"{got['commands_per_s']:,.0f} Redis commands/s"
    )


if __name__ == "__main__":
    main()
