"""RQ's own tools on a service queue: whatever they do, no batch hangs and no task is counted twice."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from redis import Redis
from rq.job import Job
from rq.queue import Queue
from rq.serializers import JSONSerializer

from rq_serviceq import ServiceQ
from rq_serviceq.worker.reconcile import Audit, reconcile
from tests import tasks
from tests.conftest import drain, present, wait_until

ROOT = Path(__file__).resolve().parents[2]
REMOVED = "NO_RETRY | removed from the queue outside rq-serviceq"


def _rq(*args: str) -> subprocess.CompletedProcess[bytes]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "rq.cli", *args], env=env, cwd=ROOT, capture_output=True, timeout=60)


def test_rq_empty_fails_the_removed_tasks_and_the_batch_ends(make_sq: Callable[..., ServiceQ]) -> None:
    sq = make_sq("drag", worker_count=0)
    sq.set_task_function(tasks.returns)
    sq.push_many([{"value": True}] * 5)
    assert _rq("empty", "drag-pending").returncode == 0
    drain(sq)
    report = sq.wait_for_batch(timeout=10)
    assert (report["status"], report["total_failed"], report["total_pending"]) == ("FINISHED", 5, 0)
    assert all(q["remark"].startswith(REMOVED) and "rq empty" in q["remark"] for q in report["failed_tasks"])


def test_job_delete_and_cancel_are_counted_failed(make_sq: Callable[..., ServiceQ], conn: Redis) -> None:
    sq = make_sq("drag", worker_count=0)
    sq.set_task_function(tasks.returns)
    kept, deleted, canceled = sq.push_many([{"value": True}] * 3)
    Job.fetch(deleted, connection=conn, serializer=JSONSerializer).delete()
    Job.fetch(canceled, connection=conn, serializer=JSONSerializer).cancel()
    drain(sq)
    report = sq.wait_for_batch(timeout=10)
    assert [q["task_id"] for q in report["passed_tasks"]] == [kept]
    remarks = {q["task_id"]: q["remark"] for q in report["failed_tasks"]}
    assert set(remarks) == {deleted, canceled}
    assert remarks[deleted].startswith(REMOVED) and "deleted" in remarks[deleted]
    assert remarks[canceled].startswith(REMOVED) and "canceled" in remarks[canceled]
    assert (report["total_submitted"], report["total_pending"]) == (3, 0)


def test_the_audit_of_a_big_batch_waits_in_proportion_to_it_before_its_next_pass(
    make_sq: Callable[..., ServiceQ], conn: Redis
) -> None:
    """An idle worker audits its batch's open tasks, every one of them in each pass: at a fixed pace a
    million tasks waiting to retry would keep Redis busy auditing.  After a pass over N open tasks the
    next waits N / 2,500 s (at least 2 s), and a deleted task is still found by the pass after that."""
    sq = make_sq("drag", worker_count=0)
    ids = sq.push_many([{"value": True}] * 10_000)
    batch_id = sq.current_batch_id()
    assert batch_id is not None

    def audit() -> Audit:
        return reconcile(conn, sq.keys, "auditor", sq.settings, batch_id, 15.0)

    assert audit() == Audit()  # every task queued: as it should be
    assert 3_000 < conn.pttl(sq.keys.batch_audit(batch_id)) <= 4_000  # 10,000 x 0.4 ms
    Job.fetch(ids[0], connection=conn, serializer=JSONSerializer).delete()
    scans = conn.info("commandstats").get("cmdstat_sscan", {}).get("calls", 0)
    assert audit() == Audit()  # within the wait: no pass, not one open task read
    assert conn.info("commandstats").get("cmdstat_sscan", {}).get("calls", 0) == scans
    conn.pexpire(sq.keys.batch_audit(batch_id), 1)  # the wait is over
    wait_until(lambda: not conn.exists(sq.keys.batch_audit(batch_id)))
    assert audit().failed == 1


def test_rq_requeue_of_a_failed_task_counts_in_the_current_batch(make_sq: Callable[..., ServiceQ]) -> None:
    sq = make_sq("drag", worker_count=0)
    sq.set_task_function(tasks.returns)
    (failed_id,) = sq.push_many([{"value": [False, "NO_RETRY | no number"]}])
    drain(sq)
    first = sq.wait_for_batch(timeout=10)
    sq.push({"value": True})  # the current batch
    second_id = sq.current_batch_id()
    assert _rq("requeue", "--queue", "drag-pending", "--all").returncode == 0
    drain(sq)
    second = sq.wait_for_batch(timeout=10, batch_id=second_id)
    assert (second["total_submitted"], second["total_success"], second["total_failed"]) == (2, 1, 1)
    assert second["failed_tasks"][0]["task_id"] == f"{failed_id}-r1"
    assert sq.get_batch_report(first["batch_id"]) == first  # the old report is unchanged
    assert _rq("requeue", "--queue", "drag-pending", "--all").returncode == 0  # requeued once only
    drain(sq)
    assert sq.get_batch_report(second_id)["total_submitted"] == 2


def test_a_plain_rq_worker_never_swallows_a_task(make_sq: Callable[..., ServiceQ]) -> None:
    sq = make_sq("drag", worker_count=0)
    sq.set_task_function(tasks.returns)
    ids = sq.push_many([{"value": True}] * 3)
    plain = _rq("worker", "--burst", "-S", "rq.serializers.JSONSerializer", "drag-pending")
    assert b"ServiceQ task" in plain.stdout + plain.stderr  # the placeholder said what to run instead
    drain(sq)
    report = sq.wait_for_batch(timeout=10)
    assert sorted(q["task_id"] for q in report["passed_tasks"]) == sorted(ids)
    assert report["total_failed"] == 0


def test_a_plain_rq_worker_without_the_json_serializer_loses_no_task(make_sq: Callable[..., ServiceQ]) -> None:
    """Plain ``rq worker NAME-pending`` reads jobs as pickle: it cannot read a ServiceQ task's JSON call, so it
    prints RQ's own DeserializationError (no code of rq-serviceq runs in it, docs/rq.md).  No task is lost: each
    is still in its batch, and a ServiceQWorker gives them back and runs them, saying what to run instead."""
    sq = make_sq("drag", worker_count=0)
    sq.set_task_function(tasks.returns)
    ids = sq.push_many([{"value": True}] * 3)
    plain = _rq("worker", "--burst", "drag-pending")
    assert plain.returncode == 0 and b"DeserializationError" in plain.stdout + plain.stderr
    progress = sq.batch_progress(present(sq.current_batch_id()))
    assert (progress.total_pending, progress.total_success, progress.total_failed) == (3, 0, 0)

    right = _rq("worker", "--worker-class", "rq_serviceq.ServiceQWorker", "--burst", "drag-pending")
    said = (right.stdout + right.stderr).decode()
    assert right.returncode == 0, said
    assert "3 a plain rq worker took given back" in said, said
    assert "run `rq worker --worker-class rq_serviceq.ServiceQWorker drag-pending`" in said
    report = sq.wait_for_batch(timeout=30)
    assert sorted(q["task_id"] for q in report["passed_tasks"]) == sorted(ids)
    assert report["total_failed"] == 0


def test_stop_on_a_big_batch_returns_with_every_task_counted(make_sq: Callable[..., ServiceQ], conn: Redis) -> None:
    sq = make_sq("drag", worker_count=0)
    sq.set_task_function(tasks.returns)
    sq.set_retry_config(retry_limit=3, loop_backoff=60)
    sq.set_worker_config(resting_period=60)
    sq.push_many([{"value": False}] * 3)
    drain_once = sq.work_once
    for _ in range(3):
        drain_once()  # three tasks now wait a minute to retry
    sq.push_many([{"value": True}] * 20_000)
    batch_id = sq.stop()
    assert batch_id is not None
    report = sq.get_batch_report(batch_id)
    assert (report["status"], report["total_pending"], report["total_failed"]) == ("STOPPED", 0, 20_003)
    assert conn.llen(sq.keys.queue) == 0 and conn.zcard(sq.keys.retry) == 0
    assert not conn.exists(sq.keys.batch_open(batch_id))


def test_stop_after_a_worker_died_holding_a_task(make_sq: Callable[..., ServiceQ], conn: Redis) -> None:
    sq = make_sq("drag", worker_count=0)
    sq.set_task_function(tasks.slow)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    cmd = [sys.executable, "-m", "rq.cli", "worker", "-w", "tests.tasks.ShortLeaseWorker", "-q", "drag-pending"]
    worker = subprocess.Popen(cmd, env=env, cwd=ROOT)
    try:
        sq.push_many([{"seconds": 30}, {"seconds": 30}])
        wait_until(lambda: conn.zcard(sq.keys.leases) >= 1, timeout=20)
        worker.send_signal(signal.SIGKILL)
        worker.wait(10)
        batch_id = sq.stop(timeout=30)
    finally:
        if worker.poll() is None:
            worker.kill()
        worker.wait(10)
    report = sq.get_batch_report(batch_id)
    assert (report["status"], report["total_failed"], report["total_pending"]) == ("STOPPED", 2, 0)
    assert any("its worker was lost" in q["remark"] for q in report["failed_tasks"])


def test_delete_while_workers_run(
    make_sq: Callable[..., ServiceQ],
    conn: Redis,
    spawn_cli_worker: Callable[..., subprocess.Popen[bytes]],
    spawn_supervisor: Callable[..., subprocess.Popen[bytes]],
) -> None:
    sq = make_sq("drag", worker_count=1, auto_start=False)
    sq.set_task_function(tasks.slow)
    plain = spawn_cli_worker("drag-pending")
    supervisor = spawn_supervisor("drag")
    wait_until(lambda: len(sq.get_status_info()["worker_reports"]) == 2, timeout=20)
    sq.push_many([{"seconds": 0.2}] * 5)
    sq.delete()
    assert plain.wait(30) == 0
    assert b"was deleted" in (plain.stdout.read() if plain.stdout else b"")
    assert supervisor.wait(30) == 0
    assert not conn.exists(sq.keys.state) and not conn.sismember("rq:serviceq:names", "drag")
    assert Queue("drag-pending", connection=conn).count == 0
