"""The batching seed's shapes on its routes (issue 20): ``POST /jobs/batch`` with ``{"jobs": [...]}`` and
``POST /jobs/add`` (``subtract``, ``multiply``, ``divide``), on ``SERVICEQ_DEFAULT``, whatever the
Content-Type (its curls send ``-d`` without one: form-urlencoded), against a real ``serve`` process.
The seed's curls are replayed as its guide prints them, with the headers curl sends."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from redis import Redis

from rq_serviceq import ServiceQ
from rq_serviceq.job import ServiceQJob
from rq_serviceq.store import replies
from rq_serviceq.testing import RedisServer
from tests.http_helpers import CURL_HEADERS, ROOT, ServerProcess, replay_curl, running_server
from tests.surfaces.test_http_edges import snapshot

SEED = "/work/shared/seeds/002_875b68cd5c90360b.txt"  # the guide, as it prints them (host and port replaced)
BATCH_CURL = """curl -X POST http://localhost:3000/jobs/batch \\
  -H "Content-Type: application/json" \\
  -d '{
    "jobs": [
      {"type": "Add", "args": {"a": 1, "b": 2}},
      {"type": "Subtract", "args": {"a": 10, "b": 5}},
      {"type": "Multiply", "args": {"a": 3, "b": 4}}
    ]
  }'"""
BATCH_WITH_IDS_CURL = """curl -X POST http://localhost:3000/jobs/batch \\
  -H "Content-Type: application/json" \\
  -d '{
    "jobs": [
      {"type": "Add", "args": {"a": 1, "b": 2, "request_id": "req-1"}},
      {"type": "Multiply", "args": {"a": 5, "b": 10, "request_id": "req-2"}}
    ]
  }'"""
LOOP_CURL = """curl -X POST http://localhost:3000/jobs/add \\
    -H "Content-Type: application/json" \\
    -d "{\\"a\\": $i, \\"b\\": $(($i * 2))}" &"""
TIMED_CURL = """curl -s -X POST http://localhost:3000/jobs/add \\
    -H "Content-Type: application/json" \\
    -d "{\\"a\\": $i, \\"b\\": $(($i * 2))}\""""
BARE_ADD_CURL = """curl -X POST http://localhost:3000/jobs/add -d '{"a": 1, "b": 2}'"""
BARE_BATCH_CURL = """curl -X POST http://localhost:3000/jobs/batch -d '{
  "jobs": [
    {"type": "Add", "args": {"a": 1, "b": 2}},
    {"type": "Add", "args": {"a": 3, "b": 4}},
    {"type": "Add", "args": {"a": 5, "b": 6}}
  ]
}'"""
QUEUE = "seedq"


@pytest.fixture(scope="module")
def server(redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    log = tmp_path_factory.mktemp("http-seed-shapes") / "server.log"
    with running_server(redis_server.url, log, BATCH_MAX_DELAY_MS="5", SERVICEQ_DEFAULT=QUEUE,
                        SERVICEQ_MAX_BATCH="50") as proc:  # fmt: skip
        yield proc


def stored(conn: Redis, task_ids: list[str]) -> list[Any]:
    jobs = ServiceQJob.fetch_many(task_ids, connection=conn)
    return [job.task for job in jobs if isinstance(job, ServiceQJob)]


def pending(conn: Redis) -> list[Any]:
    """The tasks waiting in SERVICEQ_DEFAULT's queue, oldest first."""
    ids = [replies.text(i) for i in conn.lrange(ServiceQ(QUEUE, connection=conn).keys.queue, 0, -1)]
    return stored(conn, ids)


def bash_loop(line: str, i: int) -> str:
    """The seed's ``for i in {1..N}`` body for one ``i``: its two expansions, as bash makes them."""
    return line.replace("$(($i * 2))", str(i * 2)).replace("$i", str(i)).removesuffix(" &")


def test_the_seed_curls_are_in_the_seed_as_replayed_here() -> None:
    seed = Path(SEED).read_text()
    for curl in (BATCH_CURL, BATCH_WITH_IDS_CURL, LOOP_CURL, TIMED_CURL, BARE_ADD_CURL, BARE_BATCH_CURL):
        assert curl in seed, curl


def test_the_seed_batch_curl_enqueues_its_jobs_and_answers_as_the_seed(server: ServerProcess, conn: Redis) -> None:
    answer = replay_curl(server.base, BATCH_CURL)
    assert answer.status_code == 201, answer.text
    body = answer.json()
    assert (body["total_enqueued"], body["message"]) == (3, "Successfully enqueued 3 jobs in batch")
    assert body["job_ids"] == body["task_ids"] and len(body["job_ids"]) == 3
    jobs = json.loads(BATCH_CURL.split("-d '")[1].rstrip("'"))["jobs"]
    assert stored(conn, body["job_ids"]) == jobs == pending(conn)
    with_ids = replay_curl(server.base, BATCH_WITH_IDS_CURL)
    assert with_ids.status_code == 201 and stored(conn, with_ids.json()["job_ids"])[1]["args"]["request_id"] == "req-2"


def test_the_seed_single_job_curls_are_auto_batched_jobs_of_the_batch_shape(server: ServerProcess, conn: Redis) -> None:
    with ThreadPoolExecutor(8) as pool:  # the seed's loop sends them at once (`&`, then `wait`)
        answers = list(pool.map(lambda i: replay_curl(server.base, bash_loop(LOOP_CURL, i)), range(1, 21)))
    answers.append(replay_curl(server.base, bash_loop(TIMED_CURL, 21)))
    assert [a.status_code for a in answers] == [201] * 21, [a.text for a in answers if a.status_code != 201]
    tasks = stored(conn, [a.json()["job_id"] for a in answers])
    assert tasks == [{"type": "Add", "args": {"a": i, "b": 2 * i}} for i in range(1, 22)]
    assert all(a.json()["job_id"] == a.json()["task_id"] and a.json()["batch_id"] for a in answers)
    for op in ("subtract", "multiply", "divide"):
        one = httpx.post(f"{server.base}/jobs/{op}", json={"a": 8, "b": 2})
        assert one.status_code == 201 and stored(conn, [one.json()["job_id"]]) == [
            {"type": op.capitalize(), "args": {"a": 8, "b": 2}}
        ]


def test_the_seed_curls_without_a_content_type_are_read_as_json(server: ServerProcess, conn: Redis) -> None:
    added = replay_curl(server.base, BARE_ADD_CURL)  # curl -d: application/x-www-form-urlencoded
    assert added.status_code == 201, added.text
    batch = replay_curl(server.base, BARE_BATCH_CURL)
    assert batch.status_code == 201, batch.text
    assert stored(conn, [added.json()["job_id"], *batch.json()["job_ids"]]) == [
        {"type": "Add", "args": {"a": a, "b": a + 1}} for a in (1, 1, 3, 5)
    ]
    for content_type in (None, "text/plain", "multipart/form-data; boundary=x"):
        headers = dict(CURL_HEADERS) | ({"Content-Type": content_type} if content_type else {})
        seed_add = httpx.post(server.base + "/add", content=b'[{"name": "Tuhin1"}]', headers=headers)
        assert seed_add.status_code == 201, (content_type, seed_add.text)
    assert len(pending(conn)) == 7


def test_tasks_and_jobs_name_the_list_on_both_batch_routes(server: ServerProcess, conn: Redis) -> None:
    seed_tasks = httpx.post(server.base + "/jobs/batch", json={"tasks": [{"n": 1}]})
    assert seed_tasks.status_code == 201 and seed_tasks.json()["job_ids"] == seed_tasks.json()["task_ids"]
    api_jobs = httpx.post(server.base + "/serviceqs/api/tasks/batch", json={"jobs": [{"n": 2}, {"n": 3}]})
    assert api_jobs.status_code == 201, api_jobs.text
    assert stored(conn, api_jobs.json()["task_ids"]) == [{"n": 2}, {"n": 3}]
    assert pending(conn) == [{"n": 1}]  # the seed's route writes to SERVICEQ_DEFAULT, the API's to its name


FORM = {"Content-Type": "application/x-www-form-urlencoded"}
BAD_SEED_INPUTS: list[tuple[str, bytes, dict[str, str], int, str]] = [  # (path, body, headers, status, words)
    ("/jobs/batch", b"a=1&b=2", FORM, 400, "not valid JSON"),
    ("/jobs/batch", b"", FORM, 400, "body is empty"),
    ("/jobs/batch", b"{}", FORM, 422, "give the tasks as a list in 'tasks' (or the seed's 'jobs')"),
    ("/jobs/batch", b'{"jobs": []}', FORM, 422, "jobs is empty"),
    ("/jobs/batch", b'{"jobs": "Add"}', {}, 422, "jobs: Input should be a valid list"),
    ("/jobs/batch", b'{"jobs": [1], "tasks": [2]}', {}, 422, "one of the two"),
    ("/jobs/batch", b'{"jobs": [1], "extra": 1}', {}, 422, "extra: Extra inputs are not permitted"),
    ("/jobs/batch", b"[1, 2]", {}, 422, "valid dictionary"),
    ("/jobs/batch", json.dumps({"jobs": list(range(51))}).encode(), {}, 413, "SERVICEQ_MAX_BATCH (50)"),
    ("/jobs/batch", b'{"jobs": [NaN]}', {}, 400, "NaN is not JSON"),
    ("/jobs/add", b"a=1&b=2", FORM, 400, "not valid JSON"),
    ("/jobs/add", b"[1, 2]", FORM, 422, "a JSON object of the job's args"),
    ("/jobs/divide", b'"8/2"', {}, 422, "a JSON object of the job's args"),
    ("/jobs/modulo", b'{"a": 1}', {}, 404, "Not Found"),
    ("/add", b"a=1", FORM, 400, "not valid JSON"),
    ("/serviceqs/api/tasks", b'{"a": 1}', FORM, 415, "Content-Type must be application/json"),  # the API: strict
    ("/serviceqs/api/tasks/batch", b'{"jobs": [1]}', FORM, 415, "Content-Type must be application/json"),
]


def test_bad_seed_input_is_a_clear_4xx_that_changes_nothing(server: ServerProcess, conn: Redis) -> None:
    ServiceQ(QUEUE, connection=conn)  # exists, so a refusal cannot hide behind "created nothing"
    before = snapshot(conn)
    for path, body, headers, status, words in BAD_SEED_INPUTS:
        answer = httpx.post(server.base + path, content=body, headers=dict(CURL_HEADERS) | headers)
        assert answer.status_code == status, (path, body, answer.text)
        assert words in answer.json()["detail"], (path, body, answer.json())
    assert snapshot(conn) == before
    assert ServiceQ.statuses(conn) == {QUEUE: "CREATED"}


def test_openapi_lists_the_seed_routes(server: ServerProcess) -> None:
    paths = httpx.get(server.base + "/openapi.json").json()["paths"]
    for path in ("/jobs/batch", "/jobs/add", "/jobs/subtract", "/jobs/multiply", "/jobs/divide"):
        assert "seed" in paths[path]["post"]["tags"], path
    assert "jobs" in paths["/jobs/batch"]["post"]["requestBody"]["content"]["application/json"]["example"]


def test_the_curls_docs_http_md_shows_for_the_seed_routes_work(server: ServerProcess, conn: Redis) -> None:
    page = (ROOT / "docs" / "http.md").read_text()
    (block,) = [b for b in re.findall(r"```bash\n(.*?)```", page, re.S) if "/jobs/batch" in b]
    lines = [line.split("  #")[0] for line in block.splitlines() if line.startswith("curl")]
    answers = [replay_curl(server.base, line) for line in lines]
    assert [a.status_code for a in answers] == [201, 201], [a.text for a in answers]
    assert (
        stored(conn, [answers[0].json()["job_ids"][0], answers[1].json()["job_id"]])
        == [{"type": "Add", "args": {"a": 1, "b": 2}}] * 2
    )
