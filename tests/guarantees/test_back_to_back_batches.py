"""Under ``auto_start`` every batch gets workers, however soon after the last one it is pushed.

A batch's burst workers leave once it has ended.  A push that opens the next batch just then used to
count them as still working (``start()`` took them for live while they were still registered) and start
none: the batch waited, PENDING, with no worker.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from rq_serviceq import ServiceQ
from tests import tasks

BATCHES = 50


@pytest.mark.slow
def test_every_batch_pushed_back_to_back_under_auto_start_gets_workers(make_sq: Callable[..., ServiceQ]) -> None:
    sq = make_sq("drag", worker_count=4, auto_start=True, waiting_period=0, resting_period=0)
    sq.set_task_function(tasks.returns)
    began = time.monotonic()
    for n in range(BATCHES):
        sq.push_many([{"value": True}] * 5)
        report = sq.wait_for_batch(timeout=30)
        assert report["total_success"] == 5, f"batch {n}: {report}"
    print(f"{BATCHES} batches in {time.monotonic() - began:.1f} s")
