"""Retries run when due: never early, and within the 0.25 s aim after."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from redis import Redis

from rq_serviceq import ServiceQ
from tests import tasks

AIM = 0.25


@pytest.mark.parametrize(("workers", "n_tasks", "resting"), [(1, 1, 0.1), (3, 5, 0.0)])
def test_gaps_follow_the_formula(
    make_sq: Callable[..., ServiceQ], conn: Redis, workers: int, n_tasks: int, resting: float
) -> None:
    backoff, limit = 0.2, 4
    sq = make_sq("timing", worker_count=workers, resting_period=resting)
    sq.set_retry_config(retry_limit=limit, loop_backoff=backoff)
    sq.set_task_function(tasks.record_attempt)
    ids = sq.push_many([{"fail": True} for _ in range(n_tasks)])
    report = sq.wait_for_batch(timeout=60)
    assert report["total_failed"] == n_tasks

    for task_id in ids:
        starts = [float(x) for x in conn.lrange(f"test:attempts:{task_id}", 0, -1)]
        assert len(starts) == limit + 1  # the first try and `limit` retries
        for n in range(1, limit + 1):
            due_gap = resting + (n - 1) * backoff
            gap = starts[n] - starts[n - 1]
            assert gap >= due_gap, f"retry {n} of {task_id} ran {due_gap - gap:.3f} s early"
            assert gap <= due_gap + AIM, f"retry {n} of {task_id} ran {gap - due_gap:.3f} s late"
