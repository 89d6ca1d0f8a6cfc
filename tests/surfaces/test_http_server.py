"""The HTTP service as a user runs it: `rq-serviceq serve` in its own process, a real Redis, real workers."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from redis import Redis

from rq_serviceq import ServiceQ
from rq_serviceq.store.keys import Keys
from rq_serviceq.testing import RedisServer
from tests import tasks
from tests.conftest import drain, stored_task, text
from tests.guarantees.test_seed import EXPECTED, SEED_TASKS
from tests.http_helpers import ServerProcess, running_server, wait_for

JSON = {"Content-Type": "application/json"}


@pytest.fixture(scope="module")
def server(redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One server for the main paths: flushes at 5 tasks or after 300 ms."""
    log = tmp_path_factory.mktemp("http") / "server.log"
    with running_server(redis_server.url, log, BATCH_MAX_SIZE="5", BATCH_MAX_DELAY_MS="300") as proc:
        yield proc


@pytest.fixture
def client(server: ServerProcess, conn: Redis) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.base, timeout=30) as http:
        yield http


def evalsha_calls(conn: Redis) -> int:
    return int(conn.info("commandstats").get("cmdstat_evalsha", {}).get("calls", 0))


def post_concurrently(base: str, path: str, bodies: list[Any]) -> list[httpx.Response]:
    async def go() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=len(bodies))
        async with httpx.AsyncClient(base_url=base, timeout=30, limits=limits) as http:
            return await asyncio.gather(*(http.post(path, json=body) for body in bodies))

    return asyncio.run(go())


def test_every_endpoint(client: httpx.Client, conn: Redis, server: ServerProcess) -> None:
    assert client.get("/healthz").json()["status"] == "ok"
    assert "/serviceqs/{name}/tasks/batch" in client.get("/openapi.json").json()["paths"]
    assert client.get("/docs").status_code == 200

    one = client.post("/serviceqs/drag/tasks", json={"n": 0})
    assert one.status_code == 201 and set(one.json()) == {"task_id", "batch_id"}
    many = client.post("/serviceqs/drag/tasks/batch", json={"tasks": [{"n": i} for i in range(1, 2501)]})
    assert many.status_code == 201
    body = many.json()
    assert body["total_enqueued"] == 2500 and len(set(body["task_ids"])) == 2500
    assert body["batch_id"] == one.json()["batch_id"] and body["message"] == "Successfully enqueued 2500 tasks in batch"
    assert conn.llen("rq:queue:drag-pending") == 2501

    assert client.get("/serviceqs").json() == {"serviceqs": [{"name": "drag", "status": "PENDING"}]}
    detail = client.get("/serviceqs/drag").json()
    assert detail["status_info"]["total_submitted"] == 2501 and detail["settings"]["name"] == "drag"

    put = client.put("/serviceqs/drag/worker-config", json={"worker_count": 0, "auto_start": False})
    assert (put.json()["worker_count"], put.json()["auto_start"]) == (0, False)
    assert client.put("/serviceqs/drag/retry-config", json={"retry_limit": 2}).json()["retry_limit"] == 2
    assert client.post("/serviceqs/drag/scale", json={"worker_count": 3}).json()["count"] == 3
    assert client.post("/serviceqs/drag/pause").json()["status"] == "PAUSED"
    assert client.post("/serviceqs/drag/resume").json()["status"] in ("PENDING", "RUNNING")
    assert client.post("/serviceqs/drag/pause").status_code == 200
    started = client.post("/serviceqs/drag/start").json()
    assert started["status"] != "PAUSED" and "rq-serviceq worker drag" in started["message"]

    stopped = client.post("/serviceqs/drag/stop").json()
    assert stopped["batch_id"] == body["batch_id"] and stopped["status"] == "STOPPED"
    report = client.get(f"/serviceqs/drag/batches/{body['batch_id']}", params={"outcome": "failed", "limit": 10})
    assert report.status_code == 200
    page = report.json()
    assert (page["total_failed"], len(page["failed_tasks"]), page["passed_tasks"]) == (2501, 10, [])
    assert page["failed_tasks"][0]["remark"].startswith("STOPPED |")
    assert page["status"] == "ENDING"  # its end work (report, batch-end callback) is a worker's, not the server's
    drain(ServiceQ.open("drag", connection=conn))
    assert client.get(f"/serviceqs/drag/batches/{body['batch_id']}/progress").json()["status"] == "STOPPED"
    assert client.get("/serviceqs/drag/batches").json()["batches"][0]["batch_id"] == body["batch_id"]
    progress = client.get("/serviceqs/drag/batches/latest/progress").json()
    assert (progress["total_failed"], progress["total_pending"], progress["eta_seconds"]) == (2501, 0, 0.0)

    requeued = client.post("/serviceqs/drag/requeue-failed").json()
    assert requeued["count"] == 2501
    assert client.delete("/serviceqs/drag").json()["status"] == "DELETED"
    assert client.get("/serviceqs/drag").status_code == 404
    assert conn.keys("rq:serviceq:drag*") == []


def test_flush_by_size_is_one_push_call(server: ServerProcess, conn: Redis) -> None:
    ServiceQ("drag", connection=conn)
    before = evalsha_calls(conn)
    started = time.monotonic()
    responses = post_concurrently(server.base, "/serviceqs/drag/tasks", [{"i": i} for i in range(5)])
    assert [r.status_code for r in responses] == [201] * 5
    assert time.monotonic() - started < 30
    assert evalsha_calls(conn) - before == 1  # five requests, one PUSH
    assert len({r.json()["batch_id"] for r in responses}) == 1
    wait_for(lambda: "Auto-flushing batch of 5 tasks (batch full)" in server.log(), 5, "the size flush's log line")


def test_flush_by_delay(server: ServerProcess, conn: Redis) -> None:
    ServiceQ("drag", connection=conn)
    before = evalsha_calls(conn)
    started = time.monotonic()
    responses = post_concurrently(server.base, "/serviceqs/drag/tasks", [{"i": i} for i in range(3)])
    assert [r.status_code for r in responses] == [201] * 3
    assert time.monotonic() - started >= 0.3  # three never fill a batch of five: they waited out the delay
    assert evalsha_calls(conn) - before == 1
    wait_for(lambda: "Batch flusher: flushing 3 tasks after timeout" in server.log(), 5, "the delay flush's log line")
    assert "Batch config: max_size=5, max_delay=300ms, auto_batch=true" in server.log()


def test_200_concurrent_clients_get_distinct_ids_and_each_task_lands_once(server: ServerProcess, conn: Redis) -> None:
    responses = post_concurrently(server.base, "/serviceqs/drag/tasks", [{"client": i} for i in range(200)])
    assert [r.status_code for r in responses] == [201] * 200
    ids = [r.json()["task_id"] for r in responses]
    assert len(set(ids)) == 200
    queued = [text(x) for x in conn.lrange("rq:queue:drag-pending", 0, -1)]
    assert sorted(queued) == sorted(ids)  # each exactly once
    sq = ServiceQ.open("drag", connection=conn)
    assert sq.get_status_info()["total_submitted"] == 200
    for response in responses[:5]:  # and each id is the task that client sent
        task_id = response.json()["task_id"]
        assert stored_task(conn, task_id) == {"client": responses.index(response)}


def test_seed_example_over_http(
    server: ServerProcess, client: httpx.Client, conn: Redis, spawn_supervisor: Callable[..., Any]
) -> None:
    """The seed's curl example: POST /add with the 7 tasks, POST /set-worker, and its report (5 passed, 2 failed)."""
    sq = ServiceQ("default", connection=conn)
    sq.set_task_function(tasks.seed_task)
    sq.set_batch_begin_callback(tasks.store_begin)
    sq.set_batch_end_callback(tasks.store_report)
    sq.set_worker_config(worker_count=0)  # nothing works the queue until /set-worker says so

    added = client.post("/add", json=SEED_TASKS)
    assert added.status_code == 201 and added.json()["total_enqueued"] == 7
    client.put("/serviceqs/default/retry-config", json={"retry_limit": 5, "loop_backoff": 0.03}).raise_for_status()
    spawn_supervisor("default")
    worker = {"worker_count": 1, "waiting_period": 0.05, "resting_period": 0.05, "auto_start": True}
    assert client.post("/set-worker", json=worker).json()["worker_count"] == 1

    batch_id = added.json()["batch_id"]
    url = f"/serviceqs/default/batches/{batch_id}"
    wait_for(lambda: client.get(url + "/progress").json()["end_callback"] == "ok", 60, "the batch to end")
    report = client.get(url).json()
    assert (report["total_submitted"], report["total_success"], report["total_failed"]) == (7, 5, 2)
    assert report["status"] == "FINISHED" and report["total_pending"] == 0
    seen = {
        q["task"]["name"]: (passed, q["total_retry_attempts"], q["remark"])
        for passed, listed in ((True, report["passed_tasks"]), (False, report["failed_tasks"]))
        for q in listed
    }
    assert seen == EXPECTED
    begun = [json.loads(x) for x in conn.lrange("test:batch_begin", 0, -1)]
    assert [b["batch_id"] for b in begun] == [batch_id]  # once, and in the worker: the server ran no user code


def test_a_2xx_is_never_sent_before_the_task_is_in_redis(tmp_path: Path) -> None:
    """A Redis that refuses writes mid-run: the requests of that flush get 503 and none of them is written."""
    with (
        RedisServer() as redis_srv,
        running_server(redis_srv.url, tmp_path / "server.log", BATCH_MAX_SIZE="10", BATCH_MAX_DELAY_MS="50") as srv,
    ):
        conn = Redis.from_url(redis_srv.url)
        ok = post_concurrently(srv.base, "/serviceqs/drag/tasks", [{"i": i} for i in range(10)])
        assert [r.status_code for r in ok] == [201] * 10
        for response in ok:
            assert conn.exists(f"rq:job:{response.json()['task_id']}")
        written = conn.dbsize()

        conn.config_set("min-replicas-to-write", 1)  # every write now fails with NOREPLICAS
        refused = post_concurrently(srv.base, "/serviceqs/drag/tasks", [{"j": i} for i in range(10)])
        assert [r.status_code for r in refused] == [503] * 10
        detail = refused[0].json()["detail"]
        assert f"Redis at redis://127.0.0.1:{redis_srv.port}/0 refused" in detail and "NOREPLICAS" in detail
        assert conn.dbsize() == written and conn.llen("rq:queue:drag-pending") == 10  # nothing half-written
        assert conn.hget(Keys("drag").batch(ok[0].json()["batch_id"]), "submitted") == b"10"

        conn.config_set("min-replicas-to-write", 0)
        again = post_concurrently(srv.base, "/serviceqs/drag/tasks", [{"k": i} for i in range(3)])
        assert [r.status_code for r in again] == [201] * 3
        assert conn.llen("rq:queue:drag-pending") == 13


def test_sigterm_flushes_and_answers_collected_tasks(redis_server: RedisServer, conn: Redis, tmp_path: Path) -> None:
    srv = ServerProcess(redis_server.url, tmp_path / "server.log", {"BATCH_MAX_DELAY_MS": "20000"}).start()
    try:
        results: list[httpx.Response] = []

        def send() -> None:
            results.extend(post_concurrently(srv.base, "/serviceqs/drag/tasks", [{"i": i} for i in range(3)]))

        sender = threading.Thread(target=send)
        sender.start()
        with httpx.Client(base_url=srv.base) as http:
            wait_for(lambda: http.get("/healthz").json()["waiting_tasks"] == 3, 10, "3 tasks collected")
        assert conn.llen("rq:queue:drag-pending") == 0  # collected, not yet written
        started = time.monotonic()
        assert srv.terminate() in (0, -15)  # uvicorn re-raises the SIGTERM it caught, once shut down
        sender.join(10)
        assert time.monotonic() - started < 10  # well before the 20 s delay
        assert [r.status_code for r in results] == [201] * 3
        assert conn.llen("rq:queue:drag-pending") == 3
        assert "Shutting down: flushing 3 waiting tasks" in srv.log()
    finally:
        srv.stop()
