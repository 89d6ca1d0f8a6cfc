"""One ServiceQ object shared by a web server's threads: no double start, no zombie children."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

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


def test_the_typed_reads_are_the_seed_maps_as_models(make_sq: Callable[..., ServiceQ]) -> None:
    """The surfaces read models through the facade; the seed's dicts are those models, dumped at the edge."""
    sq = make_sq("drag", worker_count=0, auto_start=False)
    sq.set_task_function(tasks.returns)
    sq.push_many([{"value": True}] * 3)
    sq.pause()
    progress = sq.batch_progress()
    assert (progress.queue_status, progress.status, progress.queued, progress.finalized) == (
        "PAUSED",
        "PENDING",
        3,
        False,
    )
    assert sq.queue_lengths().queued == 3 and sq.queue_lengths().in_flight == 0
    ticking = {"batch_duration", "eta_seconds"}  # a running batch's clock moves between two reads

    def steady(found: dict[str, Any]) -> dict[str, Any]:
        return {key: value for key, value in found.items() if key not in ticking}

    assert steady(sq.batch_report().model_dump()) == steady(sq.get_batch_report())
    assert steady(sq.status_info().model_dump()) == steady(sq.get_status_info())
    assert [steady(b.model_dump()) for b in sq.batch_history()] == [steady(b) for b in sq.batches()]
    (figures,) = ServiceQ.figures(sq.connection)
    assert (figures.name, figures.status, figures.queue_depth, figures.batch["submitted"]) == ("drag", "PAUSED", 3, 3)
    assert ServiceQ.names(sq.connection) == ["drag"] and ServiceQ.known("drag", sq.connection)
    assert not ServiceQ.known("other", sq.connection)
