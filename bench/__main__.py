"""python -m bench: plain RQ and rq-serviceq side by side, against one fresh throwaway Redis.

Prints progress to stderr and a Markdown table to stdout: what, plain RQ,
rq-serviceq, ratio (rq-serviceq / plain RQ).  Each figure is the median of
--runs repetitions.  See docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

import redis
import rq

from rq_serviceq.testing import RedisServer

from .harness import SQ_ROOT, Bench, fmt, log, median
from .rows import ROWS, Row

NO_RATIO = {"far_rtt"}
HEADER = "| what | plain RQ | rq-serviceq | ratio |"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    names = [row.name for row in ROWS]
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="repetitions per row; figures are medians (default 3)")
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every size by this (default 1.0)")
    parser.add_argument("--only", default="", help=f"comma-separated rows to run, of: {', '.join(names)}")
    parser.add_argument("--million", action="store_true", help="also run the 1,000,000-task batch (row 11)")
    parser.add_argument("--json", metavar="PATH", help="write every run's figures and the medians here")
    parser.add_argument(
        "--concurrency",
        default=None,
        help="set RQ_SERVICEQ_CONCURRENCY in rq-serviceq workers' environment (and in this process)",
    )
    parser.add_argument(
        "--sq-worker-class",
        default="rq_serviceq.ServiceQWorker",
        help="worker class for rq-serviceq worker processes (default rq_serviceq.ServiceQWorker)",
    )
    parser.add_argument("--keep-logs", action="store_true", help="keep the worker logs directory")
    parser.add_argument(
        "--peers",
        action="store_true",
        help="instead: rq-serviceq beside RQ, Celery, Dramatiq, arq, SAQ and BullMQ (python -m bench --peers --help)",
    )
    args = parser.parse_args(argv)
    only = [x.strip() for x in args.only.split(",") if x.strip()]
    unknown = sorted(set(only) - set(names))
    if unknown:
        parser.error(f"unknown row(s) {', '.join(unknown)}; choose from {', '.join(names)}")
    if args.runs < 1 or args.scale <= 0:
        parser.error("--runs must be >= 1 and --scale > 0")
    args.rows = [row for row in ROWS if (row.name in only if only else row.default or args.million)]
    if args.million and only and "million" not in only:
        args.rows.append(next(r for r in ROWS if r.name == "million"))
    return args


def label_for(template: str, bench: Bench) -> str:
    wait, window = max(2.0, 10.0 * bench.scale), max(1.0, 5.0 * bench.scale)
    text = template.replace("{wait}", f"{wait:g}").replace("{window}", f"{window:g}")

    def size(match: re.Match[str]) -> str:
        base, _, minimum = match.group(1).partition(":")
        return f"{bench.n(float(base), int(minimum or 2)):,}"

    return re.sub(r"<([0-9.]+(?::[0-9]+)?)>", size, text)


def ratio(key: str, rq_value: float | None, sq_value: float | None) -> str:
    if key in NO_RATIO or rq_value is None or sq_value is None or not rq_value:
        return "n/a"
    if math.isnan(rq_value) or math.isnan(sq_value):
        return "error"
    return f"{sq_value / rq_value:.2f}x"


def run_rows(bench: Bench, rows: list[Row], runs: int) -> dict[str, dict[str, list[float | None]]]:
    """{metric: {"rq": [per run], "sq": [per run]}}; a failed run leaves NaN."""
    results: dict[str, dict[str, list[float | None]]] = {}
    for row in rows:
        for run in range(runs):
            bench.current_row = row.name
            log(f"{row.name}: run {run + 1}/{runs}")
            t0 = time.monotonic()
            try:
                figures = row.run(bench)
            except Exception as exc:
                bench.warn(f"run {run + 1} failed: {exc!r}")
                traceback.print_exc(file=sys.stderr)
                figures = {key: (math.nan, math.nan) for key, _ in row.metrics}
            finally:
                bench.stop_all()
            for key, (rq_value, sq_value) in figures.items():
                slot = results.setdefault(key, {"rq": [], "sq": []})
                slot["rq"].append(rq_value)
                slot["sq"].append(sq_value)
            shown = ", ".join(f"{k}={fmt(r)}/{fmt(s)}" for k, (r, s) in figures.items())
            log(f"{row.name}: run {run + 1} took {time.monotonic() - t0:.1f} s: {shown}")
    bench.current_row = ""
    return results


def med(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    if not values or len(present) < len(values):
        return None
    if any(math.isnan(v) for v in present):
        good = [v for v in present if not math.isnan(v)]
        return median(good) if good else math.nan
    return median(present)


def table(
    bench: Bench, rows: list[Row], results: dict[str, dict[str, list[float | None]]]
) -> tuple[str, list[dict[str, Any]]]:
    lines = [HEADER, "|---|---:|---:|---:|"]
    out: list[dict[str, Any]] = []
    for row in rows:
        for key, template in row.metrics:
            slot = results.get(key, {"rq": [math.nan], "sq": [math.nan]})
            rq_m, sq_m = med(slot["rq"]), med(slot["sq"])
            label = label_for(template, bench)
            lines.append(f"| {label} | {fmt(rq_m)} | {fmt(sq_m)} | {ratio(key, rq_m, sq_m)} |")
            out.append(
                {
                    "row": row.name,
                    "metric": key,
                    "what": label,
                    "rq_runs": slot["rq"],
                    "sq_runs": slot["sq"],
                    "rq": rq_m,
                    "sq": sq_m,
                }
            )
    return "\n".join(lines), out


def _git(*args: str) -> str:
    try:
        return subprocess.run(["git", *args], cwd=SQ_ROOT, capture_output=True, text=True, check=False).stdout.strip()
    except OSError:
        return ""


def measured_commit() -> str:
    """The commit of the rq_serviceq being measured: git, or a COMMIT file next to a snapshot of it."""
    if (SQ_ROOT / ".git").exists():
        dirty = _git("status", "--porcelain", "--", "rq_serviceq")
        return _git("rev-parse", "--short", "HEAD") + (" + uncommitted changes in rq_serviceq/" if dirty else "")
    marker = SQ_ROOT / "COMMIT"
    if marker.exists():
        return marker.read_text().strip() + f" (snapshot in {SQ_ROOT})"
    return f"unknown ({SQ_ROOT})"


def machine(bench: Bench) -> dict[str, Any]:
    return {
        "commit": measured_commit(),
        "rq_serviceq_path": str(SQ_ROOT),
        "nproc": os.cpu_count(),
        "python": platform.python_version(),
        "rq": rq.__version__,
        "redis_py": redis.__version__,
        "redis_server": bench.info("server")["redis_version"],
        "platform": platform.platform(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
    }


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if "--peers" in argv:  # its own options (--systems, --only of workloads): its own parser
        from .peers import run as peers

        return peers.main([a for a in argv if a != "--peers"])
    args = parse_args(argv)
    if args.concurrency is not None:
        os.environ["RQ_SERVICEQ_CONCURRENCY"] = args.concurrency
    # SIGTERM ends the bench like Ctrl-C does: through the finally blocks that kill every process.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    logdir = Path(tempfile.mkdtemp(prefix="rq-serviceq-bench-"))
    server = RedisServer()
    bench: Bench | None = None
    started = time.monotonic()
    try:
        server.start()
        bench = Bench(
            url=server.url,
            port=server.port,
            scale=args.scale,
            logdir=logdir,
            sq_worker_class=args.sq_worker_class,
            concurrency=args.concurrency,
        )
        bench.check_worker_import()
        meta = machine(bench) | {"runs": args.runs, "scale": args.scale, "rows": [r.name for r in args.rows]}
        log(f"redis-server {meta['redis_server']} on port {server.port}; worker logs in {logdir}")
        log(f"rows: {', '.join(meta['rows'])}; runs {args.runs}; scale {args.scale:g}")
        results = run_rows(bench, args.rows, args.runs)
        text, figures = table(bench, args.rows, results)
        meta["seconds"] = round(time.monotonic() - started, 1)
        print(text, flush=True)
        print(
            f"\nratio = rq-serviceq / plain RQ; medians of {args.runs} run(s); scale {args.scale:g}; "
            f"commit {meta['commit']}; {meta['seconds']} s",
            flush=True,
        )
        if bench.warnings:
            log(f"{len(bench.warnings)} warning(s):")
            for warning in bench.warnings:
                log("  " + warning)
        if args.json:
            Path(args.json).write_text(
                json.dumps({"meta": meta, "figures": figures, "warnings": bench.warnings}, indent=2)
            )
        failed = any(isinstance(v, float) and math.isnan(v) for f in figures for v in (f["rq"], f["sq"]))
        return 1 if failed else 0
    except KeyboardInterrupt:
        log("interrupted")
        return 130
    finally:
        if bench is not None:
            bench.stop_all()
        server.stop()
        if not args.keep_logs and not (bench and bench.warnings):
            for path in logdir.glob("*"):
                path.unlink(missing_ok=True)
            logdir.rmdir()
        elif bench is not None:
            log(f"worker logs kept in {logdir}")


if __name__ == "__main__":
    sys.exit(main())
