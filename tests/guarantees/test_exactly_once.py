"""Several worker processes, thousands of tasks, batches in a row: every count exact, every batch ends once."""

from __future__ import annotations

import json
import subprocess
from collections import Counter
from collections.abc import Callable

from redis import Redis

from rq_serviceq import ServiceQ
from tests import tasks
from tests.conftest import text, wait_until

RETRY_LIMIT = 2
# tests.tasks.mixed by i % 5: pass, NO_RETRY, pass on 2nd attempt, always raises, NoRetry
ATTEMPTS = {0: 1, 1: 1, 2: 2, 3: RETRY_LIMIT + 1, 4: 1}
PASSES = {0: True, 1: False, 2: True, 3: False, 4: False}


def test_four_workers_three_batches(
    make_sq: Callable[..., ServiceQ], conn: Redis, spawn_cli_worker: Callable[..., subprocess.Popen[bytes]]
) -> None:
    n = 2000
    sq = make_sq("bulk", worker_count=0)  # the four long-running CLI workers below do the work
    sq.set_retry_config(retry_limit=RETRY_LIMIT)
    sq.set_task_function(tasks.mixed)
    sq.set_batch_end_callback(tasks.store_report)
    workers = [spawn_cli_worker("bulk-pending") for _ in range(4)]
    wait_until(lambda: len(sq.get_status_info()["worker_reports"]) == 4)

    batch_ids = []
    for b in range(3):
        ids = sq.push_many([{"b": b, "i": i} for i in range(n)])
        assert len(set(ids)) == n
        report = sq.wait_for_batch(timeout=120)
        batch_ids.append(report["batch_id"])

        expected_passed = sum(PASSES[i % 5] for i in range(n))
        assert report["total_submitted"] == n
        assert (report["total_success"], report["total_failed"]) == (expected_passed, n - expected_passed)
        assert report["total_pending"] == 0 and report["status"] == "FINISHED"
        passed = [q["task_id"] for q in report["passed_tasks"]]
        failed = [q["task_id"] for q in report["failed_tasks"]]
        assert len(passed) == len(set(passed)) and len(failed) == len(set(failed))
        assert not set(passed) & set(failed)
        assert set(passed) | set(failed) == set(ids)
        for qtask in report["passed_tasks"] + report["failed_tasks"]:
            i = qtask["task"]["i"]
            assert qtask["batch_id"] == report["batch_id"]
            assert qtask["total_retry_attempts"] == ATTEMPTS[i % 5] - 1
            assert (qtask in report["passed_tasks"]) == PASSES[i % 5]

    # Each batch ended exactly once, and the callback saw the final counts.
    assert len(set(batch_ids)) == 3
    assert [conn.get(f"test:batch_end_count:{b}") for b in batch_ids] == [b"1"] * 3
    ends = [json.loads(r) for r in conn.lrange("test:batch_end", 0, -1)]
    assert [e["batch_id"] for e in ends] == batch_ids
    assert all(e["total_success"] + e["total_failed"] == e["total_submitted"] == n for e in ends)

    # With no worker dying, no task ran more often than its outcome needs.
    runs = Counter(text(r).rsplit(":", 1)[0] for r in conn.lrange("test:runs", 0, -1))
    assert runs == Counter({f"{b}:{i}": ATTEMPTS[i % 5] for b in range(3) for i in range(n)})

    # Work was shared, and RQ's worker registry counted it.
    reports = sq.get_status_info()["worker_reports"]
    assert sum(r["success_count"] + r["failed_count"] for r in reports.values()) == 3 * n
    assert all(w.poll() is None for w in workers)
