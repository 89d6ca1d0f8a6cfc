"""`rq worker --worker-class rq_serviceq.ServiceQWorker NAME-pending`, as an operator runs it."""

from __future__ import annotations

import subprocess
from collections.abc import Callable

import pytest
from redis import Redis
from rq.job import Job
from rq.registry import FailedJobRegistry, FinishedJobRegistry
from rq.serializers import JSONSerializer

from rq_serviceq import ServiceQ, ServiceQJob, ServiceQWorker
from rq_serviceq.task.stored import PLACEHOLDER_FUNC
from tests import tasks
from tests.conftest import wait_until


def test_burst_worker_waits_for_retries_then_exits(
    make_sq: Callable[..., ServiceQ], spawn_cli_worker: Callable[..., subprocess.Popen[bytes]]
) -> None:
    sq = make_sq("drag", worker_count=0)
    sq.set_retry_config(retry_limit=2, loop_backoff=0.3)
    sq.set_task_function(tasks.record_attempt)
    sq.push_many([{"fail": True}, {}])
    worker = spawn_cli_worker("drag-pending", "--burst")
    assert worker.wait(60) == 0
    report = sq.get_batch_report()
    assert report["status"] == "FINISHED"
    assert (report["total_success"], report["total_failed"]) == (1, 1)
    assert report["failed_tasks"][0]["total_retry_attempts"] == 2


def test_long_running_worker_shows_in_worker_reports(
    make_sq: Callable[..., ServiceQ], spawn_cli_worker: Callable[..., subprocess.Popen[bytes]]
) -> None:
    sq = make_sq("drag", worker_count=0)
    sq.set_task_function(tasks.returns)
    spawn_cli_worker("drag-pending")
    wait_until(lambda: sq.get_status_info()["worker_reports"])
    sq.push_many([{"value": True}, {"value": True}, {"value": [False, "NO_RETRY | x"]}])
    sq.wait_for_batch(timeout=30)
    (report,) = sq.get_status_info()["worker_reports"].values()
    assert {"id", "created_at", "status", "success_count", "failed_count", "uptime"} <= set(report)
    assert (report["success_count"], report["failed_count"], report["status"]) == (2, 1, "RUNNING")


def test_jobs_are_plain_rq_jobs_in_rq_registries(
    make_sq: Callable[..., ServiceQ], conn: Redis, spawn_cli_worker: Callable[..., subprocess.Popen[bytes]]
) -> None:
    sq = make_sq("drag", worker_count=0)
    sq.set_task_function(tasks.returns)
    ok, bad = sq.push_many([{"value": True}, {"value": [False, "NO_RETRY | x"]}])
    job = Job.fetch(ok, connection=conn, serializer=JSONSerializer)  # RQ's own class reads our hash
    assert job.origin == "drag-pending" and job.get_status() == "queued"
    # ... all but the task, which a short task keeps beside RQ's call (docs/rq.md): ServiceQJob reads it whole
    assert (job.func_name, list(job.args)) == (PLACEHOLDER_FUNC, [])
    assert ServiceQJob.fetch(ok, connection=conn).args == [{"value": True}]
    assert spawn_cli_worker("drag-pending", "--burst").wait(30) == 0
    assert ok in FinishedJobRegistry("drag-pending", connection=conn).get_job_ids()
    assert bad in FailedJobRegistry("drag-pending", connection=conn).get_job_ids()
    assert Job.fetch(bad, connection=conn, serializer=JSONSerializer).get_status() == "failed"
    fetched = ServiceQJob.fetch(ok, connection=conn)
    assert isinstance(fetched, ServiceQJob) and fetched.batch_id == sq.current_batch_id()


@pytest.mark.parametrize("queues", [["drag"], ["drag-pending", "other-pending"], []])
def test_worker_refuses_anything_but_one_pending_queue(conn: Redis, queues: list[str]) -> None:
    with pytest.raises(ValueError, match="exactly one service queue"):
        ServiceQWorker(queues, connection=conn)
