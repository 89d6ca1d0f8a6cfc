"""One ServiceQ object shared by a web server's threads: no double start, no zombie children."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

from rq_serviceq import ServiceQ
from tests import tasks
from tests.conftest import wait_until


def test_threads_starting_workers_at_once_start_worker_count(make_sq: Callable[..., ServiceQ]) -> None:
    sq = make_sq("drag", worker_count=3, auto_start=False)
    sq.set_task_function(tasks.slow)
    sq.push_many([{"seconds": 0.3}] * 6)
    started: list[int] = []
    gate = threading.Barrier(8)

    def start() -> None:
        gate.wait()
        started.append(sq.start())

    threads = [threading.Thread(target=start) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sum(started) == 3 and len(sq._processes) == 3
    sq.wait_for_batch(timeout=60)


def test_finished_workers_leave_no_zombies(make_sq: Callable[..., ServiceQ]) -> None:
    sq = make_sq("drag", worker_count=2, auto_start=True)
    sq.set_task_function(tasks.returns)
    sq.push_many([{"value": True}] * 4)
    sq.wait_for_batch(timeout=60)
    procs = list(sq._processes)
    assert len(procs) == 2
    # Nobody here calls wait() or poll(): the processes are reaped all the same.
    wait_until(lambda: all(p.returncode is not None for p in procs), timeout=30)
    assert not [p.pid for p in procs if Path(f"/proc/{p.pid}").exists()]
