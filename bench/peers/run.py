"""The peers bench's driver: every run against its own fresh redis-server, systems alternating round by round.

Standard library plus ``rq_serviceq.testing.RedisServer``.  For every run: a new
redis-server, one adapter command (in its system's venv) under a wall-clock limit, its
``RESULT`` line appended to a JSONL file with the 1-minute load average before and
after, then the server stopped.  Rounds run the systems in order, then reversed, and so
on; within a round W1, W2, W3, W4, W4c, W5.  The table holds medians over the rounds,
for each system its best configuration.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from rq_serviceq.testing import RedisServer

from ..harness import fmt
from . import venvs
from .plan import CONFIGS, LIMITS, MODULES, SIZES, SYSTEMS, WORKLOADS

ROOT = venvs.ROOT
IN_MAIN_VENV = {"rq-serviceq", "rq", "bullmq"}  # bullmq's adapter is Python driving Node


def log(message: str) -> None:
    print(f"[peers {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench --peers", description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="rounds; figures are medians (default 3)")
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every size by this (default 1.0)")
    parser.add_argument("--only", default="", help=f"comma-separated workloads, of: {', '.join(WORKLOADS)}")
    parser.add_argument("--systems", default="", help=f"comma-separated systems, of: {', '.join(SYSTEMS)}")
    parser.add_argument("--jsonl", metavar="PATH", help="append every run here (default .bench/peers-DATE.jsonl)")
    parser.add_argument(
        "--wait-load",
        type=float,
        default=0.0,
        metavar="L",
        help="before the first round, wait (up to 10 min) for the 1-minute load average to fall below L",
    )
    parser.add_argument(
        "--first-round",
        type=int,
        default=1,
        metavar="K",
        help="number the rounds from K (an even K starts with the reversed order: to extend an earlier JSONL)",
    )
    parser.add_argument(
        "--table", metavar="JSONL", nargs="+", help="run nothing: print the table of the runs in these files"
    )
    args = parser.parse_args(argv)
    args.workloads = _choose(parser, "--only", args.only, WORKLOADS)
    args.system_list = _choose(parser, "--systems", args.systems, SYSTEMS)
    if args.runs < 1 or args.scale <= 0:
        parser.error("--runs must be >= 1 and --scale > 0")
    return args


def _choose(parser: argparse.ArgumentParser, flag: str, given: str, known: tuple[str, ...]) -> list[str]:
    chosen = [x.strip() for x in given.split(",") if x.strip()]
    unknown = sorted(set(chosen) - set(known))
    if unknown:
        parser.error(f"{flag}: unknown {', '.join(unknown)}; choose from {', '.join(known)}")
    return [x for x in known if x in chosen] if chosen else list(known)


def size(workload: str, scale: float) -> int:
    return max(10, round(SIZES[workload] * scale))


def python_for(system: str) -> str:
    return sys.executable if system in IN_MAIN_VENV else str(venvs.venv_python(system))


def load1() -> float:
    return os.getloadavg()[0]


def run_one(system: str, workload: str, config: str, n: int) -> dict[str, Any]:
    """One adapter run against a redis-server of its own, stopped afterwards whatever happens."""
    server = RedisServer()
    record: dict[str, Any] = {"system": system, "workload": workload, "config": config, "n": n}
    record["load_before"] = load1()
    started = time.monotonic()
    try:
        server.start()
        cmd = [python_for(system), "-m", MODULES[system], "--url", server.url, "--workload", workload]
        cmd += ["--n", str(n), "--config", config]
        paths = [str(ROOT), str(venvs.EXTRAS_DIR) if system in IN_MAIN_VENV else "", os.environ.get("PYTHONPATH")]
        env = dict(os.environ) | {"PYTHONPATH": os.pathsep.join(p for p in paths if p)}
        proc = subprocess.Popen(
            cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
        )
        try:
            out, err = proc.communicate(timeout=LIMITS[workload])
        except subprocess.TimeoutExpired:
            stop_adapter(proc)
            out, err = proc.communicate()
            record["error"] = f"over the {LIMITS[workload]:.0f} s limit"
        except BaseException:
            stop_adapter(proc)
            raise
        result = [line for line in out.splitlines() if line.startswith("RESULT ")]
        if result:
            record |= {k: v for k, v in json.loads(result[-1][7:]).items() if k not in record or k == "config"}
        elif "error" not in record:
            record["error"] = f"no RESULT line (exit {proc.returncode}): {err.strip()[-600:]}"
        if "error" in record and err.strip():
            record["stderr_tail"] = err.strip()[-600:]
    except Exception as exc:
        record["error"] = f"{type(exc).__name__}: {exc}"
    finally:
        server.stop()
    record["load_after"] = load1()
    record["wall_seconds"] = round(time.monotonic() - started, 2)
    return record


def stop_adapter(proc: subprocess.Popen[str]) -> None:
    """SIGTERM first: the adapter stops its own workers (their own sessions) on the way out."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)


def describe(record: dict[str, Any]) -> str:
    if "error" in record:
        return f"ERROR {record['error'][:300]}"
    parts = []
    if "rate" in record:
        parts.append(f"{record['rate']:,.0f}/s")
    if "seconds" in record:
        parts.append(f"{record['seconds']:.2f} s")
    if "bytes_per_task" in record:
        parts.append(f"{record['bytes_per_task']:,.0f} B/task")
    if "commands_per_task" in record:
        parts.append(f"{record['commands_per_task']:.1f} cmd/task")
    if "redis_cpu_us_per_task" in record:
        parts.append(f"{record['redis_cpu_us_per_task']:.0f} us redis CPU/task")
    return ", ".join(parts) + f"; load {record['load_before']:.2f} -> {record['load_after']:.2f}"


# --- the table -------------------------------------------------------------------------------------
# (label, workload, field, higher is better)
ROWS = (
    ("W1 bulk enqueue {W1}, tasks/s", "W1", "rate", True),
    ("W2 no-op, 1 process, {W2}, tasks/s", "W2", "rate", True),
    ("W3 batch {W3} + callback, 2 processes, s", "W3", "seconds", False),
    ("W4a Redis commands / task ({W4})", "W4", "commands_per_task", False),
    ("W4b Redis bytes / queued task ({W1})", "W1", "bytes_per_task", False),
    ("W4c redis-server CPU / task, us ({W4c})", "W4c", "redis_cpu_us_per_task", False),
    ("W5 10 ms tasks, 1 process x 8, {W5}, tasks/s (ideal 800)", "W5", "rate", True),
)


def best(
    records: list[dict[str, Any]], system: str, workload: str, field: str, higher: bool
) -> tuple[float, str, int, int] | None:
    """(median, configuration, runs that gave it, runs tried) of the system's best configuration."""
    by_config: dict[str, list[float]] = {}
    tried: dict[str, int] = {}
    for r in records:
        if r["system"] == system and r["workload"] == workload:
            tried[r["config"]] = tried.get(r["config"], 0) + 1
            value = r.get(field)
            if "error" not in r and isinstance(value, int | float) and math.isfinite(value):
                by_config.setdefault(r["config"], []).append(float(value))
    if not by_config:
        return None
    medians = {config: statistics.median(values) for config, values in by_config.items()}
    chosen = (max if higher else min)(medians, key=lambda c: medians[c])
    return medians[chosen], chosen, len(by_config[chosen]), tried[chosen]


def table(
    records: list[dict[str, Any]], systems: list[str], workloads: list[str], scale: float, skipped: dict[str, str]
) -> str:
    sizes = {w: f"{size(w, scale):,}" for w in SIZES}
    lines = [
        "| workload | " + " | ".join(systems) + " | rq-serviceq / best peer |",
        "|---|" + "---:|" * len(systems) + "---:|",
    ]
    for label, workload, field, higher in ROWS:
        if workload not in workloads:
            continue
        cells, peers = [], {}
        for system in systems:
            found = None if system in skipped else best(records, system, workload, field, higher)
            if system in skipped:
                cells.append("skipped")
                continue
            if found is None:
                cells.append("error")
                continue
            value, config, good, tried = found
            cell = fmt(value)
            if len(CONFIGS[system].get(workload, ())) > 1 or (workload == "W4" and config == "default"):
                cell += f" ({config})"
            if good < tried:
                cell += f" [{good} of {tried} runs]"
            cells.append(cell)
            if system != "rq-serviceq":
                peers[system] = value
        ours = best(records, "rq-serviceq", workload, field, higher) if "rq-serviceq" in systems else None
        if ours and peers:
            top = (max if higher else min)(peers, key=lambda s: peers[s])
            ratio = f"{ours[0] / peers[top]:.2f}x vs {top}" if peers[top] else "n/a"
        else:
            ratio = "n/a"
        lines.append(f"| {label.format(**sizes)} | " + " | ".join(cells) + f" | {ratio} |")
    return "\n".join(lines)


def wait_for_load(limit: float) -> None:
    deadline = time.monotonic() + 600
    while load1() >= limit and time.monotonic() < deadline:
        log(f"1-minute load average {load1():.2f} >= {limit}: waiting")
        time.sleep(15)


def print_table(args: argparse.Namespace) -> int:
    """The table of earlier runs (JSONL files, concatenated): sizes are taken from the runs themselves."""
    records = [json.loads(line) for path in args.table for line in Path(path).read_text().splitlines() if line]
    records = [r for r in records if r["system"] in args.system_list and r["workload"] in args.workloads]
    scales = {r["n"] / SIZES[r["workload"]] for r in records}
    scale = scales.pop() if len(scales) == 1 else args.scale
    ran = {r["system"] for r in records}
    systems = [s for s in args.system_list if s in ran]  # the systems the files hold, not an "error" per absent one
    print(table(records, systems, args.workloads, scale, {}), flush=True)
    loads = [r["load_before"] for r in records] + [r["load_after"] for r in records]
    per_config: dict[tuple[str, str, str], int] = {}
    for r in records:
        key = (r["system"], r["workload"], r["config"])
        per_config[key] = per_config.get(key, 0) + 1
    rounds = max(per_config.values(), default=0)
    note = f"1-minute load average {min(loads):.2f}-{max(loads):.2f}" if loads else "no runs"
    print(f"\n{len(records)} runs (up to {rounds} per configuration) from {', '.join(args.table)}; {note}", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.table:
        return print_table(args)
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # ends like Ctrl-C: the finally blocks run
    skipped: dict[str, str] = {}
    for system in args.system_list:
        why = venvs.ensure(system)
        if why:
            log(f"skipping {system}: {why}")
            skipped[system] = why
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = Path(args.jsonl) if args.jsonl else venvs.BENCH_DIR / f"peers-{stamp}.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    runnable = [s for s in args.system_list if s not in skipped]
    log(f"systems {', '.join(runnable)}; workloads {', '.join(args.workloads)}; {args.runs} round(s); runs in {path}")
    if args.wait_load:
        wait_for_load(args.wait_load)
    records: list[dict[str, Any]] = []
    started = time.monotonic()
    try:
        for round_no in range(args.first_round - 1, args.first_round - 1 + args.runs):
            order = runnable if round_no % 2 == 0 else runnable[::-1]
            for system in order:
                for workload in args.workloads:
                    for config in CONFIGS[system].get(workload, ("",)):
                        n = size(workload, args.scale)
                        record = run_one(system, workload, config, n) | {"round": round_no + 1}
                        record["config"] = record.get("config") or config or "default"
                        records.append(record)
                        with path.open("a") as out:
                            out.write(json.dumps(record) + "\n")
                        log(f"round {round_no + 1} {system} {workload} {record['config']} n={n}: {describe(record)}")
    except KeyboardInterrupt:
        log("interrupted: the table holds the runs so far")
    loads = [r["load_before"] for r in records] + [r["load_after"] for r in records]
    print(table(records, args.system_list, args.workloads, args.scale, skipped), flush=True)
    load_note = f"1-minute load average {min(loads):.2f}-{max(loads):.2f}" if loads else "no runs"
    print(
        f"\nmedians of {args.runs} round(s); scale {args.scale:g}; {load_note} on {os.cpu_count()} cores; "
        f"{time.monotonic() - started:.0f} s; every run in {path}",
        flush=True,
    )
    for system, why in skipped.items():
        print(f"- {system} skipped: {why}", flush=True)
    return 1 if any("error" in r for r in records) else 0


if __name__ == "__main__":
    sys.exit(main())
