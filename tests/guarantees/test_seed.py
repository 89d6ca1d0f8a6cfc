"""The seed's worked test: 7 tasks, retry_limit 5, with 1 and with 3 workers."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from redis import Redis

from rq_serviceq import ServiceQ
from tests import tasks

SEED_TASKS = [{"name": f"Tuhin{i}", "gender": "male", "country": "india"} for i in range(1, 8)]
EXPECTED = {  # name -> (passed?, total_retry_attempts, remark)
    "Tuhin1": (True, 0, "SUCCESS | the task was successful"),
    "Tuhin2": (True, 0, "SUCCESS | the task was successful"),
    "Tuhin3": (False, 0, "NO_RETRY | user do not have whatsapp number"),
    "Tuhin4": (True, 3, "SUCCESS | the task was finally successful"),
    "Tuhin5": (True, 0, "SUCCESS | the task was successful"),
    "Tuhin6": (False, 5, "RETRY | send for retry"),
    "Tuhin7": (True, 0, "SUCCESS | the task was successful"),
}


@pytest.mark.parametrize("workers", [1, 3])
def test_seed_worked_example(make_sq: Callable[..., ServiceQ], conn: Redis, workers: int) -> None:
    sq = make_sq("drag", worker_count=workers, waiting_period=0.05, resting_period=0.05, auto_start=True)
    sq.set_retry_config(retry_limit=5, loop_backoff=0.03)
    sq.set_task_function(tasks.seed_task)
    sq.set_batch_end_callback(tasks.store_report)
    sq.set_batch_begin_callback(tasks.store_begin)

    ids = sq.push_many(SEED_TASKS)
    report = sq.wait_for_batch(timeout=60)

    assert (report["total_submitted"], report["total_success"], report["total_failed"]) == (7, 5, 2)
    assert report["total_pending"] == 0 and report["pending_tasks"] == []
    assert report["status"] == "FINISHED" and sq.get_status() == "FINISHED"
    assert report["serviceq_id"] == sq.id and report["serviceq_name"] == "drag"
    assert report["end_time"] >= report["start_time"]
    assert report["batch_duration"] == pytest.approx(report["end_time"] - report["start_time"], abs=0.002)
    seen = {}
    for passed, listed in ((True, report["passed_tasks"]), (False, report["failed_tasks"])):
        for qtask in listed:
            seen[qtask["task"]["name"]] = (passed, qtask["total_retry_attempts"], qtask["remark"])
            assert qtask["batch_id"] == report["batch_id"] and qtask["serviceq_id"] == sq.id
            assert qtask["created_at"] <= qtask["last_retry_timestamp"] <= report["end_time"]
    assert seen == EXPECTED
    assert sorted(q["task_id"] for q in report["passed_tasks"] + report["failed_tasks"]) == sorted(ids)

    # Callbacks: one begin, one end, and the end callback got the same report.
    assert conn.llen("test:batch_begin") == 1
    assert conn.get(f"test:batch_end_count:{report['batch_id']}") == b"1"
    sq.join(timeout=30)  # workers close themselves once the batch is done
    assert all(p.returncode == 0 for p in sq._processes)
