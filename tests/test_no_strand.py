"""No batch can strand: whatever is done to a service queue's keys by hand or by RQ's own tools,
no script fails half-way, no worker dies, and every batch ends once."""

from __future__ import annotations

import subprocess
from collections.abc import Callable

from redis import Redis
from rq.queue import Queue
from rq.serializers import JSONSerializer

from rq_serviceq import ServiceQ
from tests import tasks

Spawn = Callable[..., subprocess.Popen[bytes]]


def _batches(sq: ServiceQ) -> list[str]:
    return [b["batch_id"] for b in sq.batches()]


def _alive(proc: subprocess.Popen[bytes]) -> bool:
    return proc.poll() is None


def test_ids_of_deleted_job_hashes_left_on_the_queue_are_dropped_not_adopted(
    make_sq: Callable[..., ServiceQ], conn: Redis, spawn_cli_worker: Spawn
) -> None:
    sq = make_sq("drag", worker_count=0)
    sq.set_task_function(tasks.returns)
    sq.pause()
    ids = sq.push_many([{"value": True}] * 3)
    first = sq.current_batch_id()
    conn.delete(*(f"rq:job:{i}" for i in ids))  # DEL of queued job hashes: their ids stay on the queue
    worker = spawn_cli_worker()
    report = sq.wait_for_batch(timeout=20, batch_id=first)  # the paused worker's audit fails them
    assert (report["total_failed"], report["total_pending"]) == (3, 0)
    sq.resume()
    later = sq.push_many([{"value": True}] * 10)
    second = sq.current_batch_id()
    report = sq.wait_for_batch(timeout=20, batch_id=second)
    assert sorted(q["task_id"] for q in report["passed_tasks"]) == sorted(later)
    assert _alive(worker)
    assert _batches(sq) == [second, first]  # no empty batch opened for the leftover ids
    assert conn.llen(sq.keys.queue) == 0


def test_an_rq_job_enqueued_on_the_pending_queue_is_filed_failed_and_the_batch_ends(
    make_sq: Callable[..., ServiceQ], conn: Redis, spawn_cli_worker: Spawn
) -> None:
    sq = make_sq("drag", worker_count=0)
    sq.set_task_function(tasks.returns)
    foreign = Queue("drag-pending", connection=conn, serializer=JSONSerializer).enqueue("tests.tasks.returns", {})
    ids = sq.push_many([{"value": True}] * 3)
    worker = spawn_cli_worker()
    report = sq.wait_for_batch(timeout=20)
    assert sorted(q["task_id"] for q in report["passed_tasks"]) == sorted(ids)
    assert conn.zscore(sq.keys.failed, foreign.id) is not None
    status, why = conn.hmget(f"rq:job:{foreign.id}", "status", "exc_info")
    assert status == b"failed" and b"not a task of service queue drag" in why
    assert _alive(worker)
