"""python -m bench.http: the HTTP service under wrk, on loopback and with Redis ~11 ms away.

Each row starts a fresh ``rq-serviceq serve`` (auto-batching on or off, one
or two server processes) against one throwaway Redis, directly or through
``bench/latency_proxy.py``, warms it up with ``--warmup`` seconds of ``wrk`` at
the row's concurrency (the server's first concurrent flushes open its pool's
Redis connections, a few round trips each behind the link: a start-up cost, not
a steady-state one), then runs ``wrk`` for ``--seconds`` and reads:

- tasks/s: 2xx responses x tasks per request / seconds (wrk), checked against
  the tasks that landed in Redis (LLEN of the pending queue);
- p50/p99 latency (wrk's, per request);
- Redis round trips per task: the server's top-level calls (EVALSHA for each
  PUSH, HGETALL for its settings, once a second) from ``INFO commandstats``,
  whose other entries are commands run inside the scripts;
- CPU seconds per second of the server process tree, redis-server, wrk and the
  proxy (``/proc``), which says where the ceiling is, and of everything else on
  the machine (busy CPU in ``/proc/stat`` less ours): the machine is shared, and
  the other tenants' load is part of every figure.

``--baseline DIR`` runs every row against a second tree as well (another
commit's ``rq_serviceq``, e.g. from ``git worktree add`` or ``git archive``),
alternating the two run by run, so that before and after share the machine's
conditions.  ``--quiet-load X`` waits (up to ``--quiet-wait`` seconds) before
each run for the 1-minute load average to fall under X.

Prints a Markdown table to stdout (progress to stderr); ``--json`` keeps every figure.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from redis import Redis

from rq_serviceq.testing import RedisServer, free_port

from .harness import CLK_TCK, SQ_ROOT, cpu_seconds, log
from .latency_proxy import LatencyProxy

QUEUE = "bench"
TASK = {"phone": "+910000000000", "text": "hello from the bench", "n": 1}
ROUND_TRIP_COMMANDS = ("evalsha", "eval", "hgetall")  # what the server sends itself while pushing

WRK_SCRIPT = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = io.open("%(body)s", "rb"):read()
done = function(summary, latency, requests)
  io.write(string.format('WRKJSON {"requests":%%d,"duration_us":%%d,"status":%%d,"connect":%%d,"read":%%d,' ..
    '"write":%%d,"timeout":%%d,"p50_us":%%d,"p99_us":%%d,"max_us":%%d}\\n', summary.requests, summary.duration,
    summary.errors.status, summary.errors.connect, summary.errors.read, summary.errors.write,
    summary.errors.timeout, latency:percentile(50), latency:percentile(99), latency.max))
end
"""


@dataclass
class Row:
    code: str  # which tree's rq_serviceq the server ran: "this", or the baseline's label
    setting: str  # loopback | 11 ms
    case: str  # a | b | c
    what: str
    connections: int
    server_processes: int
    tasks_per_request: int
    tasks_per_s: float = 0.0
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    round_trips_per_task: float = 0.0
    tasks_per_round_trip: float = 0.0
    landed: int = 0
    errors: int = 0
    server_cpu: float = 0.0
    redis_cpu: float = 0.0
    wrk_cpu: float = 0.0
    proxy_cpu: float = 0.0
    other_cpu: float = 0.0  # the machine's busy CPU less ours: other tenants
    load1: float = 0.0  # 1-minute load average when the run started


class Server:
    """``rq-serviceq serve`` in its own process group."""

    def __init__(
        self,
        redis_url: str,
        batching: bool,
        processes: int,
        logdir: Path,
        pool: int | None = None,
        root: Path = SQ_ROOT,
        extra_env: dict[str, str] | None = None,
    ) -> None:
        self.port = free_port()
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")]))
        env |= {"BATCH_AUTO_ENABLED": "true" if batching else "false", "RQ_REDIS_URL": redis_url}
        env.pop("SERVICEQ_API_TOKEN", None)
        if pool:
            env["SERVICEQ_REDIS_POOL"] = str(pool)
        env |= extra_env or {}
        cmd = [sys.executable, "-m", "rq_serviceq", "serve", "--port", str(self.port), "--workers", str(processes)]
        self.log_path = logdir / f"server-{self.port}.log"
        with open(self.log_path, "wb") as out:
            self.proc = subprocess.Popen(cmd, env=env, cwd=root, stdout=out, stderr=subprocess.STDOUT,
                                         start_new_session=True)  # fmt: skip
        self.url = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 30
        while not self._healthy():
            if time.monotonic() > deadline or self.proc.poll() is not None:
                self.stop()
                raise RuntimeError(f"server did not start: {self.log_path.read_text()[-2000:]}")
            time.sleep(0.05)

    def _healthy(self) -> bool:
        try:
            with urllib.request.urlopen(self.url + "/healthz", timeout=2) as resp:
                status: int = resp.status
                return status == 200
        except OSError:
            return False

    def post(self, path: str, body: bytes) -> None:
        req = urllib.request.Request(self.url + path, body, {"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as resp:
            assert resp.status == 201, resp.status

    def stop(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)


def run_wrk(url: str, body_path: Path, connections: int, seconds: float, workdir: Path) -> tuple[dict[str, Any], float]:
    script = workdir / "post.lua"
    script.write_text(WRK_SCRIPT % {"body": body_path})
    threads = min(2, connections)
    cmd = ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{seconds:g}s", "--timeout", "30s",
           "-s", str(script), url]  # fmt: skip
    before = os.times()
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60, check=True).stdout
    after = os.times()
    line = next(x for x in out.splitlines() if x.startswith("WRKJSON "))
    cpu = (after.children_user + after.children_system) - (before.children_user + before.children_system)
    return json.loads(line.removeprefix("WRKJSON ")), cpu


def machine_busy() -> float:
    """CPU seconds the whole machine has been busy (``/proc/stat``: all but idle, iowait and steal)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq = fields[:7]
    return (user + nice + system + irq + softirq) / CLK_TCK


def load1() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


def wait_for_quiet(limit: float | None, longest: float = 120.0) -> None:
    """Before a run: wait while the 1-minute load average is over ``limit`` (others' tests), at most ``longest`` s."""
    if limit is None:
        return
    deadline = time.monotonic() + longest
    if load1() > limit:
        log(f"  load average {load1():.2f} > {limit}: waiting for a quieter minute")
    while load1() > limit and time.monotonic() < deadline:
        time.sleep(5)


def redis_cpu(conn: Redis) -> float:
    info = conn.info("cpu")
    return float(info["used_cpu_sys"]) + float(info["used_cpu_user"])


def round_trips(conn: Redis) -> int:
    stats = conn.info("commandstats")
    return sum(int(stats.get(f"cmdstat_{name}", {}).get("calls", 0)) for name in ROUND_TRIP_COMMANDS)


def measure(row: Row, redis_url: str, conn: Redis, bench: argparse.Namespace, proxy: LatencyProxy | None) -> Row:
    """One row: a fresh Redis database and server, warm-up requests and a warm-up wrk run, then the measured wrk."""
    conn.flushall()
    root = bench.baseline if row.code != "this" else SQ_ROOT
    server = Server(redis_url, row.case == "b", row.server_processes, bench.logdir, bench.pool, root, bench.server_env)
    try:
        single = json.dumps(TASK).encode()
        if row.case == "c":
            tasks = [dict(TASK, n=i) for i in range(row.tasks_per_request)]
            body, path = json.dumps({"tasks": tasks}).encode(), f"/serviceqs/{QUEUE}/tasks/batch"
        else:
            body, path = single, f"/serviceqs/{QUEUE}/tasks"
        for _ in range(row.server_processes * 4):  # each process: its service queue handle, scripts loaded
            server.post(path, body)
        body_path = bench.logdir / f"body-{row.case}.json"
        body_path.write_bytes(body)
        if bench.warmup > 0:  # at the row's concurrency: the pool's connections opened, not measured
            run_wrk(server.url + path, body_path, row.connections, bench.warmup, bench.logdir)
        queued0, calls0, rcpu0 = conn.llen(f"rq:queue:{QUEUE}-pending"), round_trips(conn), redis_cpu(conn)
        scpu0 = cpu_seconds(server.proc.pid)
        pcpu0 = cpu_seconds(proxy.proc.pid) if proxy and proxy.proc else 0.0
        row.load1, busy0 = load1(), machine_busy()
        wrk, wrk_cpu = run_wrk(server.url + path, body_path, row.connections, bench.seconds, bench.logdir)
        busy = machine_busy() - busy0
        seconds = wrk["duration_us"] / 1e6
        landed = conn.llen(f"rq:queue:{QUEUE}-pending") - queued0
        calls = round_trips(conn) - calls0
        ok_requests = wrk["requests"] - wrk["status"]
        row.tasks_per_s = ok_requests * row.tasks_per_request / seconds
        row.p50_ms, row.p99_ms = wrk["p50_us"] / 1000, wrk["p99_us"] / 1000
        row.landed = landed
        row.errors = sum(wrk[k] for k in ("status", "connect", "read", "write", "timeout"))
        row.round_trips_per_task = calls / landed if landed else float("nan")
        row.tasks_per_round_trip = landed / calls if calls else float("nan")
        row.server_cpu = (cpu_seconds(server.proc.pid) - scpu0) / seconds
        row.redis_cpu = (redis_cpu(conn) - rcpu0) / seconds
        row.wrk_cpu = wrk_cpu / seconds
        row.proxy_cpu = ((cpu_seconds(proxy.proc.pid) if proxy and proxy.proc else 0.0) - pcpu0) / seconds
        ours = row.server_cpu + row.redis_cpu + row.wrk_cpu + row.proxy_cpu
        row.other_cpu = max(0.0, busy / seconds - ours)
        if row.errors:
            log(f"WARNING {row.what} c={row.connections}: {row.errors} errors ({wrk})")
        return row
    finally:
        server.stop()


def plan(args: argparse.Namespace) -> list[Row]:
    rows: list[Row] = []
    cases = set(args.cases)
    a, b = "(a) one task per request, auto-batching off", "(b) one task per request, auto-batching on"
    c_what = f"(c) batch endpoint, {args.batch_size:,} tasks per request"
    for setting in args.settings:
        rows += [Row("this", setting, "a", a, n, 1, 1) for n in (args.clients if "a" in cases else ())]
        rows += [Row("this", setting, "b", b, n, 1, 1) for n in (args.clients if "b" in cases else ())]
        rows += [Row("this", setting, "c", c_what, n, 1, args.batch_size) for n in args.batch_clients if "c" in cases]
        if args.second_process:
            rows += [Row("this", setting, "a", a, 256, 2, 1)] if "a" in cases else []
            rows += [Row("this", setting, "b", b, n, 2, 1) for n in (64, 256) if "b" in cases]
            last = args.batch_clients[-1]
            rows += [Row("this", setting, "c", c_what, last, 2, args.batch_size)] if "c" in cases else []
    return rows


def fmt(v: float) -> str:
    if v != v:  # NaN
        return "n/a"
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    if abs(v) >= 100:
        return f"{v:.0f}"
    if abs(v) >= 10:
        return f"{v:.1f}"
    return f"{v:.2f}"


def table(rows: list[Row]) -> str:
    lines = [
        "| code | Redis | case | clients | server procs | tasks/s | p50 ms | p99 ms | round trips/task "
        "| tasks/round trip | CPU s/s: server, Redis, wrk, proxy | others' CPU s/s | load |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|",
    ]
    for r in rows:
        cpu = f"{r.server_cpu:.2f}, {r.redis_cpu:.2f}, {r.wrk_cpu:.2f}, {r.proxy_cpu:.2f}"
        lines.append(
            f"| {r.code} | {r.setting} | {r.what} | {r.connections} | {r.server_processes} | {fmt(r.tasks_per_s)} | "
            f"{fmt(r.p50_ms)} | {fmt(r.p99_ms)} | {r.round_trips_per_task:.3f} | {fmt(r.tasks_per_round_trip)} "
            f"| {cpu} | {r.other_cpu:.2f} | {r.load1:.2f} |"
        )
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.http", description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="wrk duration per row (default 5)")
    parser.add_argument("--clients", default="1,16,64,256", help="connections for (a) and (b)")
    parser.add_argument("--batch-clients", default="1,4", help="connections for (c)")
    parser.add_argument("--batch-size", type=int, default=1000, help="tasks per request in (c)")
    parser.add_argument("--settings", default="loopback,11ms", help="loopback and/or 11ms (Redis behind the proxy)")
    parser.add_argument("--delay", type=float, default=0.005, help="proxy delay each way, seconds (default 5 ms)")
    parser.add_argument("--cases", default="a,b,c", help="which of a, b, c to run (default all)")
    parser.add_argument("--pool", type=int, default=None, help="SERVICEQ_REDIS_POOL for the server (default its own)")
    parser.add_argument("--no-second-process", dest="second_process", action="store_false",
                        help="skip the rows with two server processes")  # fmt: skip
    parser.add_argument("--warmup", type=float, default=1.0, metavar="S",
                        help="seconds of wrk at the row's concurrency before each measured run, not counted "
                             "(default 1; 0 for none)")  # fmt: skip
    parser.add_argument("--runs", type=int, default=1, help="runs per row; the run of median tasks/s is shown")
    parser.add_argument("--json", metavar="PATH", help="write every figure here")
    parser.add_argument("--baseline", type=Path, metavar="DIR",
                        help="also run every row against the rq_serviceq in DIR, alternating run by run")  # fmt: skip
    parser.add_argument("--baseline-label", default=None, help="its name in the table (default: DIR's name)")
    parser.add_argument(
        "--quiet-load",
        type=float,
        default=None,
        metavar="X",
        help="before each run, wait (up to --quiet-wait s) for the 1-minute load average to be under X",
    )
    parser.add_argument("--quiet-wait", type=float, default=120.0, metavar="S", help="longest wait for --quiet-load")
    parser.add_argument("--server-env", action="append", default=[], metavar="VAR=VALUE",
                        help="set in every server's environment, e.g. BATCH_MAX_DELAY_MS=20 (repeatable)")  # fmt: skip
    args = parser.parse_args(argv)
    args.server_env = dict(item.split("=", 1) for item in args.server_env)
    if args.baseline is not None and not (args.baseline / "rq_serviceq" / "__init__.py").is_file():
        parser.error(f"--baseline {args.baseline}: no rq_serviceq package there")
    args.baseline_label = args.baseline_label or (args.baseline.resolve().name if args.baseline else None)
    args.clients = [int(x) for x in args.clients.split(",") if x]
    args.batch_clients = [int(x) for x in args.batch_clients.split(",") if x]
    args.settings = [x.strip() for x in args.settings.split(",") if x.strip()]
    args.cases = [x.strip() for x in args.cases.split(",") if x.strip()]
    if not set(args.settings) <= {"loopback", "11ms"}:
        parser.error("--settings takes loopback and/or 11ms")
    if shutil.which("wrk") is None:
        parser.error("wrk not found: apt-get install wrk")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.logdir = Path(tempfile.mkdtemp(prefix="rq-serviceq-bench-http-"))
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    rows = plan(args)
    done: list[Row] = []
    started = time.monotonic()
    load_before = Path("/proc/loadavg").read_text().split()[:3]
    with RedisServer() as redis_server:
        conn = Redis.from_url(redis_server.url)
        for setting in args.settings:
            proxy = LatencyProxy(redis_server.port, args.delay).start() if setting == "11ms" else None
            try:
                url = proxy.url if proxy else redis_server.url
                if proxy:
                    rtt = ping_ms(url)
                    log(f"Redis through the proxy: PING {rtt:.1f} ms")
                for row in (r for r in rows if r.setting == setting):
                    log(f"{setting} {row.what}, {row.connections} clients, {row.server_processes} process(es)")
                    done += measure_row(row, url, conn, args, proxy)
            finally:
                if proxy:
                    proxy.stop()
        meta = {
            "redis_server": conn.info("server")["redis_version"],
            "nproc": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "seconds": args.seconds,
            "warmup": args.warmup,
            "runs": args.runs,
            "server_env": args.server_env,
            "baseline": str(args.baseline) if args.baseline else None,
            "took": round(time.monotonic() - started, 1),
            "loadavg_before": load_before,  # other tenants of a shared machine show here
            "loadavg_after": Path("/proc/loadavg").read_text().split()[:3],
            "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        }
    print(table(done))
    print(f"\n{meta}")
    if args.json:
        Path(args.json).write_text(json.dumps({"meta": meta, "rows": [asdict(r) for r in done]}, indent=2))
    shutil.rmtree(args.logdir, ignore_errors=True)
    return 0


def measure_row(row: Row, url: str, conn: Redis, args: argparse.Namespace, proxy: LatencyProxy | None) -> list[Row]:
    """The row's median run (by tasks/s) for this tree, and for the baseline's, their runs alternating."""
    codes = ["this"] + ([args.baseline_label] if args.baseline else [])
    runs: dict[str, list[Row]] = {code: [] for code in codes}
    for _ in range(args.runs):
        for code in codes if len(runs["this"]) % 2 == 0 else codes[::-1]:  # ABBA: neither always goes first
            wait_for_quiet(args.quiet_load, args.quiet_wait)
            runs[code].append(measure(replace(row, code=code), url, conn, args, proxy))
    medians = []
    for code in codes:
        median = sorted(runs[code], key=lambda r: r.tasks_per_s)[len(runs[code]) // 2]  # the median run, whole
        medians.append(median)
        log(f"  {code}: {fmt(median.tasks_per_s)} tasks/s, p50 {fmt(median.p50_ms)} ms, p99 {fmt(median.p99_ms)} ms, "
            f"{fmt(median.tasks_per_round_trip)} tasks/round trip, landed {median.landed:,}, "
            f"others' CPU {median.other_cpu:.2f} s/s")  # fmt: skip
    return medians


def ping_ms(url: str) -> float:
    conn = Redis.from_url(url)
    conn.ping()
    samples = []
    for _ in range(10):
        t0 = time.perf_counter()
        conn.ping()
        samples.append((time.perf_counter() - t0) * 1000)
    conn.close()
    return sorted(samples)[len(samples) // 2]


if __name__ == "__main__":
    sys.exit(main())
