"""Bench-only environments under ``.bench/`` in the repo: never dependencies of rq-serviceq.

``python -m bench.peers.venvs`` makes one venv per Python peer (the peer, redis-py and
hiredis, pip-installed from the index), puts hiredis in ``.bench/extras`` for rq-serviceq
and RQ (which run in the project's venv) and ``npm install``s BullMQ 5 or newer and
ioredis into ``.bench/node``.  The driver calls ``ensure()`` and skips a system whose environment
could not be made, with one line saying so.  Standard library only.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
BENCH_DIR = ROOT / ".bench"
NODE_DIR = BENCH_DIR / "node"
# hiredis for the systems that run in the project's venv (rq-serviceq, RQ): pip-installed here with
# --target and put on their PYTHONPATH, so that every Python system parses replies alike and the
# project's venv is left as it is.
EXTRAS_DIR = BENCH_DIR / "extras"
PACKAGES = {
    "celery": ["celery[redis]", "redis", "hiredis", "packaging"],  # kombu's redis transport imports packaging
    "dramatiq": ["dramatiq[redis]", "redis", "hiredis"],
    "arq": ["arq", "redis", "hiredis"],
    "saq": ["saq", "redis", "hiredis", "typing_extensions"],  # saq imports it without requiring it
}
BULLMQ = ["bullmq@>=5", "ioredis"]  # BullMQ 6 leaves its Redis client, ioredis, to the user


def venv_python(system: str) -> Path:
    return BENCH_DIR / "venvs" / system / "bin" / "python"


def _base_python() -> str:
    """The interpreter the project's venv was made from: a venv made from a venv's python nests oddly."""
    return getattr(sys, "_base_executable", sys.executable)


def ensure_python(system: str, log: bool = True) -> str:
    """'' when the venv is ready (made now or before), else why it is not."""
    python = venv_python(system)
    marker = python.parent.parent / "bench-packages.json"
    wanted = PACKAGES[system]
    if python.exists() and marker.exists() and json.loads(marker.read_text()) == wanted:
        return ""
    if log:
        print(f"[peers] making {python.parent.parent} ({' '.join(wanted)})", file=sys.stderr, flush=True)
    shutil.rmtree(python.parent.parent, ignore_errors=True)
    made = subprocess.run([_base_python(), "-m", "venv", str(python.parent.parent)], capture_output=True, text=True)
    if made.returncode:
        return f"python -m venv failed: {made.stderr.strip()[-300:]}"
    pip = [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", *wanted]
    done = subprocess.run(pip, capture_output=True, text=True)
    if done.returncode:
        return f"pip install {' '.join(wanted)} failed: {done.stderr.strip()[-300:]}"
    marker.write_text(json.dumps(wanted))
    return ""


def ensure_node(log: bool = True) -> str:
    node, npm = shutil.which("node"), shutil.which("npm")
    if not node or not npm:
        return "node/npm not found on PATH"
    modules = NODE_DIR / "node_modules"
    if all((modules / name.partition("@>")[0] / "package.json").exists() for name in BULLMQ):
        return ""
    if log:
        print(f"[peers] npm install {' '.join(BULLMQ)} into {NODE_DIR}", file=sys.stderr, flush=True)
    NODE_DIR.mkdir(parents=True, exist_ok=True)
    package = NODE_DIR / "package.json"
    if not package.exists():
        package.write_text(json.dumps({"name": "rq-serviceq-bench-peers", "private": True}) + "\n")
    cmd = [npm, "install", "--no-audit", "--no-fund", "--silent", *BULLMQ]
    done = subprocess.run(cmd, cwd=NODE_DIR, capture_output=True, text=True)
    if done.returncode:
        return f"npm install {' '.join(BULLMQ)} failed: {done.stderr.strip()[-300:]}"
    return ""


def ensure_extras(log: bool = True) -> str:
    if (EXTRAS_DIR / "hiredis").is_dir():
        return ""
    if log:
        print(f"[peers] pip install --target {EXTRAS_DIR} hiredis", file=sys.stderr, flush=True)
    pip = [sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check", "--target", str(EXTRAS_DIR)]
    done = subprocess.run([*pip, "hiredis"], capture_output=True, text=True)
    if done.returncode:
        shutil.rmtree(EXTRAS_DIR, ignore_errors=True)
        return f"pip install --target {EXTRAS_DIR} hiredis failed: {done.stderr.strip()[-300:]}"
    return ""


def ensure(system: str) -> str:
    if system in ("rq-serviceq", "rq"):
        return ensure_extras()
    if system in PACKAGES:
        return ensure_python(system)
    if system == "bullmq":
        return ensure_node()
    return ""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.peers.venvs", description=__doc__.splitlines()[0])
    parser.add_argument("systems", nargs="*", default=["rq-serviceq", *PACKAGES, "bullmq"])
    args = parser.parse_args(argv)
    failed = 0
    for system in args.systems:
        why = ensure(system)
        print(f"{system}: {why or 'ready'}")
        failed += bool(why)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
