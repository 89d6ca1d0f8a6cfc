"""What every row needs: the Redis, worker processes, job-hash timings, CPU and memory readings.

Every process the bench starts is registered here and killed (with its process
group: RQ's scheduler is a forked child) when the bench ends, however it ends.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from redis import ConnectionPool, Redis
from redis.connection import Connection
from rq import Queue, Worker
from rq.serializers import JSONSerializer
from rq.utils import utcparse

import rq_serviceq
from rq_serviceq import ServiceQ

ROOT = Path(__file__).resolve().parent.parent  # where `bench` lives
SQ_ROOT = Path(rq_serviceq.__file__).resolve().parent.parent  # where the measured `rq_serviceq` lives
PYTHONPATH = list(dict.fromkeys([str(SQ_ROOT), str(ROOT)]))  # rq_serviceq first: a snapshot can be measured
RQ_QUEUE = "benchrq"
SQ_NAME = "benchsq"
CLK_TCK = os.sysconf("SC_CLK_TCK")
_SUSPICIOUS = re.compile(r"Traceback|Error|Exception|CRITICAL|WARNING|Timeout|timed out", re.IGNORECASE)


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


@dataclass
class Proc:
    popen: subprocess.Popen[bytes]
    label: str
    log_path: Path
    kind: str  # "rq" | "sq"

    @property
    def pid(self) -> int:
        return self.popen.pid


@dataclass
class Bench:
    """Shared state of one bench run: the Redis server, options, processes, warnings."""

    url: str
    port: int
    scale: float
    logdir: Path
    sq_worker_class: str = "rq_serviceq.ServiceQWorker"
    concurrency: str | None = None
    procs: list[Proc] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    current_row: str = ""

    def __post_init__(self) -> None:
        self.conn = Redis.from_url(self.url)
        # FLUSHALL of millions of keys (row 11: a million RQ jobs) takes longer than redis-py's
        # default 5 s socket timeout; only the flush gets a connection that waits for it.
        self._flusher = Redis.from_url(self.url, socket_timeout=600)

    # --- sizes ------------------------------------------------------------------------
    def n(self, base: float, minimum: int = 2) -> int:
        return max(minimum, round(base * self.scale))

    def warn(self, message: str) -> None:
        text = f"{self.current_row}: {message}" if self.current_row else message
        self.warnings.append(text)
        log("WARNING " + text)

    # --- Redis ------------------------------------------------------------------------
    def fresh(self) -> None:
        self._flusher.flushall()  # synchronous: memory rows read used_memory right after

    def rq_queue(self, conn: Redis | None = None) -> Queue:
        return Queue(RQ_QUEUE, connection=conn or self.conn, serializer=JSONSerializer)

    def service_queue(self, conn: Redis | None = None, **worker_config: Any) -> ServiceQ:
        sq = ServiceQ(SQ_NAME, connection=conn or self.conn)
        sq.set_worker_config(auto_start=False, **worker_config)  # the bench starts its own workers
        return sq

    def info(self, section: str) -> dict[str, Any]:
        return self.conn.info(section)

    def used_memory(self) -> int:
        return int(self.info("memory")["used_memory"])

    def redis_time(self) -> float:
        secs, micros = self.conn.time()
        return secs + micros / 1e6

    # --- worker processes ---------------------------------------------------------------
    def env(self, url: str | None = None) -> dict[str, str]:
        env = dict(os.environ)
        env["RQ_REDIS_URL"] = url or self.url
        env["BENCH_REDIS_URL"] = self.url  # measurements bypass the latency proxy
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [*PYTHONPATH, os.environ.get("PYTHONPATH")]))
        allowed = env.get("RQ_SERVICEQ_ALLOWED_MODULES")
        if allowed:  # an operator's allow-list in this environment must let the bench's tasks run
            env["RQ_SERVICEQ_ALLOWED_MODULES"] = f"{allowed},bench.tasks"
        if self.concurrency is not None:
            env["RQ_SERVICEQ_CONCURRENCY"] = self.concurrency
        return env

    def check_worker_import(self) -> None:
        """Worker processes must import the rq_serviceq this process measures (cwd and PYTHONPATH decide)."""
        code = "import rq_serviceq, bench.tasks; print(rq_serviceq.__file__)"
        out = subprocess.run([sys.executable, "-c", code], env=self.env(), cwd=SQ_ROOT, capture_output=True, text=True)
        seen = Path(out.stdout.strip()).resolve().parent.parent if out.returncode == 0 else None
        if seen != SQ_ROOT:
            raise RuntimeError(f"worker processes would import rq_serviceq from {seen}, not {SQ_ROOT}: {out.stderr}")

    def _spawn(self, cmd: list[str], label: str, kind: str, url: str | None) -> Proc:
        log_path = self.logdir / f"{len(self.procs):03d}-{label}.log"
        with open(log_path, "wb") as out:
            popen = subprocess.Popen(
                cmd, env=self.env(url), cwd=SQ_ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        proc = Proc(popen, label, log_path, kind)
        self.procs.append(proc)
        return proc

    def spawn_rq(self, count: int, burst: bool = True, url: str | None = None, scheduler: bool = False) -> list[Proc]:
        cmd = [
            sys.executable,
            "-m",
            "rq.cli",
            "worker",
            "--worker-class",
            "rq.worker.SimpleWorker",
            "-S",
            "rq.serializers.JSONSerializer",
            "--quiet",
        ]
        cmd += ["--burst"] if burst else []
        cmd += ["--with-scheduler"] if scheduler else []
        return [self._spawn([*cmd, RQ_QUEUE], f"rq-{i}", "rq", url) for i in range(count)]

    def spawn_sq(self, count: int, burst: bool = True, url: str | None = None) -> list[Proc]:
        cmd = [sys.executable, "-m", "rq.cli", "worker", "--worker-class", self.sq_worker_class, "--quiet"]
        cmd += ["--burst"] if burst else []
        return [self._spawn([*cmd, f"{SQ_NAME}-pending"], f"sq-{i}", "sq", url) for i in range(count)]

    def wait_exit(self, procs: Sequence[Proc], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        for proc in procs:
            try:
                proc.popen.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.warn(f"{proc.label} (pid {proc.pid}) still running after {timeout:.0f} s; killed")
                self.stop([proc])
                raise TimeoutError(f"{proc.label} did not finish within {timeout:.0f} s") from None
        for proc in procs:
            if proc.popen.returncode:
                self.warn(f"{proc.label} exited with code {proc.popen.returncode} (log {proc.log_path})")
        self.scan_logs(procs)

    def wait_registered(self, queue_name: str, count: int, timeout: float = 60.0) -> None:
        queue = Queue(queue_name, connection=self.conn)
        wait_until(
            lambda: Worker.count(connection=self.conn, queue=queue) >= count,
            timeout,
            f"{count} workers on {queue_name}",
        )

    def stop(self, procs: Iterable[Proc], grace: float = 3.0) -> None:
        procs = list(procs)
        for proc in procs:
            if proc.popen.poll() is None:
                _signal_group(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for proc in procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.popen.wait(max(0.05, deadline - time.monotonic()))
            _signal_group(proc.pid, signal.SIGKILL)  # the group too: RQ's scheduler is a forked child
            if proc.popen.poll() is None:
                proc.popen.wait(10)

    def stop_all(self) -> None:
        self.stop(self.procs, grace=1.0)

    def scan_logs(self, procs: Iterable[Proc]) -> None:
        """Anything that looks like trouble in an rq-serviceq worker's output becomes a warning."""
        for proc in procs:
            if proc.kind != "sq":
                continue
            try:
                lines = proc.log_path.read_text(errors="replace").splitlines()
            except OSError:
                continue
            bad = [line for line in lines if _SUSPICIOUS.search(line)]
            if bad:
                shown = " | ".join(line.strip() for line in bad[:3])
                self.warn(f"{proc.label} output has {len(bad)} suspicious line(s) (log {proc.log_path}): {shown}")


def _signal_group(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def wait_until(predicate: Callable[[], object], timeout: float, what: str, interval: float = 0.02) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


# --- readings ---------------------------------------------------------------------------
def job_span(conn: Redis, ids: Sequence[str], bench: Bench | None = None) -> tuple[float, int]:
    """(seconds from the first ended_at to the last, jobs that ended) over the jobs' hashes.

    Ends only, for both systems alike: a passed rq-serviceq task keeps no started_at (docs/rq.md).
    Counting from the first end leaves out start-up and one task's run time."""
    ends = []
    for i in range(0, len(ids), 1000):
        with conn.pipeline(transaction=False) as pipe:
            for job_id in ids[i : i + 1000]:
                pipe.hget(f"rq:job:{job_id}", "ended_at")
            ends += [utcparse(ended.decode()) for ended in pipe.execute() if ended]
    if bench is not None and len(ends) != len(ids):
        bench.warn(f"{len(ids) - len(ends)} of {len(ids)} jobs lack ended_at")
    if len(ends) < 2:
        raise RuntimeError("fewer than two jobs have ended_at")
    return (max(ends) - min(ends)).total_seconds(), len(ends)


def throughput(conn: Redis, ids: Sequence[str], bench: Bench | None = None, wall: float | None = None) -> float:
    """Jobs per second after the first ended: (ended - 1) / span.  A group settles at once, so at tiny
    sizes every job may share one ended_at: then ``wall`` (start-up included) stands in, when given."""
    span, done = job_span(conn, ids, bench)
    if span > 0:
        return (done - 1) / span
    return done / wall if wall else float("nan")


def tree_pids(pid: int) -> list[int]:
    """pid and all its descendants (read from /proc/<pid>/task/*/children)."""
    out, todo = [], [pid]
    while todo:
        current = todo.pop()
        out.append(current)
        for task in Path(f"/proc/{current}/task").glob("*/children"):
            with contextlib.suppress(OSError):
                todo += [int(x) for x in task.read_text().split()]
    return out


def cpu_seconds(pid: int) -> float:
    """utime + stime of pid and its live descendants."""
    total = 0
    for p in tree_pids(pid):
        try:
            stat = Path(f"/proc/{p}/stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # fields 14 and 15 of /proc/<pid>/stat
    return total / CLK_TCK


def vm_hwm_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def percentile(values: Sequence[float], q: float) -> float:
    """Linear interpolation between closest ranks (q in 0..100)."""
    data = sorted(values)
    if not data:
        return float("nan")
    if len(data) == 1:
        return data[0]
    pos = (len(data) - 1) * q / 100
    lo = int(pos)
    hi = min(lo + 1, len(data) - 1)
    return data[lo] + (data[hi] - data[lo]) * (pos - lo)


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def counting_redis(url: str) -> tuple[Redis, list[int]]:
    """A client whose connections count send_packed_command calls (a whole pipeline is one call)."""
    counter = [0]

    class CountingConnection(Connection):
        def send_packed_command(self, command: Any, check_health: bool = True) -> None:
            counter[0] += 1
            super().send_packed_command(command, check_health)  # type: ignore[no-untyped-call]  # redis-py: untyped

    pool = ConnectionPool.from_url(url, connection_class=CountingConnection)
    return Redis(connection_pool=pool), counter


def command_calls(conn: Redis) -> dict[str, int]:
    """INFO commandstats as {command: calls} (commands run inside Lua scripts included)."""
    stats = conn.info("commandstats")
    return {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in stats.items()}


def fmt(value: float | None) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float) and math.isnan(value):
        return "error"
    v = abs(value)
    if v >= 1000:
        return f"{value:,.0f}"
    if v >= 100:
        return f"{value:.0f}"
    if v >= 10:
        return f"{value:.1f}"
    if v >= 1 or v == 0:
        return f"{value:.2f}"
    return f"{value:.3f}"
