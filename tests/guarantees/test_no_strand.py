"""No batch can strand: whatever is done to a service queue's keys by hand or by RQ's own tools,
no script fails half-way, no worker dies, and every batch ends once."""

from __future__ import annotations

import subprocess
from collections.abc import Callable

import pytest
from redis import Redis
from redis.exceptions import ResponseError
from rq.queue import Queue
from rq.serializers import JSONSerializer

from rq_serviceq import ServiceQ
from rq_serviceq.store import scripts
from rq_serviceq.worker.claim import claim
from tests import tasks
from tests.conftest import as_bytes, present, wait_until
from tests.rq_compat.test_rq_tools import _rq

Spawn = Callable[..., subprocess.Popen[bytes]]
REMOVED = "NO_RETRY | removed from the queue outside rq-serviceq"


def _batches(sq: ServiceQ) -> list[str]:
    return [b["batch_id"] for b in sq.batches()]


def _returning(make_sq: Callable[..., ServiceQ], **config: object) -> ServiceQ:
    """A service queue no worker of its own works, whose tasks return what they say (``tasks.returns``)."""
    sq = make_sq("drag", worker_count=0, **config)
    sq.set_task_function(tasks.returns)
    return sq


def _alive(proc: subprocess.Popen[bytes]) -> bool:
    return proc.poll() is None


def test_ids_of_deleted_job_hashes_left_on_the_queue_are_dropped_not_adopted(
    make_sq: Callable[..., ServiceQ], conn: Redis, spawn_cli_worker: Spawn
) -> None:
    sq = _returning(make_sq)
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
    sq = _returning(make_sq)
    foreign = Queue("drag-pending", connection=conn, serializer=JSONSerializer).enqueue("tests.tasks.returns", {})
    ids = sq.push_many([{"value": True}] * 3)
    worker = spawn_cli_worker()
    report = sq.wait_for_batch(timeout=20)
    assert sorted(q["task_id"] for q in report["passed_tasks"]) == sorted(ids)
    assert conn.zscore(sq.keys.failed, foreign.id) is not None
    status, why = conn.hmget(f"rq:job:{foreign.id}", "status", "exc_info")
    assert status == b"failed" and b"not a task of service queue drag" in as_bytes(why)
    assert _alive(worker)


@pytest.mark.parametrize(
    ("field", "stored"),
    [
        ("retry_limit", "abc"),
        ("retry_limit", "-1"),
        ("resting_period", "abc"),
        ("resting_period", "nan"),
        ("loop_backoff", "1e999"),
        ("loop_backoff", "-5"),
        ("result_ttl", "abc"),
        ("result_ttl", "inf"),
    ],
)
def test_a_setting_stored_by_hand_loads_as_its_default_in_the_scripts_too(
    make_sq: Callable[..., ServiceQ], conn: Redis, spawn_cli_worker: Spawn, field: str, stored: str
) -> None:
    sq = _returning(make_sq)
    if field != "retry_limit":
        sq.set_retry_config(retry_limit=2)  # so that the retry settings are read
    conn.hset(sq.keys.state, field, stored)
    retried, passed = sq.push_many([{"value": [False, "RETRY | again"]}, {"value": True}])
    worker = spawn_cli_worker()
    report = sq.wait_for_batch(timeout=20)
    assert [q["task_id"] for q in report["passed_tasks"]] == [passed]
    (failed,) = report["failed_tasks"]
    assert (failed["task_id"], failed["total_retry_attempts"]) == (retried, 0 if field == "retry_limit" else 2)
    assert _alive(worker)
    if field == "result_ttl":  # the default, 500 s, as Python reads it
        assert 0 < conn.ttl(f"rq:results:{retried}") <= 500


def test_a_task_claim_fails_is_kept_in_rqs_failed_registry_for_report_ttl(
    make_sq: Callable[..., ServiceQ], conn: Redis, spawn_cli_worker: Spawn
) -> None:
    sq = _returning(make_sq)
    sq.set_report_config(report_ttl=3600)
    lost, queued = sq.push_many([{"value": True}] * 2)
    claim(conn, sq.keys, "ghost", sq.settings, 1, 1.0)  # a worker that dies holding `lost`
    sq.stop(timeout=0.2)  # `queued` is failed by STOP_SLICE; `lost` is left to the claim after its lease
    spawn_cli_worker()
    wait_until(lambda: conn.zscore(sq.keys.failed, lost) is not None)
    now = conn.time()[0]
    for task_id in (lost, queued):
        assert now + 3500 < present(conn.zscore(sq.keys.failed, task_id)) <= now + 3601, task_id


def test_tasks_rq_requeue_puts_back_together_join_one_batch(
    make_sq: Callable[..., ServiceQ], conn: Redis, spawn_cli_worker: Spawn
) -> None:
    sq = _returning(make_sq, resting_period=0.3)  # one task a claim: the first ends before the next
    sq.set_batch_end_callback(tasks.store_report)
    ids = sq.push_many([{"value": [False, "NO_RETRY | no number"]}] * 2)
    first = sq.current_batch_id()
    spawn_cli_worker()
    sq.wait_for_batch(timeout=20, batch_id=first)
    assert _rq("requeue", "--queue", "drag-pending", "--all").returncode == 0
    wait_until(lambda: all(conn.hexists(f"rq:job:{i}-r1", "sq_final") for i in ids), timeout=20)
    wait_until(lambda: len(_batches(sq)) == 2 and sq.get_batch_summary()["status"] == "FINISHED", timeout=20)
    report = sq.get_batch_report()
    assert sorted(q["task_id"] for q in report["failed_tasks"]) == sorted(f"{i}-r1" for i in ids)
    wait_until(lambda: conn.llen("test:batch_end") == 2)
    assert [int(conn.get(f"test:batch_end_count:{b}") or 0) for b in _batches(sq)] == [1, 1]


def test_tasks_removed_by_queue_remove_are_counted_failed_and_the_batch_ends(
    make_sq: Callable[..., ServiceQ], conn: Redis, spawn_cli_worker: Spawn
) -> None:
    sq = _returning(make_sq)
    ids = sq.push_many([{"value": True}] * 5)
    queue = Queue("drag-pending", connection=conn, serializer=JSONSerializer)
    for task_id in ids[:2]:
        queue.remove(task_id)  # RQ's public API: the ids leave the list, the jobs still say queued
    spawn_cli_worker()
    report = sq.wait_for_batch(timeout=20)
    assert sorted(q["task_id"] for q in report["passed_tasks"]) == sorted(ids[2:])
    remarks = {q["task_id"]: q["remark"] for q in report["failed_tasks"]}
    assert set(remarks) == set(ids[:2])
    assert all(r.startswith(REMOVED) and "Queue.remove" in r for r in remarks.values())


def test_tasks_a_dead_plain_rq_worker_left_in_rqs_intermediate_queue_are_run(
    make_sq: Callable[..., ServiceQ], conn: Redis, spawn_cli_worker: Spawn
) -> None:
    sq = _returning(make_sq)
    ids = sq.push_many([{"value": True}] * 3)
    taken = Queue.lmove(conn, sq.keys.queue, None)  # a plain `rq worker`'s dequeue; it dies right after
    assert taken is not None and conn.llen(f"{sq.keys.queue}:intermediate") == 1
    spawn_cli_worker()
    report = sq.wait_for_batch(timeout=20)
    assert sorted(q["task_id"] for q in report["passed_tasks"]) == sorted(ids)
    assert conn.llen(f"{sq.keys.queue}:intermediate") == 0


def test_a_push_whose_arguments_are_not_triples_writes_nothing(make_sq: Callable[..., ServiceQ], conn: Redis) -> None:
    sq = _returning(make_sq)
    keys, named = scripts.layout("push", sq.keys, finalize_lease=0)
    args = [*named, "new-batch", "drag-pending", "t1", "{}", "one", "t2", "{}"]
    before = conn.hgetall(sq.keys.state)
    with pytest.raises(ResponseError, match="groups of 3"):
        conn.eval(scripts.source("push"), len(keys), *keys, *args)  # a producer in another language, one short
    assert conn.hgetall(sq.keys.state) == before
    assert not conn.exists("rq:job:t1", sq.keys.queue, sq.keys.batch("new-batch"))


def test_counters_damaged_by_hand_do_not_stop_claims(
    make_sq: Callable[..., ServiceQ], conn: Redis, spawn_cli_worker: Spawn
) -> None:
    sq = _returning(make_sq)
    ids = sq.push_many([{"value": True}] * 3)
    conn.hset(f"rq:job:{ids[0]}", "sq_claims", "abc")
    conn.hset(sq.keys.state, "pause_gen", "1e999")
    worker = spawn_cli_worker()
    report = sq.wait_for_batch(timeout=20)
    assert sorted(q["task_id"] for q in report["passed_tasks"]) == sorted(ids)
    sq.pause()  # the generation counts on from 0
    assert conn.hget(sq.keys.state, "pause_gen") == b"1" and _alive(worker)
