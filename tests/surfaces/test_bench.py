"""The benchmark runs end to end at a tiny scale (speeds are not asserted: the machine is shared)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(180)
def test_bench_runs_and_prints_the_table(tmp_path: Path) -> None:
    out_json = tmp_path / "bench.json"
    cmd = [
        sys.executable,
        "-m",
        "bench",
        "--scale",
        "0.01",
        "--runs",
        "1",
        "--only",
        "push,bulk,sleep,roundtrips",
        "--json",
        str(out_json),
    ]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "| what | plain RQ | rq-serviceq | ratio |" in proc.stdout
    figures = json.loads(out_json.read_text())["figures"]
    assert {f["metric"] for f in figures} == {"push", "bulk", "sleep", "calls", "commands"}


def test_bench_refuses_unknown_rows() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--only", "nope"], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 2
    assert "unknown row" in proc.stderr
