"""Service queues spread over several Redis servers (``RQ_SERVICEQ_ROUTES``, issue 19): producers,
supervisors, the CLI and the HTTP service agree on where each queue lives, with two real servers."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient
from redis import Redis

from rq_serviceq import ServiceQ
from rq_serviceq.cli import cli
from rq_serviceq.http.app import create_app
from rq_serviceq.http.config import HttpConfig
from rq_serviceq.metrics import ServiceQCollector
from rq_serviceq.store.connection import ROUTES_ENV, routes, url_for
from rq_serviceq.testing import RedisServer
from tests import tasks


@pytest.fixture
def second() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


@pytest.fixture
def routed(second: RedisServer, redis_url: str, monkeypatch: pytest.MonkeyPatch) -> Redis:
    """Queue ``far`` routed to the second server; every other queue on the suite's own (RQ_REDIS_URL)."""
    monkeypatch.setenv(ROUTES_ENV, json.dumps({"far": second.url}))
    return Redis.from_url(second.url)


def test_routes_read_json_or_a_file_and_refuse_anything_else(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, redis_url: str
) -> None:
    path = tmp_path / "routes.json"
    path.write_text('{"a": "redis://a:6379/0"}')
    for value in ('{"a": "redis://a:6379/0"}', f"@{path}"):
        monkeypatch.setenv(ROUTES_ENV, value)
        assert routes() == {"a": "redis://a:6379/0"}
        assert (url_for("a"), url_for("b"), url_for("a", "redis://x/1")) == (
            "redis://a:6379/0",
            redis_url,
            "redis://x/1",
        )
    for bad in ("{nope", '["redis://a"]', '{"a": 3}', f"@{tmp_path / 'missing.json'}"):
        monkeypatch.setenv(ROUTES_ENV, bad)
        with pytest.raises(ValueError, match=ROUTES_ENV):
            routes()


def test_producer_supervisor_and_cli_reach_the_queues_server(
    routed: Redis, conn: Redis, spawn_supervisor: Callable[..., subprocess.Popen[bytes]]
) -> None:
    near, far = ServiceQ("near"), ServiceQ("far")  # no connection given: each from its route
    for sq in (near, far):
        sq.set_worker_config(worker_count=1, auto_start=False)
        sq.set_task_function(tasks.returns)
        sq.push_many([{"value": True} for _ in range(20)])
    assert routed.llen(far.keys.queue) == 20 and not conn.exists(far.keys.queue)
    assert conn.llen(near.keys.queue) == 20 and not routed.exists(near.keys.queue)
    spawn_supervisor("far")
    spawn_supervisor("near")
    assert far.wait_for_batch(timeout=30)["total_success"] == 20
    assert near.wait_for_batch(timeout=30)["total_success"] == 20
    status = CliRunner().invoke(cli, ["status", "far", "--json"])
    assert json.loads(status.output)["total_success"] == 20


def test_one_http_service_fronts_both_servers(routed: Redis, conn: Redis, redis_url: str) -> None:
    with TestClient(create_app(HttpConfig(redis_url=redis_url))) as client:
        assert client.post("/serviceqs/far/tasks", json={"n": 1}).status_code == 201
        assert client.post("/serviceqs/near/tasks/batch", json={"tasks": [{"n": 2}]}).status_code == 201
        names = [q["name"] for q in client.get("/serviceqs").json()["serviceqs"]]
    assert names == ["far", "near"]
    assert routed.llen("rq:queue:far-pending") == 1 and conn.llen("rq:queue:near-pending") == 1


def test_list_and_the_metrics_read_every_queue_from_its_server(routed: Redis, conn: Redis, redis_url: str) -> None:
    for name in ("near", "far"):
        sq = ServiceQ(name)
        sq.set_worker_config(worker_count=0, auto_start=False)
        sq.push_many([{"n": i} for i in range(3 if name == "far" else 2)])
    ServiceQ("stale", connection=routed)  # on the second server, but not routed there: not this deployment's
    listed = json.loads(CliRunner().invoke(cli, ["list", "--json"]).output)
    assert [(row["name"], row["queued"]) for row in listed] == [("far", 3), ("near", 2)]
    scrape = ServiceQCollector().exposition().decode()
    assert 'queue_depth{queue="far",rq_queue="far-pending"} 3' in scrape
    assert 'queue_depth{queue="near",rq_queue="near-pending"} 2' in scrape and '"stale"' not in scrape
