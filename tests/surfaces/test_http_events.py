"""The progress feed over HTTP: server-sent events and their JSON fallback, from a real `serve` process."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest
from redis import Redis

from rq_serviceq import ServiceQ
from rq_serviceq.testing import RedisServer
from tests import tasks
from tests.conftest import drain
from tests.http_helpers import ServerProcess, running_server, wait_for
from tests.netproxy import CuttableProxy

TOKEN = "events-s3cret"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
BOUND = 3


@pytest.fixture(scope="module")
def server(redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    log = tmp_path_factory.mktemp("events") / "server.log"
    with running_server(
        redis_server.url, log, SERVICEQ_API_TOKEN=TOKEN, SERVICEQ_MAX_STREAMS=str(BOUND), BATCH_MAX_DELAY_MS="5"
    ) as proc:
        yield proc


@pytest.fixture
def client(server: ServerProcess, conn: Redis) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.base, headers=AUTH, timeout=httpx.Timeout(10, read=20)) as http:
        yield http


def read_events(response: httpx.Response, enough: Callable[[list[dict[str, Any]]], bool]) -> list[dict[str, Any]]:
    """SSE entries carrying an event (id, event, data parsed), read until ``enough`` says so; a stream that
    goes quiet fails on the client's read timeout."""
    got: list[dict[str, Any]] = []
    entry: dict[str, str] = {}
    for line in response.iter_lines():
        if line.startswith(":"):
            continue
        if line:
            field, _, value = line.partition(":")
            entry[field] = value.removeprefix(" ")
            continue
        if "event" in entry:
            got.append({"id": entry["id"], "event": entry["event"], "data": json.loads(entry["data"])})
            if enough(got):
                return got
        entry = {}
    raise AssertionError(f"stream ended after {got}")


def finished(got: list[dict[str, Any]]) -> bool:
    return any(e["event"] == "finished" for e in got)


def make_queue(conn: Redis, name: str, func: Callable[..., Any] = tasks.returns) -> ServiceQ:
    sq = ServiceQ(name, connection=conn, role="producer")  # its pushes start no worker: drain() or a test's do
    sq.set_task_function(func)
    return sq


def test_a_stream_follows_a_batch_as_a_worker_works_it(
    client: httpx.Client, conn: Redis, spawn_cli_worker: Callable[..., subprocess.Popen[bytes]]
) -> None:
    make_queue(conn, "feed")
    with client.stream("GET", "/serviceqs/feed/events") as stream:
        assert stream.status_code == 200
        assert stream.headers["content-type"].startswith("text/event-stream")
        pushed = client.post("/serviceqs/feed/tasks/batch", json={"tasks": [{"value": True}, {"value": True}]})
        assert pushed.status_code == 201
        spawn_cli_worker("feed-pending", "--burst")
        got = read_events(stream, finished)
    kinds = [e["event"] for e in got]
    assert kinds[0] == "opened" and kinds[-2:] == ["ended", "finished"] and "progress" in kinds
    assert {e["data"]["batch_id"] for e in got} == {pushed.json()["batch_id"]}
    assert all(e["id"] == e["data"]["id"] and e["event"] == e["data"]["type"] for e in got)
    last_progress = [e["data"] for e in got if e["event"] == "progress"][-1]
    assert (last_progress["passed"], last_progress["pending"]) == (2, 0)


def test_resume_by_last_event_id_gets_only_later_events(client: httpx.Client, conn: Redis) -> None:
    sq = make_queue(conn, "resume")
    sq.push_many([{"value": True}] * 3)
    drain(sq)
    every = client.get("/serviceqs/resume/events/recent").json()["events"]
    assert every[-1]["type"] == "finished"
    half = len(every) // 2
    middle, later = every[half]["id"], [e["id"] for e in every[half + 1 :]]
    # EventSource resends the URL it was opened with: the header wins over since=0
    with client.stream("GET", "/serviceqs/resume/events?since=0", headers={"Last-Event-ID": middle}) as stream:
        got = read_events(stream, lambda got: len(got) >= len(later))
    assert [e["id"] for e in got] == later
    with client.stream("GET", f"/serviceqs/resume/events?since={middle}") as stream:
        assert [e["id"] for e in read_events(stream, lambda got: len(got) >= len(later))] == later


def test_an_entry_written_into_the_feed_cannot_forge_sse_fields(client: httpx.Client, conn: Redis) -> None:
    """Anyone who can write to Redis can XADD to the feed: a type with a newline must not start a field of
    its own (a forged ``data:`` or ``id:``) in what the browsers read."""
    sq = make_queue(conn, "forged")
    conn.xadd(sq.keys.events, {"type": 'progress\ndata: {"forged": true}\nid: 9', "batch": "b"})
    sq.push_many([{"value": True}])
    drain(sq)
    with client.stream("GET", "/serviceqs/forged/events?since=0") as stream:
        got = read_events(stream, finished)
    assert got[0]["event"] == "message" and got[0]["data"]["type"].startswith("progress\n")
    assert all("forged" not in e["data"] for e in got) and not any(e["id"] == "9" for e in got)


def test_batch_filter_on_stream_and_recent(client: httpx.Client, conn: Redis) -> None:
    sq = make_queue(conn, "two")
    first = sq.push_chunks([{"value": True}])[0].batch_id
    drain(sq)
    second = sq.push_chunks([{"value": True}, {"value": True}])[0].batch_id
    drain(sq)
    assert first != second
    with client.stream("GET", f"/serviceqs/two/events?since=0&batch={first}") as stream:
        got = read_events(stream, finished)
    assert {e["data"]["batch_id"] for e in got} == {first}
    page = client.get(f"/serviceqs/two/events/recent?batch={second}").json()
    assert {e["batch_id"] for e in page["events"]} == {second} and page["events"][-1]["type"] == "finished"


def test_recent_pages_the_feed_as_json(client: httpx.Client, conn: Redis) -> None:
    sq = make_queue(conn, "pages")
    sq.push_many([{"value": True}] * 4)
    drain(sq)
    every = client.get("/serviceqs/pages/events/recent?limit=1000").json()
    assert every["last_id"] == every["events"][-1]["id"] == sq.newest_event_id()
    seen: list[str] = []
    since = "0"
    while True:
        page = client.get(f"/serviceqs/pages/events/recent?since={since}&limit=2").json()
        if not page["events"]:
            assert page["last_id"] == since
            break
        assert len(page["events"]) <= 2
        seen += [e["id"] for e in page["events"]]
        since = page["last_id"]
    assert seen == [e["id"] for e in every["events"]]


def test_bad_input_and_unknown_queue(client: httpx.Client, conn: Redis) -> None:
    make_queue(conn, "known")
    for url in ("/serviceqs/known/events?since=yesterday", "/serviceqs/known/events/recent?since=1-2-3"):
        bad = client.get(url)
        assert bad.status_code == 422 and "is not an event id" in bad.json()["detail"], bad.text
    header = client.get("/serviceqs/known/events", headers={"Last-Event-ID": "nope"})
    assert header.status_code == 422 and "Last-Event-ID" in header.json()["detail"]
    assert client.get("/serviceqs/known/events/recent?since=99999999999999999999").status_code == 422
    for url in ("/serviceqs/nope/events", "/serviceqs/nope/events/recent"):
        missing = client.get(url)
        assert missing.status_code == 404 and "nope" in missing.json()["detail"]
    assert client.get("/serviceqs/known/events/recent", headers={"Authorization": ""}).status_code == 401


def test_the_pages_login_reaches_the_feed(server: ServerProcess, conn: Redis) -> None:
    sq = make_queue(conn, "login")
    sq.push({"value": True})
    with httpx.Client(base_url=server.base, auth=("anyone", TOKEN), timeout=10) as browser:
        recent = browser.get("/ui/api/serviceqs/login/events/recent")
        assert recent.status_code == 200 and recent.json()["events"][0]["type"] == "opened"
        with browser.stream("GET", "/ui/api/serviceqs/login/events?since=0") as stream:
            assert read_events(stream, lambda got: len(got) >= 1)[0]["event"] == "opened"


def test_streams_are_bounded_and_a_closed_one_frees_its_slot(client: httpx.Client, conn: Redis) -> None:
    make_queue(conn, "bound")
    with ExitStack() as open_streams:
        for _ in range(BOUND):
            stream = open_streams.enter_context(client.stream("GET", "/serviceqs/bound/events"))
            assert stream.status_code == 200
        over = client.get("/serviceqs/bound/events")
        assert over.status_code == 503 and "SERVICEQ_MAX_STREAMS" in over.json()["detail"]
        assert client.get("/serviceqs/bound/events/recent").status_code == 200  # requests are not starved

    # the client is gone: each stream ends and gives its slot back (within one XREAD's block)
    def all_free() -> bool:
        with ExitStack() as again:
            for _ in range(BOUND):
                if again.enter_context(client.stream("GET", "/serviceqs/bound/events")).status_code != 200:
                    return False
            return True

    wait_for(all_free, 10, "the closed streams' slots to free up", interval=0.2)


def test_a_stop_signal_ends_open_streams(redis_server: RedisServer, conn: Redis, tmp_path: Path) -> None:
    make_queue(conn, "stopping")
    with (
        running_server(redis_server.url, tmp_path / "server.log") as server,
        httpx.stream("GET", server.base + "/serviceqs/stopping/events", timeout=10) as stream,
    ):
        assert stream.status_code == 200
        began = time.monotonic()
        assert server.terminate(timeout=10) in (0, -15)  # uvicorn re-raises the SIGTERM it caught
        assert time.monotonic() - began < 8  # not held open by the stream (uvicorn waits for responses)
        assert list(stream.iter_lines())[-1:] in ([], [""])  # the stream ended, cleanly


def test_redis_going_away_ends_a_stream_cleanly(redis_server: RedisServer, conn: Redis, tmp_path: Path) -> None:
    """The stream says why and ends (an EventSource reconnects from its last id); its slot is given back."""
    make_queue(conn, "outage")
    proxy = CuttableProxy(redis_server.port)
    try:
        with (
            running_server(proxy.url, tmp_path / "server.log", SERVICEQ_MAX_STREAMS="1") as server,
            httpx.Client(base_url=server.base, timeout=10) as http,
        ):
            with http.stream("GET", "/serviceqs/outage/events") as stream:
                assert stream.status_code == 200
                proxy.cut()
                lines = list(stream.iter_lines())  # ends, rather than hanging or breaking off mid-chunk
            assert ": Redis cannot be reached; reconnect" in lines
            proxy.restore()

            def reopens() -> bool:
                with http.stream("GET", "/serviceqs/outage/events") as again:
                    return again.status_code == 200

            wait_for(reopens, 10, "a new stream once Redis is back", interval=0.2)
    finally:
        proxy.close()
