"""The speed tricks (``http/_fast``) against the plain path: the fast path answers and stores exactly as the FastAPI
route it stands in front of, the one-buffer packer packs byte for byte as redis-py; and the auto-batcher answers a
flush a slice per turn of the event loop."""

from __future__ import annotations

import asyncio
import base64
import json
import zlib
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from redis import Redis
from redis._parsers import Encoder
from redis.connection import PythonRespSerializer
from redis.exceptions import DataError

from rq_serviceq import ServiceQ
from rq_serviceq.http import HttpConfig, create_app
from rq_serviceq.http._fast.fastpath import task_route_name
from rq_serviceq.http._fast.packer import OneBufferPacker
from rq_serviceq.http.app import ServiceApp
from rq_serviceq.http.batcher import ANSWER_SLICE, AutoBatcher
from rq_serviceq.store.keys import Keys, job_key
from rq_serviceq.task.stored import FIELDS, task_of
from rq_serviceq.testing import free_port
from tests.conftest import as_bytes, present, text
from tests.surfaces.test_http_edges import BAD_INPUTS

Pair = Callable[..., tuple[TestClient, TestClient]]
ASGI = Callable[[Any, Any, Any], Any]


def route_only(app: FastAPI) -> ASGI:
    """The same app with the fast path stepped over: FastAPI's own routing serves every request."""

    async def asgi(scope: Any, receive: Any, send: Any) -> None:
        await FastAPI.__call__(app, scope, receive, send)

    return asgi


@pytest.fixture
def pair(redis_url: str) -> Iterator[Pair]:
    """Two apps with the same settings: one as served (fast path), one through FastAPI's route."""
    clients: list[TestClient] = []

    def make(apart: bool = False, **settings: Any) -> tuple[TestClient, TestClient]:
        """``apart``: the route's app on database 1 of the same Redis, so that what each stored can be compared."""
        config = HttpConfig(**({"redis_url": redis_url} | settings))
        route_config = config.model_copy(update={"redis_url": redis_url[: -len("/0")] + "/1"}) if apart else config
        made = (TestClient(create_app(config)), TestClient(route_only(create_app(route_config))))
        for client in made:
            client.__enter__()
            clients.append(client)
        return made

    yield make
    for client in clients:
        client.__exit__(None, None, None)


def same_answer(fast: httpx.Response, route: httpx.Response) -> None:
    assert fast.status_code == route.status_code, (fast.text, route.text)
    for header in ("content-type", "www-authenticate", "retry-after"):
        assert fast.headers.get(header) == route.headers.get(header), header
    if fast.status_code == 201:
        assert fast.json().keys() == route.json().keys() == {"task_id", "batch_id"}
    else:
        assert fast.json() == route.json()


SINGLE = [case for case in BAD_INPUTS if case[1].endswith("/tasks")] + [
    ("post", "/serviceqs/drag/tasks", {"json": {"a": 1}}, 201, ""),
    ("post", "/serviceqs/drag/tasks", {"json": [1, "two", None]}, 201, ""),
    ("post", "/serviceqs/drag/tasks", {"content": b"7", "headers": {"content-type": "text/x+json"}}, 201, ""),
    ("post", "/serviceqs/a%20b/tasks", {"json": 1}, 422, "invalid service queue name"),
    ("post", "/serviceqs/a%2Fb/tasks", {"json": 1}, 404, "Not Found"),
    ("post", "/serviceqs//tasks", {"json": 1}, 404, "Not Found"),
]  # fmt: skip


@pytest.mark.parametrize("batching", [True, False])
def test_the_same_answers_to_good_and_bad_requests(pair: Pair, conn: Redis, batching: bool) -> None:
    fast, route = pair(max_body_bytes=4096, batch_auto_enabled=batching, batch_max_delay_ms=1)
    ServiceQ("drag", connection=conn).set_limits(max_task_bytes=200)
    for method, path, kwargs, status, words in SINGLE:
        answers = [client.request(method.upper(), path, **kwargs) for client in (fast, route)]
        same_answer(*answers)
        assert answers[0].status_code == status, (path, answers[0].text)
        assert words in answers[0].text
    assert conn.llen("rq:queue:drag-pending") == 6  # the three good requests, once through each


# Tasks whose encoding the fast codec hands to the standard library (integers past 64 bits, non-ASCII) and some it
# does not: each must be stored alike through either path.
STORED = [{"a": 1}, [1, "two", None], "caf\u00e9 \U0001f600", 2**70, -(2**63) - 1, 1e-05, {"n": {"x": [True]}}, 7]


def stored(conn: Redis, name: str) -> list[dict[bytes, bytes]]:
    """The service queue's pending tasks as stored, in queue order, without what differs by run (ids, times)."""
    jobs: list[dict[bytes, bytes]] = []
    for task_id in conn.lrange(Keys(name).queue, 0, -1):
        job = {as_bytes(key): as_bytes(value) for key, value in conn.hgetall(job_key(text(task_id))).items()}
        for varies in (b"created_at", b"sq_batch"):
            assert job.pop(varies)
        data = job[b"data"]
        job[b"data"] = data if data.startswith(b"[") else zlib.decompress(data)
        jobs.append(job)
    return jobs


@pytest.mark.parametrize("batching", [True, False])
def test_either_path_stores_the_same_tasks(pair: Pair, redis_url: str, batching: bool) -> None:
    fast, route = pair(apart=True, batch_auto_enabled=batching, batch_max_delay_ms=1)
    conns = [Redis.from_url(redis_url), Redis.from_url(redis_url[: -len("/0")] + "/1")]
    for conn in conns:
        conn.flushdb()
    try:
        for task in STORED:
            body = json.dumps(task).encode()
            headers = {"content-type": "application/json"}
            answers = [client.post("/serviceqs/drag/tasks", content=body, headers=headers) for client in (fast, route)]
            same_answer(*answers)
            assert answers[0].status_code == 201, answers[0].text
        fast_jobs, route_jobs = (stored(conn, "drag") for conn in conns)
        assert fast_jobs == route_jobs
        assert [task_of([job.get(b"data"), *(job.get(f.encode()) for f in FIELDS)]) for job in fast_jobs] == STORED
        batches = [present(ServiceQ.open("drag", connection=conn).get_batch_summary()) for conn in conns]
        assert batches[0]["total_submitted"] == batches[1]["total_submitted"] == len(STORED)
    finally:
        for conn in conns:
            conn.flushdb()
            conn.close()


def test_the_same_answers_about_the_token(pair: Pair) -> None:
    fast, route = pair(api_token="s3cret")
    basic = "Basic " + base64.b64encode(b"me:s3cret").decode()
    for authorization in (None, "Bearer wrong", "s3cret", basic, "Bearer s3cret", "bearer s3cret"):
        headers = {"Authorization": authorization} if authorization else {}
        same_answer(*(c.post("/serviceqs/drag/tasks", json=1, headers=headers) for c in (fast, route)))


def test_the_same_answers_when_redis_is_down(pair: Pair) -> None:
    fast, route = pair(redis_url=f"redis://:hunter2@127.0.0.1:{free_port()}/0")
    answers = [client.post("/serviceqs/drag/tasks", json={"a": 1}) for client in (fast, route)]
    same_answer(*answers)
    assert answers[0].status_code == 503 and "hunter2" not in answers[0].text


def test_the_fast_path_takes_only_its_route(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    app = create_app(HttpConfig(redis_url=redis_url, batch_auto_enabled=False))
    assert isinstance(app, ServiceApp)
    served: list[str] = []

    async def fastapi_call(self: FastAPI, scope: Any, receive: Any, send: Any) -> None:
        served.append(scope["path"])
        await send({"type": "http.response.start", "status": 418, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    monkeypatch.setattr(FastAPI, "__call__", fastapi_call)
    client = TestClient(app)  # no lifespan: FastAPI's own handling is replaced
    assert client.post("/serviceqs/drag/tasks", json=1).status_code == 201
    for method, path in [("GET", "/serviceqs/drag/tasks"), ("POST", "/serviceqs/drag/tasks/batch"),
                         ("POST", "/serviceqs/drag/tasks/"), ("POST", "/add")]:  # fmt: skip
        assert client.request(method, path, json=1).status_code == 418
    assert served == ["/serviceqs/drag/tasks", "/serviceqs/drag/tasks/batch", "/serviceqs/drag/tasks/", "/add"]
    assert [task_route_name(p) for p in ("/serviceqs/q/tasks", "/serviceqs/q/r/tasks", "/serviceqs//tasks")] == [
        "q",
        None,
        None,
    ]


def test_a_flush_is_answered_a_slice_per_turn_of_the_loop() -> None:
    """Between slices the loop runs other work (reading the next requests), and every answer still arrives."""

    async def flush(name: str, batch: list[Any]) -> list[Any]:
        return [f"{name}:{task}" for task in batch]

    async def scenario() -> list[int]:
        auto = AutoBatcher(flush, max_size=3 * ANSWER_SLICE, max_delay_ms=10_000)
        answers = [asyncio.ensure_future(auto.submit("q", i)) for i in range(3 * ANSWER_SLICE)]
        seen: list[int] = []
        while not all(answer.done() for answer in answers):
            seen.append(sum(answer.done() for answer in answers))
            await asyncio.sleep(0)
        assert [answer.result() for answer in answers] == [f"q:{i}" for i in range(3 * ANSWER_SLICE)]
        return seen

    seen = asyncio.run(scenario())
    assert ANSWER_SLICE in seen and 2 * ANSWER_SLICE in seen  # other work ran with a slice answered, and two


PACKED = [
    ("SET", "k", "v"),
    ("SCRIPT LOAD", "return 1"),
    (b"CLIENT SETNAME", "x"),
    ("EVALSHA", "a" * 40, 3, "k1", b"k2", 1.5, 0.1, -7, 10**30, "caf\u00e9", b"x" * 7000, "y" * 9000),
    ("SET", memoryview(b"mv"), bytearray(b"ba")),
]


@pytest.mark.parametrize("command", PACKED)
def test_the_service_packs_commands_as_redis_py_does(command: tuple[Any, ...]) -> None:
    encoder = Encoder("utf-8", "strict", False)
    theirs = PythonRespSerializer(6000, encoder.encode).pack(*command)
    ours = OneBufferPacker(encoder).pack(*command)
    assert b"".join(ours) == b"".join(bytes(part) for part in theirs)


@pytest.mark.parametrize("value", [True, None, [1], {"a": 1}])
def test_the_service_refuses_what_redis_py_refuses(value: Any) -> None:
    encoder = Encoder("utf-8", "strict", False)
    with pytest.raises(DataError) as theirs:
        PythonRespSerializer(6000, encoder.encode).pack("SET", "k", value)
    with pytest.raises(DataError) as ours:
        OneBufferPacker(encoder).pack("SET", "k", value)
    assert str(ours.value) == str(theirs.value)
