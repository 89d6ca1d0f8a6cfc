"""The producer role the HTTP service pushes with: no worker processes, no user code in the pusher."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest
from redis import Redis

from rq_serviceq import ServiceQ
from tests import tasks


def child_pids() -> set[int]:
    found: set[int] = set()
    for task in Path(f"/proc/{os.getpid()}/task").glob("*/children"):
        found.update(int(pid) for pid in task.read_text().split())
    return found


def test_producer_push_spawns_nothing_and_a_worker_runs_the_begin_callback_once(
    conn: Redis, spawn_cli_worker: Callable[..., object]
) -> None:
    before = child_pids()
    sq = ServiceQ("drag", connection=conn, role="producer")
    sq.set_worker_config(worker_count=2, auto_start=True)
    sq.set_task_function(tasks.seed_task)
    sq.set_batch_begin_callback(tasks.store_begin)

    results = sq.push_chunks([{"name": "Tuhin1"}, {"name": "Tuhin2"}])
    assert results[0].opened and len(results[0].task_ids) == 2
    sq.push({"name": "Tuhin5"})  # joins the batch: no second begin

    assert sq._processes == [] and child_pids() == before  # auto_start was not acted on here
    assert conn.llen("test:batch_begin") == 0  # the begin callback did not run in the pusher
    batch_id = results[0].batch_id
    assert conn.zscore(sq.keys.finalize, f"begin:{batch_id}") is not None  # left to a worker, due now

    spawn_cli_worker("drag-pending", "--burst")
    report = sq.wait_for_batch(timeout=30)
    assert (report["batch_id"], report["total_success"]) == (batch_id, 3)
    begun = [json.loads(x) for x in conn.lrange("test:batch_begin", 0, -1)]
    assert [b["batch_id"] for b in begun] == [batch_id]  # exactly once, by the worker
    assert conn.hget(sq.keys.batch(batch_id), "begin_callback") == b"ok"


def test_producer_refuses_to_start_workers(conn: Redis) -> None:
    sq = ServiceQ("drag", connection=conn, role="producer")
    with pytest.raises(RuntimeError, match="rq-serviceq worker drag"):
        sq.start()
    with pytest.raises(ValueError, match="role"):
        ServiceQ("drag", connection=conn, role="consumer")  # type: ignore[arg-type]


def test_default_role_still_runs_the_begin_callback_in_the_pusher(conn: Redis) -> None:
    sq = ServiceQ("drag", connection=conn)
    sq.set_worker_config(worker_count=0)
    sq.set_batch_begin_callback(tasks.store_begin)
    sq.push({"name": "Tuhin1"})
    assert conn.llen("test:batch_begin") == 1


def test_a_push_through_a_handle_whose_queue_was_deleted_elsewhere_writes_nothing(conn: Redis) -> None:
    sq = ServiceQ("drag", connection=conn, role="producer")
    sq.push({"n": 1})  # settings now cached for a second
    ServiceQ("drag", connection=conn).delete()
    with pytest.raises(LookupError, match="deleted"):
        sq.push({"n": 2})
    assert conn.keys("*") == []  # not half a service queue (a state hash without id or name)
