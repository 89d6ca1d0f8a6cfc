"""The HTTP service's edges, in-process (FastAPI's TestClient, real Redis): bad input, token, Redis down, config."""

from __future__ import annotations

import asyncio
import base64
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from redis import Redis

from rq_serviceq import ServiceQ
from rq_serviceq.http import HttpConfig, create_app
from rq_serviceq.http.batcher import AutoBatcher
from rq_serviceq.http.docs import docs_page
from rq_serviceq.testing import free_port
from tests import tasks
from tests.conftest import drain
from tests.guarantees.test_seed import SEED_TASKS
from tests.http_helpers import ROOT

MakeClient = Callable[..., TestClient]


@pytest.fixture
def make_client(redis_url: str, conn: Redis) -> Iterator[MakeClient]:
    clients: list[TestClient] = []

    def make(**settings: Any) -> TestClient:
        config = HttpConfig(**({"redis_url": redis_url} | settings))
        client = TestClient(create_app(config), raise_server_exceptions=False)
        client.__enter__()
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)


def snapshot(conn: Redis) -> dict[bytes | str, Any]:
    """Every key with its value, to show that a refused request changed nothing."""
    out: dict[bytes | str, Any] = {}
    for key in conn.keys("*"):
        kind = conn.type(key)
        out[key] = conn.hgetall(key) if kind == b"hash" else conn.dump(key)
    return out


BIG = {"blob": "x" * 300}
BAD_INPUTS: list[tuple[str, str, dict[str, Any], int, str]] = [  # (method, path, request kwargs, status, words)
    ("post", "/serviceqs/drag/tasks", {"content": b"{not json", "headers": {"content-type": "application/json"}},
     400, "not valid JSON"),
    ("post", "/serviceqs/drag/tasks", {"content": b'{"a": NaN}', "headers": {"content-type": "application/json"}},
     400, "NaN is not JSON"),
    ("post", "/serviceqs/drag/tasks", {"content": b"", "headers": {"content-type": "application/json"}},
     400, "empty"),
    ("post", "/serviceqs/drag/tasks", {"content": b'{"a": 1}', "headers": {"content-type": "text/plain"}},
     415, "Content-Type must be application/json (not 'text/plain')"),
    ("post", "/serviceqs/drag/tasks", {"content": b'{"a": 1}'}, 415, "none was sent"),
    ("post", "/serviceqs/drag/tasks/batch", {"json": {"tasks": []}}, 422, "tasks is empty"),
    ("post", "/serviceqs/drag/tasks/batch", {"json": {"tasks": list(range(6))}}, 413, "SERVICEQ_MAX_BATCH (5)"),
    ("post", "/serviceqs/drag/tasks/batch", {"json": {"tasks": "abc"}}, 422, "tasks: Input should be a valid list"),
    ("post", "/serviceqs/drag/tasks/batch", {"json": {"tasks": [1], "jobs": [1]}}, 422, "one of the two"),
    ("post", "/serviceqs/drag/tasks/batch", {"json": {"task": [1]}}, 422, "task: Extra inputs are not permitted"),
    ("post", "/serviceqs/drag/tasks/batch", {"json": {}}, 422, "give the tasks as a list in 'tasks'"),
    ("post", "/serviceqs/drag/tasks/batch", {"json": {"tasks": [1, BIG, 3]}}, 413, "tasks[1]: task is"),
    ("post", "/serviceqs/drag/tasks", {"json": BIG}, 413, "over the service queue's 200-byte limit"),
    ("post", "/serviceqs/drag/tasks", {"json": "y" * 5000}, 413, "SERVICEQ_MAX_BODY_BYTES (4096)"),
    ("post", "/add", {"json": []}, 422, "tasks is empty"),
    ("get", "/serviceqs/nope", {}, 404, "no service queue named 'nope'"),
    ("get", "/serviceqs/nope/batches", {}, 404, "no service queue named 'nope'"),
    ("get", "/serviceqs/nope/batches/latest", {}, 404, "no service queue named 'nope'"),
    ("post", "/serviceqs/nope/pause", {}, 404, "no service queue named 'nope'"),
    ("post", "/serviceqs/nope/scale", {"json": {"worker_count": 1}}, 404, "no service queue named 'nope'"),
    ("put", "/serviceqs/nope/worker-config", {"json": {"worker_count": 1}}, 404, "no service queue named 'nope'"),
    ("delete", "/serviceqs/nope", {}, 404, "no service queue named 'nope'"),
    ("get", "/serviceqs/drag/batches/abc", {}, 404, "has no batch 'abc'"),
    ("get", "/serviceqs/drag/batches/latest", {}, 404, "has had no batch yet"),
    ("get", "/serviceqs/drag/batches/abc?outcome=maybe", {}, 422, "outcome"),
    ("get", "/serviceqs/bad%20name", {}, 422, "invalid service queue name 'bad name'"),
    ("post", "/serviceqs/-x/tasks", {"json": 1}, 422, "invalid service queue name '-x'"),
    ("put", "/serviceqs/drag/worker-config", {"json": {"worker_count": -1}}, 422,
     "worker_count: Input should be greater than or equal to 0"),
    ("post", "/serviceqs/drag/scale", {"json": {"worker_count": -2}}, 422, "worker_count"),
    ("post", "/serviceqs/drag/scale", {"json": {}}, 422, "worker_count: Field required"),
    ("put", "/serviceqs/drag/retry-config", {"json": {"retry_limit": 2.5}}, 422,
     "retry_limit: Input should be a valid integer"),
    ("put", "/serviceqs/drag/retry-config", {"json": {"retry_limit": "3"}}, 422, "retry_limit"),
    ("put", "/serviceqs/drag/worker-config", {"json": {"workers": 3}}, 422, "workers: Extra inputs are not permitted"),
    ("put", "/serviceqs/drag/worker-config", {"json": {"auto_start": "yes"}}, 422, "auto_start"),
    ("put", "/serviceqs/drag/worker-config", {"json": {"rate_limit": 0}}, 422, "rate_limit: Input should be greater"),
    ("put", "/serviceqs/drag/worker-config", {"json": {"rate_limit": "40"}}, 422, "rate_limit"),
    ("put", "/serviceqs/drag/worker-config", {"json": {"rate_burst": 0.5}}, 422, "rate_burst"),
    ("post", "/set-worker", {"json": {"waiting_period": -1}}, 422, "waiting_period"),
    ("put", "/serviceqs/drag/breaker", {"json": {"failure_ratio": 0}}, 422, "failure_ratio: Input should be greater"),
    ("put", "/serviceqs/drag/breaker", {"json": {"failure_ratio": "0.5"}}, 422, "failure_ratio"),
    ("put", "/serviceqs/drag/breaker", {"json": {"min_tasks": 5}}, 422, "give failure_ratio too"),
    ("put", "/serviceqs/drag/breaker", {"json": {"consecutive_failures": 1.5}}, 422, "consecutive_failures"),
    ("put", "/serviceqs/drag/breaker", {"json": {"ratio": 0.5}}, 422, "ratio: Extra inputs are not permitted"),
    ("put", "/serviceqs/nope/breaker", {"json": {}}, 404, "no service queue named 'nope'"),
]  # fmt: skip


def test_each_bad_input_gets_a_clear_4xx_and_changes_nothing(make_client: MakeClient, conn: Redis) -> None:
    client = make_client(max_batch=5, max_body_bytes=4096, default_queue="drag")
    sq = ServiceQ("drag", connection=conn)
    sq.set_limits(max_task_bytes=200)
    before = snapshot(conn)
    for method, path, kwargs, status, words in BAD_INPUTS:
        response = client.request(method.upper(), path, **kwargs)
        assert response.status_code == status, (method, path, response.text)
        assert response.headers["content-type"] == "application/json", (method, path)
        assert words in response.json()["detail"], (method, path, response.json())
    assert snapshot(conn) == before
    assert ServiceQ.statuses(conn) == {"drag": "CREATED"}  # unknown names were not created


def test_the_breaker_route_sets_the_whole_breaker_and_status_shows_why_it_paused(
    make_client: MakeClient, conn: Redis
) -> None:
    client = make_client()
    sq = ServiceQ("drag", connection=conn, role="producer")
    put = client.put("/serviceqs/drag/breaker", json={"failure_ratio": 0.5, "min_tasks": 10})
    assert put.status_code == 200, put.text
    assert (put.json()["failure_ratio"], put.json()["min_tasks"], put.json()["consecutive_failures"]) == (0.5, 10, None)
    put = client.put("/serviceqs/drag/breaker", json={"consecutive_failures": 3})  # the whole breaker: ratio off
    assert (put.json()["failure_ratio"], put.json()["min_tasks"], put.json()["consecutive_failures"]) == (None, None, 3)
    assert client.put("/serviceqs/drag/breaker", json={}).json()["consecutive_failures"] is None
    assert not sq.breaker().is_on()
    assert client.get("/serviceqs/drag").json()["status_info"]["pause_reason"] == ""
    assert client.post("/serviceqs/drag/pause").status_code == 200
    assert client.get("/serviceqs/drag").json()["status_info"]["pause_reason"] == "paused by hand"
    page = client.get("/ui/serviceqs/drag").text  # the queue's page says why, and shows the settings
    assert "<b id='q-state'>PAUSED</b><span id='q-why'> (paused by hand)</span>" in page
    assert "consecutive_failures" in page


def test_a_task_too_big_is_refused_on_arrival_not_after_the_batch_delay(make_client: MakeClient, conn: Redis) -> None:
    client = make_client(batch_max_delay_ms=20_000)  # a flush would come 20 s after the first task waited
    ServiceQ("drag", connection=conn).set_limits(max_task_bytes=200)
    started = time.monotonic()
    response = client.post("/serviceqs/drag/tasks", json=BIG)
    assert response.status_code == 413 and "200-byte limit" in response.json()["detail"]
    assert time.monotonic() - started < 10  # answered without waiting for any flush
    assert conn.llen("rq:queue:drag-pending") == 0


def test_auto_create(make_client: MakeClient, conn: Redis) -> None:
    strict = make_client(auto_create=False)
    assert strict.post("/serviceqs/newq/tasks", json={"a": 1}).status_code == 404
    assert strict.post("/serviceqs/newq/tasks/batch", json={"tasks": [1]}).status_code == 404
    assert strict.post("/add", json=[1, 2]).status_code == 404
    assert strict.post("/set-worker", json={"worker_count": 2}).status_code == 404
    assert ServiceQ.statuses(conn) == {}
    ServiceQ("newq", connection=conn)
    assert strict.post("/serviceqs/newq/tasks", json={"a": 1}).status_code == 201

    lenient = make_client()
    assert lenient.post("/serviceqs/other/tasks", json={"a": 1}).status_code == 201
    assert lenient.post("/set-worker", json={"worker_count": 2}).json()["worker_count"] == 2
    assert set(ServiceQ.statuses(conn)) == {"newq", "other", "default"}


def test_token_guards_api_pages_and_dashboard(make_client: MakeClient) -> None:
    client = make_client(api_token="s3cret")
    good = {"Authorization": "Bearer s3cret"}
    basic = {"Authorization": "Basic " + base64.b64encode(b"me:s3cret").decode()}
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret"}, basic):
        refused = client.post("/serviceqs/drag/tasks", json=1, headers=headers)
        assert refused.status_code == 401 and "Bearer" in refused.json()["detail"]
        assert refused.headers["www-authenticate"].startswith("Bearer")
    assert client.post("/serviceqs/drag/tasks", json=1, headers=good).status_code == 201
    for method, path in [("GET", "/serviceqs"), ("POST", "/add"), ("POST", "/serviceqs/drag/pause"),
                         ("DELETE", "/serviceqs/drag"), ("PUT", "/serviceqs/drag/retry-config")]:  # fmt: skip
        assert client.request(method, path, json={}).status_code == 401, path
    for path in ("/ui/", "/ui/api/serviceqs", "/rq/"):
        page = client.get(path)
        assert page.status_code == 401 and page.headers["www-authenticate"].startswith("Basic"), path
        assert client.get(path, headers=basic).status_code == 200, path  # what a browser sends after its prompt
        assert client.get(path, headers=good).status_code == 200, path
    for path in ("/healthz", "/openapi.json", "/docs", "/docs/assets/swagger-ui-bundle.js"):
        assert client.get(path).status_code == 200, path
    for path in ("/docs/assets/../serviceqs", "/docs/assets/%2e%2e/serviceqs", "/redoc"):  # open means the assets only
        assert client.get(path).status_code == 401, path


def test_docs_page_loads_only_from_the_service(make_client: MakeClient) -> None:
    """/docs names no other host (FastAPI's own names a CDN and fastapi.tiangolo.com), and every
    file it loads is served here, without the token, under the app's root path behind a proxy."""
    client = make_client(api_token="s3cret")
    page = client.get("/docs")
    assert page.status_code == 200 and "SwaggerUIBundle" in page.text
    assert re.findall(r"https?://[^\s'\"<>]+", page.text) == []
    loaded = re.findall(r"(?:src|href)=\"([^\"]+)\"", page.text) + re.findall(r"url: '([^']+)'", page.text)
    assert sorted(loaded) == [
        "/docs/assets/favicon.png", "/docs/assets/swagger-ui-bundle.js", "/docs/assets/swagger-ui.css", "/openapi.json"
    ]  # fmt: skip
    for url in loaded:
        assert client.get(url).status_code == 200, url
    assert '"validatorUrl": null' in page.text  # else Swagger UI sends the schema's URL to validator.swagger.io
    assert isinstance(client.app, FastAPI)
    behind_proxy = bytes(docs_page(client.app, "/svc").body).decode()
    assert '"/svc/docs/assets/swagger-ui-bundle.js"' in behind_proxy and "url: '/svc/openapi.json'" in behind_proxy


def test_redis_down_is_a_503_naming_the_redis_without_its_password(make_client: MakeClient) -> None:
    port = free_port()  # nothing listens there
    client = make_client(redis_url=f"redis://:hunter2@127.0.0.1:{port}/0")
    calls: list[tuple[str, str, dict[str, Any]]] = [
        ("POST", "/serviceqs/drag/tasks", {"json": {"a": 1}}),
        ("POST", "/serviceqs/drag/tasks/batch", {"json": {"tasks": [1, 2]}}),
        ("GET", "/serviceqs", {}),
        ("GET", "/serviceqs/drag", {}),
        ("GET", "/healthz", {}),
        ("POST", "/serviceqs/drag/pause", {}),
    ]
    for method, path, kwargs in calls:
        response = client.request(method, path, **kwargs)
        assert response.status_code == 503, path
        detail = response.json()["detail"]
        assert f"redis://:***@127.0.0.1:{port}/0" in detail, detail
        assert "hunter2" not in response.text and "Traceback" not in response.text


def test_batching_off_writes_each_request_alone(make_client: MakeClient, conn: Redis) -> None:
    client = make_client(batch_auto_enabled=False)
    client.post("/serviceqs/drag/tasks", json=0)
    before = int(conn.info("commandstats")["cmdstat_evalsha"]["calls"])
    for i in range(3):
        assert client.post("/serviceqs/drag/tasks", json={"i": i}).status_code == 201
    assert int(conn.info("commandstats")["cmdstat_evalsha"]["calls"]) - before == 3
    assert client.get("/healthz").json()["waiting_tasks"] == 0


def test_report_pages_and_batch_pages(make_client: MakeClient, conn: Redis) -> None:
    client = make_client(default_queue="drag")
    added = client.post("/add", json=SEED_TASKS).json()
    sq = ServiceQ.open("drag", connection=conn)
    sq.set_task_function(tasks.seed_task)  # retry_limit 0: Tuhin3, Tuhin4 and Tuhin6 fail
    drain(sq)
    url = f"/serviceqs/drag/batches/{added['batch_id']}"
    full = client.get(url).json()
    assert (full["total_success"], full["total_failed"], full["tasks_inline"]) == (4, 3, True)
    page = client.get(url, params={"outcome": "failed", "offset": 1, "limit": 1}).json()
    assert [t["task"]["name"] for t in page["failed_tasks"]] == [full["failed_tasks"][1]["task"]["name"]]
    assert page["passed_tasks"] == [] and page["page"] == {"outcome": "failed", "offset": 1, "limit": 1}
    assert client.get(url, params={"limit": 2}).json()["tasks_inline"] is False
    progress = client.get(url + "/progress").json()
    assert (progress["status"], progress["eta_seconds"], progress["waiting_retries"]) == ("FINISHED", 0.0, 0)
    assert client.get("/serviceqs/drag/batches/latest").json()["batch_id"] == added["batch_id"]
    (listed,) = client.get("/serviceqs/drag/batches", params={"limit": 1}).json()["batches"]
    assert listed["batch_id"] == added["batch_id"] and (listed["total_success"], listed["total_failed"]) == (4, 3)
    assert listed["tasks_inline"] is False and listed["passed_tasks"] == listed["failed_tasks"] == []  # not inlined

    assert "drag" in client.get("/ui/api/serviceqs").text
    assert client.get("/ui/").status_code == 200
    queue_page = client.get("/ui/serviceqs/drag")
    assert queue_page.status_code == 200 and added["batch_id"] in queue_page.text
    batch_page = client.get(f"/ui/serviceqs/drag/batches/{added['batch_id']}")
    assert batch_page.status_code == 200 and "Report (failed first)" in batch_page.text
    assert client.get("/ui/serviceqs/drag/batches/nope").status_code == 404
    assert client.get(f"/ui/api{url}/progress").json() == progress


def test_openapi_documents_the_bodies(make_client: MakeClient) -> None:
    spec = make_client().get("/openapi.json").json()
    paths = spec["paths"]
    for path in ("/serviceqs/{name}/tasks", "/serviceqs/{name}/tasks/batch", "/add", "/set-worker", "/healthz",
                 "/serviceqs/{name}/batches/{batch_id}", "/serviceqs/{name}/scale"):  # fmt: skip
        assert path in paths, path
    batch_body = paths["/serviceqs/{name}/tasks/batch"]["post"]["requestBody"]["content"]["application/json"]
    assert "tasks" in batch_body["schema"]["properties"]
    assert "201" in paths["/serviceqs/{name}/tasks"]["post"]["responses"]
    assert "HTTPBearer" in spec["components"]["securitySchemes"]


def test_config_from_the_environment() -> None:
    env = {"RQ_REDIS_URL": "redis://a:1/0", "REDIS_URL": "redis://b:2/0", "BATCH_AUTO_ENABLED": "false"}
    config = HttpConfig.from_env(env | {"SERVICEQ_API_TOKEN": "", "BATCH_MAX_DELAY_MS": "10"})
    assert (config.redis_url, config.batch_auto_enabled, config.api_token, config.batch_max_delay_ms) == (
        "redis://a:1/0",
        False,
        None,
        10.0,
    )
    assert HttpConfig.from_env({"REDIS_URL": "redis://b:2/0"}).redis_url == "redis://b:2/0"
    assert HttpConfig.from_env({}).redis_url == "redis://localhost:6379/0"
    assert HttpConfig.from_env({}, redis_url="redis://c:3/0").redis_url == "redis://c:3/0"
    for env, words in [
        ({"BATCH_MAX_SIZE": "1001"}, "BATCH_MAX_SIZE: Input should be less than or equal to 1000"),
        ({"BATCH_MAX_SIZE": "many"}, "BATCH_MAX_SIZE"),
        ({"SERVICEQ_AUTO_CREATE": "maybe"}, "SERVICEQ_AUTO_CREATE='maybe' is not a boolean"),
        ({"SERVICEQ_DEFAULT": "bad name"}, "SERVICEQ_DEFAULT"),
    ]:
        with pytest.raises(ValueError, match="bad rq-serviceq HTTP setting") as err:
            HttpConfig.from_env(env)
        assert words in str(err.value)


def test_serve_refuses_a_bad_setting_naming_it() -> None:
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "BATCH_MAX_DELAY_MS": "-5"}
    done = subprocess.run(
        [sys.executable, "-m", "rq_serviceq", "serve", "--port", str(free_port())],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2 and "BATCH_MAX_DELAY_MS" in done.stderr


def test_auto_batcher_flushes_by_size_by_delay_and_fails_only_what_failed() -> None:
    calls: list[list[Any]] = []

    async def flush(name: str, batch: list[Any]) -> list[Any]:
        calls.append(batch)
        if "down" in batch:
            raise ConnectionError("redis down")
        return [ValueError("too big") if task == "big" else f"{name}:{task}" for task in batch]

    async def scenario() -> None:
        auto = AutoBatcher(flush, max_size=3, max_delay_ms=50)
        assert await asyncio.gather(*(auto.submit("q", i) for i in range(3))) == ["q:0", "q:1", "q:2"]
        loop = asyncio.get_running_loop()
        started = loop.time()
        assert await auto.submit("q", 9) == "q:9"
        assert loop.time() - started >= 0.05
        outcome = await asyncio.gather(auto.submit("q", "big"), auto.submit("q", 5), return_exceptions=True)
        assert isinstance(outcome[0], ValueError) and outcome[1] == "q:5"
        failed = await asyncio.gather(*(auto.submit("q", x) for x in ("down", 1, 2)), return_exceptions=True)
        assert all(isinstance(x, ConnectionError) for x in failed)
        pending = [asyncio.ensure_future(auto.submit("r", i)) for i in range(2)]
        await asyncio.sleep(0)
        assert auto.waiting == 2
        await auto.close()
        assert [await p for p in pending] == ["r:0", "r:1"]

    asyncio.run(scenario())
    assert [len(c) for c in calls] == [3, 1, 2, 3, 2]


def test_a_queue_deleted_by_another_process_is_recreated_whole_on_push(make_client: MakeClient, conn: Redis) -> None:
    client = make_client()
    assert client.post("/serviceqs/drag/tasks", json=1).status_code == 201
    ServiceQ("drag", connection=conn).delete()  # another process; this server still holds its handle
    second = client.post("/serviceqs/drag/tasks", json=2)
    assert second.status_code == 201
    detail = client.get("/serviceqs/drag").json()
    assert detail["settings"]["name"] == "drag" and detail["status_info"]["total_submitted"] == 1
    ServiceQ("drag", connection=conn).delete()
    assert make_client(auto_create=False).post("/serviceqs/drag/tasks", json=3).status_code == 404
    assert client.get("/serviceqs/drag").status_code == 404


def test_worker_config_sets_a_rate_limit_and_null_lifts_it(make_client: MakeClient, conn: Redis) -> None:
    client = make_client()
    sq = ServiceQ("drag", connection=conn)
    settings = client.put("/serviceqs/drag/worker-config", json={"rate_limit": 40, "rate_burst": 10}).json()
    assert (settings["rate_limit"], settings["rate_burst"]) == (40.0, 10)
    client.put("/serviceqs/drag/worker-config", json={"worker_count": 2, "concurrency": None})
    assert (sq.settings.rate_limit, sq.settings.worker_count, sq.settings.concurrency) == (40.0, 2, 1)
    settings = client.put("/serviceqs/drag/worker-config", json={"rate_limit": None}).json()
    assert (settings["rate_limit"], settings["rate_burst"]) == (None, 10)


def test_a_durable_push_that_falls_short_is_a_503_with_the_task_ids_written(
    make_client: MakeClient, conn: Redis
) -> None:
    client = make_client()
    ServiceQ("drag", connection=conn).set_durability(replicas=1, timeout=0.05)
    response = client.post("/serviceqs/drag/tasks/batch", json={"tasks": [{"n": i} for i in range(3)]})
    assert response.status_code == 503
    body = response.json()
    assert "replicas asked for confirmed it" in body["detail"] and len(body["task_ids"]) == 3
    assert conn.llen("rq:queue:drag-pending") == 3
    single = client.post("/serviceqs/drag/tasks", json={"n": 9})
    assert single.status_code == 503 and len(single.json()["task_ids"]) == 1


def test_the_services_own_durable_replicas_applies_to_every_push(make_client: MakeClient, conn: Redis) -> None:
    """SERVICEQ_DURABLE_REPLICAS: the service waits for that many replicas whatever the queue asks (none here)."""
    client = make_client(durable_replicas=1)
    ServiceQ("drag", connection=conn).set_durability(timeout=0.05)  # the queue itself asks for none
    response = client.post("/serviceqs/drag/tasks/batch", json={"tasks": [{"n": 1}]})
    assert response.status_code == 503 and "0 of the 1 replicas" in response.json()["detail"]
    assert HttpConfig.from_env({"SERVICEQ_DURABLE_REPLICAS": "2"}).durable_replicas == 2
