"""Profiling targets and a summary of py-spy's stacks, for docs/benchmarks.md's "Where the time goes".

    python -m bench.profiling run sq-worker 20000      # one measured phase on a throwaway Redis
    py-spy record --idle --nonblocking -r 500 --format raw -o sq.txt -- python -m bench.profiling run sq-worker 20000
    python -m bench.profiling summary sq.txt sq-worker   # share of samples per step of the work

Targets (each pre-fills N tasks or jobs first, outside the measured phase):

- ``sq-worker`` / ``sqfork-worker``: ``ServiceQWorker`` / ``ForkingServiceQWorker("x-pending").work(burst=True)``
  in this process over N pre-pushed no-op tasks;
- ``sq-worker-limited``: ``sq-worker`` under a rate limit that never binds (1,000,000 a second): what the
  start budget (``lua/includes/rate.lua``) costs a claim;
- ``rq-worker``: RQ's ``SimpleWorker`` over N pre-filled no-op jobs (JSON serializer);
- ``sq-push``: ``push_many`` of N tasks (after a warm-up push that loads the scripts and opens the batch);
- ``rq-push``: ``enqueue_many`` of N jobs in pipelined chunks of 1,000 (row 2's way).

``run`` prints the wall time, this process' CPU, redis-server's CPU and the busiest
``INFO commandstats`` entries of the measured phase.  ``summary`` keeps the samples
under ``measured`` and gives each the first matching step (``STEPS``), split into
time with a socket call at the top of the stack (waiting for Redis, or sending) and the rest.
"""

from __future__ import annotations

import argparse
import collections
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from redis import Redis
from rq import Queue
from rq.serializers import JSONSerializer
from rq.worker import SimpleWorker

import rq_serviceq
from rq_serviceq import ForkingServiceQWorker, ServiceQ, ServiceQWorker
from rq_serviceq.testing import RedisServer

from . import tasks
from .rows import _task, rq_fill

CLK_TCK = os.sysconf("SC_CLK_TCK")
MARKER = "measured (bench/profiling.py"
SOCKET_LEAVES = ("_read_from_socket", "SocketBuffer.readline", "SocketBuffer.read ", "send_packed_command", "can_read")

_CLAIM, _JOB = ";claim (rq_serviceq/worker/claim.py", ";_job (rq_serviceq/worker/claim.py"
_SETTLE, _LUA = ";settle (rq_serviceq/batch/ledger.py", ";_run (rq_serviceq/store/scripts.py"
# (step, substrings that must all be in the stack; ";" anchors a frame's start); the first match wins.
STEPS: dict[str, list[tuple[str, list[str]]]] = {
    "sq-worker": [
        ("CLAIM: Lua call (send, Redis runs it, read + parse the reply)", [_CLAIM, _LUA]),
        ("CLAIM: job objects, RQ date strings (Job.restore -> strptime)", [_JOB, "str_to_date"]),
        ("CLAIM: job objects, the rest (Job.__init__, Job.restore)", [_JOB]),
        ("CLAIM: the rest (settings from the state hash)", [_CLAIM]),
        ("SETTLE: Lua call", [_SETTLE, _LUA]),
        ("SETTLE: arguments and result rows", [_SETTLE]),
        ("tasks: per-task time limit (signal timer)", [";Runner.run (", ";time_limit ("]),
        ("tasks: the rest (context, task function, verdict)", [";Runner.run ("]),
        ("after SETTLE: per-task report", ["ServiceQWorker._report"]),
        ("batch end: report, EXPIRE of every task", ["ServiceQWorker._finalize"]),
        ("RELEASE (nothing to give back: skipped)", [";release (rq_serviceq/worker/claim.py"]),
        ("RQ loop: set_state", ["set_state"]),
        ("RQ loop: heartbeat, suspension check, maintenance, other", [""]),
    ],
    "sq-worker-limited": [("all", [""])],
    "sqfork-worker": [
        ("fork: os.fork()", ["_in_child (rq_serviceq/worker/run/fork.py)"]),  # os.fork() at 7d1551b
        ("fork: waiting for the work horse (its task, its exit)", [";_in_child (rq_serviceq/worker/run/fork.py"]),
        ("CLAIM", [_CLAIM]),
        ("SETTLE", [_SETTLE]),
        ("other", [""]),
    ],
    "rq-worker": [
        ("dequeue: LMOVE, Job.fetch", ["dequeue_job_and_maintain_ttl"]),
        ("prepare_job_execution: pipeline", ["prepare_job_execution"]),
        ("job and worker heartbeats", ["heartbeat"]),
        ("handle_job_success: pipeline (result XADD, registries, EXPIREs)", ["handle_job_success"]),
        ("Job.perform", ["Job.perform"]),
        ("rest of perform_job / execute_job (set_state, ...)", ["execute_job"]),
        ("RQ loop: suspension check, maintenance, other", [""]),
    ],
    "sq-push": [
        ("JSON-encoding tasks", ["encode_task"]),
        ("task ids (uuid4)", ["uuid4"]),
        ("packing the EVALSHA commands (redis-py)", ["pack_commands"]),
        ("waiting for Redis to run the PUSH scripts", ["Pipeline.execute"]),
        ("other", [""]),
    ],
    "rq-push": [
        ("building Job objects (Job.create, serializer checks)", ["create_job"]),
        ("Job.save into the pipeline (to_dict)", ["_persist_job"]),
        ("packing the pipeline (redis-py)", ["pack_commands"]),
        ("pipeline round trip", ["Pipeline.execute"]),
        ("other", [""]),
    ],
}


def _cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def _service_queue(conn: Redis, n: int) -> ServiceQ:
    sq = ServiceQ("x", connection=conn)
    sq.set_worker_config(auto_start=False)
    sq.set_task_function(tasks.sq_noop)
    if n:
        sq.push_many([_task(i) for i in range(n)])
    return sq


def _prepare(what: str, conn: Redis, n: int) -> Callable[[], Any]:
    queue = Queue("benchrq", connection=conn, serializer=JSONSerializer)
    if what in ("sq-worker", "sqfork-worker", "sq-worker-limited"):
        sq = _service_queue(conn, n)
        if what == "sq-worker-limited":  # a limit that never binds: what checking and spending it costs
            sq.set_worker_config(rate_limit=1_000_000.0)
        cls = ForkingServiceQWorker if what == "sqfork-worker" else ServiceQWorker
        worker = cls("x-pending", connection=conn)
        return lambda: worker.work(burst=True, logging_level="WARNING")
    if what == "rq-worker":
        rq_fill(queue, conn, tasks.noop, n)
        rq_worker = SimpleWorker([queue], connection=conn, serializer=JSONSerializer)
        return lambda: rq_worker.work(burst=True, logging_level="WARNING")
    if what == "sq-push":
        sq = _service_queue(conn, 1000)  # warm: scripts loaded, batch open
        data = [_task(i) for i in range(n)]
        return lambda: sq.push_many(data)
    if what == "rq-push":
        rq_fill(queue, conn, tasks.noop, 1000)
        return lambda: rq_fill(queue, conn, tasks.noop, n)
    raise SystemExit(f"unknown target {what!r}; choose from {', '.join(STEPS)}")


def measured(work: Callable[[], Any]) -> None:
    """The phase `summary` looks at (its frame marks the samples)."""
    work()


def run(what: str, n: int) -> None:
    print(f"rq_serviceq from {rq_serviceq.__file__}", file=sys.stderr)
    with RedisServer() as server:
        conn = Redis.from_url(server.url)
        work = _prepare(what, conn, n)
        conn.config_resetstat()
        assert server.proc is not None
        redis0, cpu0, t0 = _cpu(server.proc.pid), time.process_time(), time.perf_counter()
        measured(work)
        wall = time.perf_counter() - t0
        cpu, redis_cpu = time.process_time() - cpu0, _cpu(server.proc.pid) - redis0
        print(
            f"{what} N={n:,}: {wall:.2f} s, {n / wall:,.0f}/s; this process' CPU {cpu:.2f} s ({cpu / wall:.0%}), "
            f"redis-server CPU {redis_cpu:.2f} s ({redis_cpu / wall:.0%})"
        )
        stats = sorted(conn.info("commandstats").items(), key=lambda kv: -kv[1]["usec"])
        for name, v in stats[:14]:
            print(f"  {name.removeprefix('cmdstat_')}: {v['calls'] / n:.3f}/task, {v['usec_per_call']:.0f} us/call")


def summary(path: str, what: str) -> None:
    steps = STEPS[what]
    share: collections.Counter[str] = collections.Counter()
    on_socket: collections.Counter[str] = collections.Counter()
    total = 0
    for line in Path(path).read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        at = stack.find(MARKER)
        if at < 0:
            continue
        stack, n = stack[at:], int(count)
        total += n
        socket = any(leaf in stack.rsplit(";", 1)[-1] for leaf in SOCKET_LEAVES)
        step = next(name for name, needles in steps if all(x in stack for x in needles))
        share[step] += n
        on_socket[step] += n if socket else 0
    if not total:
        raise SystemExit(f"no samples under {MARKER!r} in {path}")
    print(f"{total} samples; share of the measured phase (of which a socket call is on top)")
    for name, _ in steps:
        if share[name]:
            print(f"{share[name] / total:6.1%} ({on_socket[name] / total:5.1%})  {name}")
    print(f"{sum(on_socket.values()) / total:6.1%} in all with a socket call on top")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.profiling", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p_run = sub.add_parser("run", help="run one target's measured phase")
    p_run.add_argument("what", choices=list(STEPS))
    p_run.add_argument("n", type=int)
    p_sum = sub.add_parser("summary", help="summarise py-spy --format raw output of `run`")
    p_sum.add_argument("path")
    p_sum.add_argument("what", choices=list(STEPS))
    args = parser.parse_args(argv)
    if args.command == "run":
        run(args.what, args.n)
    else:
        summary(args.path, args.what)


if __name__ == "__main__":
    main()
