"""A batch's tasks over HTTP: every one of them paged, filtered by directive and remark, and downloaded.

A real ``serve`` process, a batch of a few hundred tasks worked to its end by a worker here.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from redis import Redis

from rq_serviceq import ServiceQ
from rq_serviceq.testing import RedisServer
from tests import tasks
from tests.conftest import drain
from tests.http_helpers import ServerProcess, running_server

TOKEN = "tasks-s3cret"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
FORMULA = '=HYPERLINK("http://evil","x")'


def values(n: int = 300) -> list[Any]:
    """n tasks: a third pass, a third NO_RETRY, a third RETRY (retry_limit 0: failed at once), and two odd ones."""
    out: list[Any] = []
    for i in range(n):
        kind = i % 3
        value = (
            [True, "SUCCESS | sent"]
            if kind == 0
            else [False, "NO_RETRY | no whatsapp" if kind == 1 else f"RETRY | Provider busy {i}"]
        )
        out.append({"value": value, "i": i})
    out.append({"value": [False, FORMULA], "i": n})  # no directive: a retryable failure, listed under 'none'
    out.append({"value": [False, "+1 | -2 | @SUM(A1)"], "i": n + 1})
    return out


@pytest.fixture
def batch(redis_server: RedisServer, conn: Redis, tmp_path: Path) -> Iterator[tuple[ServerProcess, str]]:
    with running_server(redis_server.url, tmp_path / "server.log", SERVICEQ_API_TOKEN=TOKEN) as server:
        added = httpx.post(
            f"{server.base}/serviceqs/drag/tasks/batch", json={"tasks": values()}, headers=AUTH, timeout=20
        )
        assert added.status_code == 201, added.text
        sq = ServiceQ.open("drag", connection=conn)
        sq.set_task_function(tasks.returns)
        drain(sq)
        yield server, added.json()["batch_id"]


def get(server: ServerProcess, path: str, **params: Any) -> httpx.Response:
    return httpx.get(server.base + path, params=params, headers=AUTH, timeout=20)


def test_every_failed_task_is_paged_and_filtered(batch: tuple[ServerProcess, str]) -> None:
    server, bid = batch
    path = f"/serviceqs/drag/batches/{bid}/tasks"
    seen: list[str] = []
    offset: int | None = 0
    while offset is not None:
        page = get(server, path, outcome="failed", offset=offset, limit=75).json()
        assert page["outcome"] == "failed" and page["offset"] == offset and page["limit"] == 75
        seen += [t["task_id"] for t in page["tasks"]]
        offset = page["next_offset"]
    assert len(seen) == len(set(seen)) == 202  # every failed task, past the page's old 200

    retry = get(server, path, directive="retry", limit=1000).json()
    assert len(retry["tasks"]) == 100 and retry["next_offset"] is None
    assert all(t["remark"].startswith("RETRY | ") for t in retry["tasks"])
    none = get(server, path, directive="none").json()["tasks"]
    assert sorted(t["remark"] for t in none) == sorted([FORMULA, "+1 | -2 | @SUM(A1)"])

    busy = get(server, path, remark="provider BUSY 1", limit=5).json()  # case-insensitive substring
    assert len(busy["tasks"]) == 5
    assert all("provider busy 1" in t["remark"].lower() for t in busy["tasks"]) and busy["next_offset"] == 5
    rest = get(server, path, remark="provider BUSY 1", offset=5, limit=100).json()
    assert not {t["task_id"] for t in rest["tasks"]} & {t["task_id"] for t in busy["tasks"]}
    assert rest["next_offset"] is None
    assert len(rest["tasks"]) + 5 == len([i for i in range(300) if i % 3 == 2 and str(i).startswith("1")])

    passed = get(server, path, outcome="passed", directive="SUCCESS", remark="sent", limit=1000).json()
    assert len(passed["tasks"]) == 100
    assert get(server, path, directive="NO_RETRY", remark="busy").json()["tasks"] == []
    # and under /ui/api, the pages' copy
    ui = get(server, "/ui/api" + path, directive="NO_RETRY", limit=3).json()
    assert len(ui["tasks"]) == 3 and ui["next_offset"] == 3


def test_bad_parameters_are_422_naming_them(batch: tuple[ServerProcess, str]) -> None:
    server, bid = batch
    path = f"/serviceqs/drag/batches/{bid}/tasks"
    for params, named in (
        ({"outcome": "lost"}, "outcome"),
        ({"directive": "MAYBE"}, "directive"),
        ({"limit": 0}, "limit"),
        ({"limit": 1001}, "limit"),
        ({"offset": -1}, "offset"),
        ({"remark": "x" * 1001}, "remark"),
    ):
        answer = get(server, path, **params)
        assert answer.status_code == 422 and named in answer.json()["detail"], (params, answer.text)
    for params, named in (
        ({"format": "xls"}, "format"),
        ({"outcome": "both"}, "outcome"),
        ({"directive": "?"}, "directive"),
    ):
        answer = get(server, path + "/export", **params)
        assert answer.status_code == 422 and named in answer.json()["detail"], (params, answer.text)
    assert get(server, "/serviceqs/drag/batches/nope/tasks").status_code == 404
    assert get(server, "/serviceqs/nope/batches/latest/tasks/export").status_code == 404
    assert httpx.get(server.base + path, timeout=10).status_code == 401  # behind the token


def test_export_streams_every_match_as_csv_and_jsonl(batch: tuple[ServerProcess, str]) -> None:
    server, bid = batch
    path = f"/serviceqs/drag/batches/{bid}/tasks/export"
    answer = get(server, path, format="csv")
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/csv")
    assert answer.headers["content-disposition"] == f'attachment; filename="drag-{bid}-tasks.csv"'
    rows = list(csv.DictReader(io.StringIO(answer.text)))
    assert len(rows) == 302 and [r["outcome"] for r in rows] == ["failed"] * 202 + ["passed"] * 100
    remarks = {r["remark"] for r in rows}
    assert "'" + FORMULA in remarks and "'+1 | -2 | @SUM(A1)" in remarks  # shown as text, never run
    assert not any(cell.startswith(("=", "+", "-", "@", "\t", "\r")) for r in rows for cell in r.values())
    assert {json.loads(r["task"])["i"] for r in rows} == set(range(302))

    lines = get(server, "/ui/api" + path, format="jsonl", outcome="failed", directive="RETRY", remark="busy 2").text
    found = [json.loads(line) for line in lines.splitlines()]
    assert found and all(f["outcome"] == "failed" and f["directive"] == "RETRY" for f in found)
    assert {f["task"]["i"] for f in found} == {i for i in range(300) if i % 3 == 2 and "busy 2" in f"busy {i}"}
    assert found[0]["remark"].startswith("RETRY | Provider busy 2")  # JSON lines carry the text as it was
