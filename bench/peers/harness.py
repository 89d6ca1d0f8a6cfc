"""The part of every adapter that is the same for every system: the workloads' steps and their readings.

An adapter is one process, run with the interpreter of its system's venv:
``python -m bench.peers.<system>_peer --url URL --workload W2 --n 20000 --config solo``.
It fills the Redis the driver started, starts the system's workers in their own
session, reads the times the workers wrote (``bench.peers.timing``) and Redis's
own counters, checks the system's own "all done", stops its workers by process
group, and prints one ``RESULT {json}`` line.  Needs redis-py, which every venv has.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from redis import Redis

from .plan import CONFIGS, WORKLOADS
from .timing import PAYLOAD

ROOT = Path(__file__).resolve().parent.parent.parent  # where the `bench` package lives
SETTLE = 0.3  # seconds after the N-th task's end before INFO commandstats is read (W4a)
ENQUEUE_TIMEOUT = 240.0
PROCESS_TIMEOUT = 420.0
EXCLUDED_COMMANDS = {"info", "config"}  # the reading's own commands


def log(message: str) -> None:
    print(f"[peers {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def wait_for(predicate: Callable[[], bool], timeout: float, what: str, interval: float = 0.01) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{what}: not within {timeout:.0f} s")
        time.sleep(interval)


def read_json(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def hiredis_version() -> str:
    """Whether redis-py in this venv parses with hiredis (every peer's venv has it; the main venv may not)."""
    try:
        from importlib.metadata import version

        return version("hiredis")
    except Exception:
        return "absent"


def redis_url() -> str:
    """For a module that needs the URL at import (a broker made at import): the workers' environment,
    or the adapter's own ``--url``."""
    url = os.environ.get("BENCH_REDIS_URL")
    if not url and "--url" in sys.argv[:-1]:
        url = sys.argv[sys.argv.index("--url") + 1]
    return url or "redis://127.0.0.1:6379/0"


def check_url(url: str) -> None:
    """Only a loopback Redis: the driver's throwaway servers, never a shared one by mistake."""
    parts = urlsplit(url)
    if parts.scheme != "redis" or parts.hostname not in ("127.0.0.1", "localhost") or not parts.port:
        raise SystemExit(f"refusing {url!r}: the peers bench runs against a throwaway redis-server on 127.0.0.1 only")


class Adapter:
    """One system.  Subclasses fill in how it enqueues, runs workers and says "all done"."""

    name = "?"

    def __init__(self, url: str, workdir: Path) -> None:
        self.url = url
        self.workdir = workdir
        self.redis = Redis.from_url(url, socket_timeout=60)
        self.procs: list[subprocess.Popen[bytes]] = []
        self.timing = workdir / "timing.json"
        self.callback = workdir / "callback.json"

    # --- what a system provides ------------------------------------------------------------
    def enqueue(self, n: int, kind: str) -> float | None:
        """Enqueue n tasks of ``kind`` ("noop" or "sleep") its fastest documented way; may return the
        seconds it measured itself (a Node producer), else None and the caller's clock counts."""
        raise NotImplementedError

    def queued(self) -> int:
        raise NotImplementedError

    def worker_cmds(self, workload: str, config: str, count: int, kind: str) -> list[list[str]]:
        raise NotImplementedError

    def drained(self, n: int, workload: str) -> str:
        """'' when the system itself says all n are done; otherwise what is left."""
        raise NotImplementedError

    def batch(self, n: int, tag: str) -> float | None:
        """W3: enqueue n tasks and a completion callback; may return the wall time it started enqueueing."""
        raise NotImplementedError

    def prepare(self, workload: str, config: str) -> None:
        """Anything to set up in Redis before enqueueing (a service queue's settings)."""

    def versions(self) -> dict[str, str]:
        return {}

    def env(self) -> dict[str, str]:
        return {}

    # --- workers -------------------------------------------------------------------------------
    def start_workers(self, workload: str, config: str, count: int, kind: str, n: int) -> None:
        env = dict(os.environ)
        paths = [str(ROOT), env.get("PYTHONPATH", "")]
        env |= {
            "PYTHONPATH": os.pathsep.join(p for p in paths if p),
            "BENCH_REDIS_URL": self.url,
            "BENCH_N": str(n),
            "BENCH_TIMING": str(self.timing),
            "BENCH_CALLBACK": str(self.callback),
            "BENCH_CONFIG": config,
            "BENCH_KIND": kind,
            "BENCH_WORKLOAD": workload,
        }
        env |= self.env()
        for i, cmd in enumerate(self.worker_cmds(workload, config, count, kind)):
            out = open(self.workdir / f"worker-{i}.log", "wb")  # noqa: SIM115 (kept open for the child)
            self.procs.append(
                subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
            )
            out.close()

    def check_workers(self) -> None:
        for proc in self.procs:
            code = proc.poll()
            if code not in (None, 0):
                raise RuntimeError(f"a {self.name} worker exited with code {code}: {self.worker_log()}")

    def worker_log(self) -> str:
        text = "\n".join(p.read_text(errors="replace")[-1500:] for p in sorted(self.workdir.glob("worker-*.log")))
        return text.strip()[-3000:]

    def stop_workers(self, grace: float = 5.0) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for proc in self.procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(max(0.05, deadline - time.monotonic()))
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)  # the group: forked children (dramatiq, saq) too
            if proc.poll() is None:
                proc.wait(10)
        self.procs = []

    def wait_timing(self, timeout: float = PROCESS_TIMEOUT) -> dict[str, Any]:
        def ready() -> bool:
            self.check_workers()
            if self.timing.exists():
                return True
            if self.procs and all(p.poll() is not None for p in self.procs) and not self.timing.exists():
                raise RuntimeError(f"{self.name}: every worker exited before the N-th task ended: {self.worker_log()}")
            return False

        wait_for(ready, timeout, f"{self.name}: the N-th task's end")
        return read_json(self.timing)

    def wait_drained(self, n: int, workload: str, timeout: float = 60.0) -> None:
        left = [""]

        def done() -> bool:
            left[0] = self.drained(n, workload)
            return not left[0]

        try:
            wait_for(done, timeout, "all done", interval=0.05)
        except TimeoutError:
            raise RuntimeError(f"{self.name} did not report all done: {left[0]}") from None

    # --- readings -------------------------------------------------------------------------------
    def used_memory(self) -> int:
        return int(self.redis.info("memory")["used_memory"])

    def redis_cpu(self) -> float:
        cpu = self.redis.info("cpu")
        return float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"])

    def commands(self) -> int:
        stats = self.redis.info("commandstats")
        return sum(
            int(v["calls"])
            for k, v in stats.items()
            if k.removeprefix("cmdstat_").split("|")[0] not in EXCLUDED_COMMANDS
        )

    # --- workloads --------------------------------------------------------------------------------
    def w1(self, n: int) -> dict[str, Any]:
        mem0 = self.used_memory()
        t0 = time.perf_counter()
        own = self.enqueue(n, "noop")
        elapsed = time.perf_counter() - t0 if own is None else own
        mem1 = self.used_memory()
        queued = self.queued()
        if queued != n:
            raise RuntimeError(f"{self.name} reports {queued} queued after enqueueing {n}")
        return {"rate": n / elapsed, "seconds": elapsed, "bytes_per_task": (mem1 - mem0) / n}

    def process(self, workload: str, config: str, n: int, kind: str) -> dict[str, Any]:
        """W2, W4, W4c, W5: fill, reset Redis's counters, one worker process, rate between its own times."""
        self.enqueue(n, kind)
        queued = self.queued()
        if queued != n:
            raise RuntimeError(f"{self.name} reports {queued} queued after enqueueing {n}")
        self.redis.config_resetstat()
        cpu0 = self.redis_cpu()
        self.start_workers(workload, config, 1, kind, n)
        timing = self.wait_timing()
        time.sleep(SETTLE)
        calls = self.commands()
        cpu1 = self.redis_cpu()
        self.wait_drained(n, workload)
        span = timing["last"] - timing["first"]
        return {
            "rate": n / span,
            "seconds": span,
            "commands_per_task": calls / n,
            "redis_cpu_us_per_task": (cpu1 - cpu0) / n * 1e6,
        }

    def w3(self, config: str, n: int) -> dict[str, Any]:
        """Two long-running workers, warmed up by a 2-task batch; the clock runs from the first enqueue
        call to the completion callback's first line."""
        self.start_workers("W3", config, 2, "noop", 0)
        self.batch(2, "warm")

        def called() -> bool:
            self.check_workers()
            return self.callback.exists()

        wait_for(called, 60, f"{self.name}: the warm-up's callback")
        self.callback.unlink()
        time.sleep(0.2)  # let the warm-up's tail (acks, batch-end bookkeeping) settle
        t0 = time.time()
        own = self.batch(n, "main")
        start = t0 if own is None else own
        wait_for(called, PROCESS_TIMEOUT, f"{self.name}: the completion callback")
        elapsed = read_json(self.callback)["t"] - start
        self.wait_drained(n, "W3")
        return {"seconds": elapsed, "rate": n / elapsed}

    def run(self, workload: str, config: str, n: int) -> dict[str, Any]:
        self.prepare(workload, config)
        if workload == "W1":
            return self.w1(n)
        if workload == "W3":
            return self.w3(config, n)
        kind = "sleep" if workload == "W5" else "noop"
        return self.process(workload, config, n, kind)


def _exit_on_term(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)


def main(factory: Callable[[str, Path], Adapter], argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="one peers-bench run of one system (see bench.peers.run)")
    parser.add_argument("--url", required=True)
    parser.add_argument("--workload", required=True, choices=WORKLOADS)
    parser.add_argument("--n", type=int, required=True)
    parser.add_argument("--config", default="")
    parser.add_argument("--keep", action="store_true", help="keep the worker logs")
    args = parser.parse_args(argv)
    check_url(args.url)
    signal.signal(signal.SIGTERM, _exit_on_term)  # the driver's limit: stop the workers on the way out
    workdir = Path(tempfile.mkdtemp(prefix="rq-serviceq-peers-"))
    adapter = factory(args.url, workdir)
    config = args.config or CONFIGS[adapter.name].get(args.workload, ("default",))[0]
    record: dict[str, Any] = {"system": adapter.name, "workload": args.workload, "config": config, "n": args.n}
    ok = False
    try:
        record |= adapter.run(args.workload, config, args.n)
        record["versions"] = adapter.versions()
        ok = True
    except Exception as exc:
        record["error"] = f"{type(exc).__name__}: {exc}"
        traceback.print_exc(file=sys.stderr)
        logs = adapter.worker_log()
        if logs:
            record["worker_log_tail"] = logs[-1500:]
    finally:
        adapter.stop_workers()
        if not args.keep:
            for path in workdir.glob("*"):
                path.unlink(missing_ok=True)
            workdir.rmdir()
    print("RESULT " + json.dumps(record), flush=True)
    return 0 if ok else 1


__all__ = ["PAYLOAD", "Adapter", "main"]
