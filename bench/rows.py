"""The rows of the table: each function runs one repetition and returns {metric: (plain RQ, rq-serviceq)}.

A value of None means "no equivalent" (printed n/a).  Sizes are the brief's,
times ``Bench.scale``; timings of processing come from the jobs' own
``ended_at`` (from the first end to the last) so that process start-up is left out.
"""

from __future__ import annotations

import json
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from redis import Redis
from rq import Queue, Retry
from rq.serializers import JSONSerializer
from rq.utils import utcparse
from rq.worker import SimpleWorker

from rq_serviceq import ServiceQWorker

from . import tasks
from .harness import (
    RQ_QUEUE,
    SQ_NAME,
    Bench,
    command_calls,
    counting_redis,
    cpu_seconds,
    job_span,
    log,
    percentile,
    throughput,
    vm_hwm_mb,
    wait_until,
)
from .latency_proxy import LatencyProxy

Result = dict[str, tuple[float | None, float | None]]
CHUNK = 1000


@dataclass(frozen=True)
class Row:
    name: str
    run: Callable[[Bench], Result]
    metrics: list[tuple[str, str]]  # (key, label) in table order
    default: bool = True


# --- helpers ------------------------------------------------------------------------------
def _task(i: int) -> dict[str, Any]:
    return {"i": i, "to": f"+91{i:010d}", "text": "hello"}


def rq_fill(queue: Queue, conn: Redis, func: Callable[..., Any], n: int, **prepare: Any) -> list[str]:
    """enqueue_many in pipelined chunks of 1,000; returns the job ids."""
    ids: list[str] = []
    for start in range(0, n, CHUNK):
        datas = [Queue.prepare_data(func, args=(_task(i),), **prepare) for i in range(start, min(n, start + CHUNK))]
        with conn.pipeline() as pipe:
            jobs = queue.enqueue_many(datas, pipeline=pipe)
            pipe.execute()
        ids += [job.id for job in jobs]
    return ids


def _check_batch(b: Bench, sq: Any, n: int, timeout: float = 60.0) -> dict[str, Any]:
    report: dict[str, Any] = sq.wait_for_batch(timeout=timeout)
    done = report["total_success"] + report["total_failed"]
    if done != n or report["total_pending"]:
        b.warn(f"batch report counts {done} settled, {report['total_pending']} pending, expected {n} settled")
    return report


def _process(
    b: Bench, system: str, n: int, workers: int, rq_func: Any, sq_func: Any, url: str | None = None
) -> tuple[float, float]:
    """Pre-fill n jobs, run `workers` burst worker processes to the end: (jobs/s from job hashes, wall s)."""
    b.fresh()
    if system == "rq":
        ids = rq_fill(b.rq_queue(), b.conn, rq_func, n)
        t0 = time.monotonic()
        procs = b.spawn_rq(workers, url=url)
    else:
        sq = b.service_queue()
        sq.set_task_function(sq_func)
        ids = sq.push_many([_task(i) for i in range(n)])
        t0 = time.monotonic()
        procs = b.spawn_sq(workers, url=url)
    b.wait_exit(procs, timeout=max(120.0, n / 2))
    wall = time.monotonic() - t0
    if system == "sq":
        _check_batch(b, sq, n, timeout=10)
    else:
        left = b.rq_queue().count
        if left:
            b.warn(f"RQ queue still holds {left} jobs after burst workers exited")
    return throughput(b.conn, ids, b, wall), wall


# --- 1. push one at a time ----------------------------------------------------------------
def push_one(b: Bench, conn: Redis | None = None, n: int | None = None) -> tuple[float, float]:
    conn = conn or b.conn
    n = n or b.n(2000)
    tasks_ = [_task(i) for i in range(n)]
    b.fresh()
    queue = b.rq_queue(conn)
    t0 = time.perf_counter()
    for t in tasks_:
        queue.enqueue(tasks.noop, t)
    rq_rate = n / (time.perf_counter() - t0)
    b.fresh()
    sq = b.service_queue(conn)
    sq.set_task_function(tasks.sq_noop)
    t0 = time.perf_counter()
    for t in tasks_:
        sq.push(t)
    sq_rate = n / (time.perf_counter() - t0)
    return rq_rate, sq_rate


def row_push(b: Bench) -> Result:
    return {"push": push_one(b)}


# --- 2. bulk push -------------------------------------------------------------------------
def push_bulk(b: Bench, conn: Redis | None = None, n: int | None = None) -> tuple[float, float]:
    conn = conn or b.conn
    n = n or b.n(20000)
    b.fresh()
    queue = b.rq_queue(conn)
    t0 = time.perf_counter()
    rq_fill(queue, conn, tasks.noop, n)
    rq_rate = n / (time.perf_counter() - t0)
    b.fresh()
    sq = b.service_queue(conn)
    sq.set_task_function(tasks.sq_noop)
    tasks_ = [_task(i) for i in range(n)]
    t0 = time.perf_counter()
    sq.push_many(tasks_)
    sq_rate = n / (time.perf_counter() - t0)
    return rq_rate, sq_rate


def row_bulk(b: Bench) -> Result:
    return {"bulk": push_bulk(b)}


# --- 3. processing no-op tasks ------------------------------------------------------------
def row_noop(b: Bench) -> Result:
    n = b.n(3000, 10)
    out: Result = {}
    for workers in (1, 2):
        rq_rate, rq_wall = _process(b, "rq", n, workers, tasks.noop, tasks.sq_noop)
        sq_rate, sq_wall = _process(b, "sq", n, workers, tasks.noop, tasks.sq_noop)
        out[f"noop{workers}"] = (rq_rate, sq_rate)
        out[f"noop{workers}_wall"] = (rq_wall, sq_wall)
    return out


# --- 4. processing 10 ms tasks ------------------------------------------------------------
def row_sleep(b: Bench) -> Result:
    n = b.n(600, 10)
    rq_rate, _ = _process(b, "rq", n, 1, tasks.sleep10, tasks.sq_sleep10)
    sq_rate, _ = _process(b, "sq", n, 1, tasks.sleep10, tasks.sq_sleep10)
    return {"sleep": (rq_rate, sq_rate)}


# --- 5. Redis 10 ms away --------------------------------------------------------------------
def row_proxy(b: Bench) -> Result:
    with LatencyProxy(b.port, delay=0.005) as proxy:
        far = Redis.from_url(proxy.url)
        rtts = []
        for _ in range(5):
            t0 = time.perf_counter()
            far.ping()
            rtts.append(time.perf_counter() - t0)
        rtt_ms = 1000 * sorted(rtts)[len(rtts) // 2]
        log(f"  PING through the proxy: {rtt_ms:.1f} ms")
        push = push_one(b, far, b.n(200))
        bulk = push_bulk(b, far, b.n(5000))
        rq_rate, _ = _process(b, "rq", b.n(60, 3), 1, tasks.noop, tasks.sq_noop, url=proxy.url)
        sq_rate, _ = _process(b, "sq", b.n(300, 3), 1, tasks.noop, tasks.sq_noop, url=proxy.url)
        far.close()
    return {"far_rtt": (rtt_ms, rtt_ms), "far_push": push, "far_bulk": bulk, "far_noop": (rq_rate, sq_rate)}


# --- 6. round trips and commands per task ----------------------------------------------------
def _in_process(work: Callable[[], Any]) -> None:
    """Run an RQ worker's work() here, then put back the signal handlers it installs."""
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        work()
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)


def _count(b: Bench, n: int, make_worker: Callable[[Redis], Any]) -> tuple[float, float, dict[str, int]]:
    conn, counter = counting_redis(b.url)
    conn.ping()
    worker = make_worker(conn)
    before = command_calls(b.conn)
    counter[0] = 0
    _in_process(lambda: worker.work(burst=True, logging_level="WARNING"))
    calls = counter[0]
    after = command_calls(b.conn)
    delta = {k: after.get(k, 0) - before.get(k, 0) for k in after}
    delta["info"] = delta.get("info", 0) - 1  # our own INFO commandstats
    delta = {k: v for k, v in delta.items() if v > 0}
    conn.close()
    return calls / n, sum(delta.values()) / n, delta


def row_roundtrips(b: Bench) -> Result:
    n = b.n(500, 10)
    b.fresh()
    rq_fill(b.rq_queue(), b.conn, tasks.noop, n)
    rq_calls, rq_cmds, rq_delta = _count(
        b,
        n,
        lambda c: SimpleWorker(
            [Queue(RQ_QUEUE, connection=c, serializer=JSONSerializer)], connection=c, serializer=JSONSerializer
        ),
    )
    b.fresh()
    sq = b.service_queue()
    sq.set_task_function(tasks.sq_noop)
    sq.push_many([_task(i) for i in range(n)])
    sq_calls, sq_cmds, sq_delta = _count(b, n, lambda c: ServiceQWorker(f"{SQ_NAME}-pending", connection=c))
    _check_batch(b, sq, n, timeout=10)
    top = 8
    log(f"  RQ commands/task: {_top(rq_delta, n, top)}")
    log(f"  rq-serviceq commands/task: {_top(sq_delta, n, top)}")
    return {"calls": (rq_calls, sq_calls), "commands": (rq_cmds, sq_cmds)}


def _top(delta: dict[str, int], n: int, top: int) -> str:
    items = sorted(delta.items(), key=lambda kv: -kv[1])[:top]
    return ", ".join(f"{k} {v / n:.2f}" for k, v in items)


# --- 7. batch-end latency --------------------------------------------------------------------
def row_batch_end(b: Bench) -> Result:
    batches, size = b.n(20, 3), b.n(50, 5)
    b.fresh()
    sq = b.service_queue()
    sq.set_task_function(tasks.sq_noop)
    sq.set_batch_end_callback(tasks.record_batch_end)
    procs = b.spawn_sq(2, burst=False)
    try:
        b.wait_registered(f"{SQ_NAME}-pending", 2)
        sq.push_many([_task(i) for i in range(2)])  # warm-up batch: imports done, connections open
        _check_batch(b, sq, 2)
        latencies = []
        for _ in range(batches):
            ids = sq.push_many([_task(i) for i in range(size)])
            report = _check_batch(b, sq, size)
            started = b.conn.hget(tasks.BATCH_END_KEY, report["batch_id"])
            if started is None:
                b.warn(f"batch-end callback of batch {report['batch_id']} left no record")
                continue
            with b.conn.pipeline(transaction=False) as pipe:
                for task_id in ids:
                    pipe.hget(f"rq:job:{task_id}", "ended_at")  # on Redis' clock, as the callback's record is
                lasts = [utcparse(x.decode()).timestamp() for x in pipe.execute() if x]
            latencies.append(float(started) - max(lasts))
    finally:
        b.stop(procs)
    b.scan_logs(procs)
    ms = [1000 * x for x in latencies]
    return {"batch_end_p50": (None, percentile(ms, 50)), "batch_end_p99": (None, percentile(ms, 99))}


# --- 8. retry lateness -----------------------------------------------------------------------
def row_retry(b: Bench) -> Result:
    n = b.n(200, 4)
    b.fresh()
    sq = b.service_queue(resting_period=0.3)
    sq.set_retry_config(retry_limit=1, loop_backoff=0)
    sq.set_task_function(tasks.retry_once)
    procs = b.spawn_sq(2, burst=False)
    try:
        b.wait_registered(f"{SQ_NAME}-pending", 2)
        sq.push_many([_task(i) for i in range(n)])
        _check_batch(b, sq, n, timeout=120 + n * 0.5)
    finally:
        b.stop(procs)
    b.scan_logs(procs)
    late = [1000 * json.loads(x) for x in b.conn.lrange(tasks.RETRY_LATE_KEY, 0, -1)]
    if len(late) != n:
        b.warn(f"{len(late)} retry attempts recorded, expected {n}")
    if late and min(late) < 0:
        b.warn(f"a retry started {-min(late):.1f} ms before it was due")
    return {"retry_p50": (None, percentile(late, 50)), "retry_p99": (None, percentile(late, 99))}


# --- 9. CPU while only retries wait ------------------------------------------------------------
def _idle_window(b: Bench, pid: int, attempts: int, window: float, wait: float) -> tuple[float, float]:
    wait_until(lambda: int(b.conn.get(tasks.ATTEMPTS_KEY) or 0) >= attempts, 60 + wait, f"{attempts} attempts")
    time.sleep(0.3)  # let the last outcome be recorded
    if window > wait - 0.5:
        b.warn(f"measuring window {window:g} s is not well inside the {wait:g} s retry wait")
    cpu0 = cpu_seconds(pid)
    cmds0 = int(b.info("stats")["total_commands_processed"])
    time.sleep(window)
    cmds1 = int(b.info("stats")["total_commands_processed"])
    cpu1 = cpu_seconds(pid)
    seen = int(b.conn.get(tasks.ATTEMPTS_KEY) or 0)
    if seen != attempts:
        b.warn(f"{seen - attempts} attempts ran inside the idle window (a retry fell due early?)")
    return cpu1 - cpu0, cmds1 - cmds0 - 1  # minus our first INFO


def row_idle_cpu(b: Bench) -> Result:
    n = b.n(20, 2)
    wait = max(2.0, 10.0 * b.scale)
    window = max(1.0, 5.0 * b.scale)
    # RQ: Retry(max=2, interval=[0, wait]) - retried at once, then scheduled `wait` s later (needs the scheduler).
    b.fresh()
    queue = b.rq_queue()
    for i in range(n):
        queue.enqueue(tasks.rq_retry_wait, _task(i), retry=Retry(max=2, interval=[0, round(wait)]))
    procs = b.spawn_rq(1, burst=False, scheduler=True)
    try:
        rq_cpu, rq_cmds = _idle_window(b, procs[0].pid, 2 * n, window, wait)
    finally:
        b.stop(procs)
    # rq-serviceq: retry_limit 2, resting 0, loop_backoff `wait` - retry 1 at once, retry 2 `wait` s later.
    b.fresh()
    sq = b.service_queue(resting_period=0)
    sq.set_retry_config(retry_limit=2, loop_backoff=wait)
    sq.set_task_function(tasks.retry_wait)
    procs = b.spawn_sq(1, burst=False)
    try:
        sq.push_many([_task(i) for i in range(n)])
        sq_cpu, sq_cmds = _idle_window(b, procs[0].pid, 2 * n, window, wait)
    finally:
        b.stop(procs)
    b.scan_logs(procs)
    return {"idle_cpu": (rq_cpu, sq_cpu), "idle_cmds": (rq_cmds, sq_cmds)}


# --- 10. Redis memory per job ------------------------------------------------------------------
def row_memory(b: Bench) -> Result:
    n = b.n(20000, 10)
    b.fresh()
    base = b.used_memory()
    ids = rq_fill(b.rq_queue(), b.conn, tasks.noop, n)
    rq_pending = (b.used_memory() - base) / n
    procs = b.spawn_rq(2)
    b.wait_exit(procs, timeout=max(120.0, n / 2))
    rq_done = (b.used_memory() - base) / n
    _, done = job_span(b.conn, ids)
    if done != n:
        b.warn(f"RQ finished {done} of {n} jobs")
    b.fresh()
    sq = b.service_queue()
    sq.set_task_function(tasks.sq_noop)
    base = b.used_memory()
    sq.push_many([_task(i) for i in range(n)])
    sq_pending = (b.used_memory() - base) / n
    procs = b.spawn_sq(2)
    b.wait_exit(procs, timeout=max(120.0, n / 2))
    _check_batch(b, sq, n, timeout=30)
    sq_done = (b.used_memory() - base) / n
    return {"mem_pending": (rq_pending, sq_pending), "mem_finished": (rq_done, sq_done)}


# --- 11. a million tasks (--million) -----------------------------------------------------------
def row_million(b: Bench) -> Result:
    n = b.n(1_000_000, 100)
    b.fresh()
    log(f"  RQ enqueue_many of {n:,} jobs")
    t0 = time.perf_counter()
    rq_fill(b.rq_queue(), b.conn, tasks.noop, n)
    rq_push = time.perf_counter() - t0
    b.fresh()
    # The campaign's Redis is capped as an ordinary one would be (issue 17: a million tasks, default
    # settings, in maxmemory 1.5gb); its peak is sampled while the batch runs.
    b.conn.config_set("maxmemory", str(MILLION_MAXMEMORY * n // 1_000_000))
    peak_memory = _MemoryPeak(b.conn)
    sq = b.service_queue()
    sq.set_task_function(tasks.sq_noop)
    sq.set_batch_end_callback(tasks.record_batch_end)
    log(f"  push_many of {n:,} tasks")
    t0 = time.perf_counter()
    sq.push_many(_task(i) for i in range(n))
    sq_push = time.perf_counter() - t0
    mem = (b.used_memory()) / n
    log(f"  pushed in {sq_push:.1f} s; Redis used_memory {mem:.0f} B/task; starting 2 workers")
    spawn_at = b.redis_time()
    t_spawn = time.perf_counter()
    procs = b.spawn_sq(2, burst=False)
    try:
        report = sq.wait_for_batch(timeout=max(600.0, n / 50))
        waited = time.perf_counter() - t_spawn
        hwm = [vm_hwm_mb(p.pid) for p in procs]
    finally:
        b.stop(procs)
        peak_memory.stop()
        b.conn.config_set("maxmemory", "0")
    b.scan_logs(procs)
    settled = report["total_success"] + report["total_failed"]
    if settled != n:
        b.warn(f"million batch settled {settled} of {n}")
    processing = (report["end_time"] or float("nan")) - spawn_at
    peak = max((h for h in hwm if h is not None), default=float("nan"))
    return {
        "m_push": (rq_push, sq_push),
        "m_process": (None, processing),
        "m_wait": (None, waited),
        "m_total": (None, sq_push + waited),
        "m_rss": (None, peak),
        "m_redis": (None, peak_memory.peak / 2**20),
    }


MILLION_MAXMEMORY = 1536 * 2**20  # 1.5 GB for a million tasks, scaled with --scale


class _MemoryPeak:
    """Redis' used_memory, its highest reading every 0.2 s from a thread of its own connection."""

    def __init__(self, conn: Redis) -> None:
        self._conn = Redis(connection_pool=conn.connection_pool)
        self.peak = 0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._done.wait(0.2):
            self.peak = max(self.peak, int(self._conn.info("memory")["used_memory"]))

    def stop(self) -> None:
        self._done.set()
        self._thread.join()


ROWS: list[Row] = [
    Row("push", row_push, [("push", "1. push one at a time, N=<2000> (jobs/s)")]),
    Row("bulk", row_bulk, [("bulk", "2. bulk push, chunks of 1000, N=<20000> (jobs/s)")]),
    Row(
        "noop",
        row_noop,
        [
            ("noop1", "3. no-op tasks, 1 worker process, N=<3000:10> (jobs/s)"),
            ("noop1_wall", "3. ... 1 worker, wall time incl. start-up (s)"),
            ("noop2", "3. no-op tasks, 2 worker processes, N=<3000:10> (jobs/s)"),
            ("noop2_wall", "3. ... 2 workers, wall time incl. start-up (s)"),
        ],
    ),
    Row("sleep", row_sleep, [("sleep", "4. 10 ms tasks, 1 worker process, N=<600:10> (jobs/s)")]),
    Row(
        "proxy",
        row_proxy,
        [
            ("far_rtt", "5. Redis via 5+5 ms proxy: measured PING (ms)"),
            ("far_push", "5. ... push one at a time, N=<200> (jobs/s)"),
            ("far_bulk", "5. ... bulk push, N=<5000> (jobs/s)"),
            ("far_noop", "5. ... no-op tasks, 1 worker, N=<60:3> RQ / <300:3> ours (jobs/s)"),
        ],
    ),
    Row(
        "roundtrips",
        row_roundtrips,
        [
            ("calls", "6. in-process worker, N=<500:10>: round trips per task"),
            ("commands", "6. Redis commands per task (commandstats, Lua inner incl.)"),
        ],
    ),
    Row(
        "batch_end",
        row_batch_end,
        [
            ("batch_end_p50", "7. batch-end latency p50, <20:3> x <50:5> tasks, 2 workers (ms)"),
            ("batch_end_p99", "7. batch-end latency p99 (ms)"),
        ],
    ),
    Row(
        "retry",
        row_retry,
        [
            ("retry_p50", "8. retry lateness p50, <200:4> tasks, resting 0.3 s, 2 workers (ms)"),
            ("retry_p99", "8. retry lateness p99 (ms)"),
        ],
    ),
    Row(
        "idle_cpu",
        row_idle_cpu,
        [
            ("idle_cpu", "9. worker CPU while <20> retries wait {wait} s, over {window} s (CPU s)"),
            ("idle_cmds", "9. Redis commands in those {window} s"),
        ],
    ),
    Row(
        "memory",
        row_memory,
        [
            ("mem_pending", "10. Redis memory per pending job, N=<20000:10> (bytes)"),
            ("mem_finished", "10. Redis memory per finished job (bytes)"),
        ],
    ),
    Row(
        "million",
        row_million,
        [
            ("m_push", "11. <1000000:100> tasks: push (enqueue_many / push_many) (s)"),
            ("m_process", "11. ... processing, 2 long-running workers (s)"),
            ("m_wait", "11. ... wait_for_batch returns, after worker start (s)"),
            ("m_total", "11. ... push + wait_for_batch (s)"),
            ("m_rss", "11. ... peak worker RSS, VmHWM (MB)"),
            ("m_redis", "11. ... peak Redis used_memory, in maxmemory 1.5 GB (MB)"),
        ],
        default=False,
    ),
]
