"""What every system's task functions call, so that every system is timed the same way.

Standard library only: it is imported inside each peer's venv.  ``begin()`` at the
start of a task, ``end()`` at its end; the process whose ``end()`` is the N-th
(``BENCH_N``) writes the wall time of its first ``begin()`` and of that ``end()``
to ``BENCH_TIMING``.  Worker start-up therefore falls outside every system's rate
alike.  ``mark_callback()`` is a completion callback's first line (W3).
"""

from __future__ import annotations

import json
import os
import threading
import time
from typing import Any

PAYLOAD = {"user_id": 12345, "action": "resize", "size": [640, 480], "tag": "bench"}

_lock = threading.Lock()
_first: float | None = None
_count = 0
_target = int(os.environ.get("BENCH_N") or 0)


def _write(path: str, record: dict[str, float | int]) -> None:
    """Written to a temporary name and renamed, so the reader never sees half a file."""
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w") as out:
        json.dump(record, out)
    os.replace(tmp, path)


def begin() -> None:
    global _first
    if _first is None:
        now = time.time()
        with _lock:
            if _first is None:
                _first = now


def end() -> None:
    global _count
    now = time.time()
    with _lock:
        _count += 1
        reached = _count == _target
    path = os.environ.get("BENCH_TIMING")
    if reached and path and _first is not None:
        _write(path, {"first": _first, "last": now, "count": _target, "pid": os.getpid()})


def noop(*_: Any) -> None:
    """The no-op task (W1-W4), however its system calls it."""
    begin()
    end()


def sleep10(*_: Any) -> None:
    """The 10 ms I/O-bound task (W5)."""
    begin()
    time.sleep(0.01)
    end()


def mark_callback() -> None:
    path = os.environ.get("BENCH_CALLBACK")
    if path:
        _write(path, {"t": time.time(), "pid": os.getpid()})
