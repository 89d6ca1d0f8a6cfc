"""Hardening III, requests: what a request may do to Redis, against a real `rq-serviceq serve` and a real Redis.

Cross-site browser requests (a real headless Chromium on another origin), numbers as the
standard library reads them, refused pushes that write nothing, the auto-create cap,
bounded query values, bodies' memory and the metrics route.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import socket
import subprocess
import sys
import threading
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from redis import Redis

from rq_serviceq import ServiceQ
from rq_serviceq.http import HttpConfig, codec, create_app
from rq_serviceq.http.routes.common import MAX_OFFSET
from rq_serviceq.http.service import Service
from rq_serviceq.job import ServiceQJob
from rq_serviceq.store.keys import Keys
from rq_serviceq.testing import RedisServer, free_port
from tests.http_helpers import ROOT, ServerProcess, running_server, wait_for
from tests.surfaces.test_http_browser import headless_chromium
from tests.surfaces.test_http_edges import snapshot

CONTROL_ROUTES = ("pause", "resume", "stop", "requeue-failed", "start")


@pytest.fixture(scope="module")
def server(redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """The loopback default: no token."""
    log = tmp_path_factory.mktemp("http-requests") / "server.log"
    with running_server(redis_server.url, log, BATCH_MAX_DELAY_MS="5") as proc:
        yield proc


@pytest.fixture
def victim(conn: Redis) -> ServiceQ:
    sq = ServiceQ("victim", connection=conn, role="producer")
    sq.push({"n": 1})
    return sq


# --- cross-site requests ---------------------------------------------------------------------------
@contextlib.contextmanager
def attacker_site(target: str) -> Iterator[str]:
    """Another origin serving a page whose form auto-submits a POST to ``target + ?path``."""

    class Page(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.partition("?")[2]
            page = (
                f'<form method="POST" action="{target}{path}" enctype="text/plain">'
                '<input name="x" value="y"></form><script>document.forms[0].submit()</script>'
            ).encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(page)))
            self.end_headers()
            self.wfile.write(page)

        def log_message(self, *args: Any) -> None:
            pass

    site = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), Page)
    thread = threading.Thread(target=site.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://localhost:{site.server_address[1]}/"  # localhost is another site than 127.0.0.1
    finally:
        site.shutdown()
        thread.join(5)


def test_cross_site_form_posts_from_a_real_browser_change_nothing(
    server: ServerProcess, conn: Redis, victim: ServiceQ
) -> None:
    """Forms on another origin, auto-submitted by Chromium, change nothing; a fetch from the server's own page does."""
    before = snapshot(conn)
    with headless_chromium("unused") as browser, attacker_site(server.base) as page:
        for route in (*CONTROL_ROUTES, "tasks", "tasks/batch"):
            browser.get(f"{page}?/serviceqs/victim/{route}")
            wait_for(lambda: browser.current_url.startswith(server.base), 20, f"the form POST to {route}")
            assert "cross-site request refused" in browser.page_source, route
        assert snapshot(conn) == before
        assert victim.get_status() == "PENDING"
        browser.get(f"{server.base}/healthz")  # a page of the server's own: its POSTs are same-origin
        script = "fetch(arguments[0], {method: 'POST'}).then(r => arguments[1](r.status))"
        assert browser.execute_async_script(script, "/serviceqs/victim/pause") == 200
    assert victim.get_status() == "PAUSED"


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "http://evil.example"},
        {"Origin": "null"},
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site", "Origin": "http://127.0.0.1:1"},
        {"Origin": "http://evil.example", "Content-Type": "application/x-www-form-urlencoded"},
        {"Origin": "http://evil.example", "Content-Type": "multipart/form-data; boundary=x"},
    ],
)
def test_cross_site_requests_are_refused_on_every_state_changing_route(
    server: ServerProcess, conn: Redis, victim: ServiceQ, headers: dict[str, str]
) -> None:
    before = snapshot(conn)
    with httpx.Client(base_url=server.base, timeout=10, headers=headers) as http:
        for route in CONTROL_ROUTES:
            assert http.post(f"/serviceqs/victim/{route}").status_code == 403, route
        assert http.post("/serviceqs/victim/tasks", content=b'{"a": 1}').status_code == 403  # the fast path
        assert http.post("/serviceqs/fresh/tasks/batch", content=b'{"tasks": [1]}').status_code == 403
        assert http.post("/add", content=b"[1]").status_code == 403
        assert http.put("/serviceqs/victim/worker-config", content=b'{"worker_count": 5}').status_code == 403
        assert http.put("/serviceqs/victim/breaker", content=b'{"consecutive_failures": 1}').status_code == 403
        assert http.delete("/serviceqs/victim").status_code == 403
        refused = http.post("/serviceqs/victim/pause")
        assert "cross-site request refused" in refused.json()["detail"]
        assert http.get("/serviceqs/victim").status_code == 200  # reads are not state-changing
    assert snapshot(conn) == before


def test_same_origin_pages_and_non_browser_clients_still_change_state(
    server: ServerProcess, conn: Redis, victim: ServiceQ
) -> None:
    own = server.base.removeprefix("http://")
    with httpx.Client(base_url=server.base, timeout=10) as http:
        assert http.post("/serviceqs/victim/pause", headers={"Origin": f"http://{own}"}).json()["status"] == "PAUSED"
        assert http.post("/serviceqs/victim/resume", headers={"Sec-Fetch-Site": "same-origin"}).status_code == 200
        assert http.post("/serviceqs/victim/pause", headers={"Sec-Fetch-Site": "none"}).status_code == 200
        assert http.post("/serviceqs/victim/resume").status_code == 200  # curl: no Origin, no Fetch metadata
        pushed = http.post("/serviceqs/victim/tasks", json={"n": 2}, headers={"Origin": f"http://{own}"})
        assert pushed.status_code == 201
    assert victim.get_status() != "PAUSED" and victim.get_status_info()["total_submitted"] == 2


# --- numbers ----------------------------------------------------------------------------------------
# Every spelling of a JSON number: sign, 1-25 digits (leading zeros are not JSON), fraction, exponent.
NUMBER = r"-?(0|[1-9][0-9]{0,25})(\.[0-9]{1,25})?([eE][+-]?[0-9]{1,3})?"
numbers = st.from_regex(NUMBER, fullmatch=True).filter(lambda text: abs(json.loads(text)) != float("inf"))
BOUNDARIES = ["-9999999999999999999", "-9223372036854775809", "-9223372036854775808", "18446744073709551616"]


def stored(conn: Redis, task_ids: list[str]) -> list[str]:
    """The tasks as a worker will read them (RQ's JSON serializer), spelled by ``repr`` so 1 and 1.0 differ."""
    jobs = ServiceQJob.fetch_many(task_ids, connection=conn)
    return [repr(job.task) for job in jobs if isinstance(job, ServiceQJob)]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(numbers, min_size=1, max_size=8))
@example(BOUNDARIES)
def test_every_json_number_is_stored_as_json_loads_reads_it(
    server: ServerProcess, conn: Redis, literals: list[str]
) -> None:
    expected = [repr(json.loads(text)) for text in literals]
    array = f"[{', '.join(literals)}]".encode()
    with httpx.Client(base_url=server.base, timeout=10, headers={"Content-Type": "application/json"}) as http:
        batch = http.post("/serviceqs/numbers/tasks/batch", content=b'{"tasks": %s}' % array)
        assert stored(conn, batch.json()["task_ids"]) == expected
        added = http.post("/add", content=array)  # the seed's route, an array of tasks
        assert stored(conn, added.json()["task_ids"]) == expected
        singles = [http.post("/serviceqs/numbers/tasks", content=text.encode()) for text in literals]  # fast path
        assert stored(conn, [one.json()["task_id"] for one in singles]) == expected


@pytest.mark.parametrize("shift", range(-21, 2))
def test_a_long_number_across_the_body_scans_slices_is_read_exactly(shift: int) -> None:
    """Big bodies are scanned for long digit runs a slice at a time: a run across two slices is still seen."""
    body = b"[" + b" " * (codec._SLICE + shift) + b"-9999999999999999999, 184467440737095516160]"
    assert codec.loads(bytearray(body)) == json.loads(body)


# --- refused pushes write nothing; auto-create is capped ---------------------------------------------
DEEP: Any = 1
for _ in range(70):
    DEEP = [DEEP]
BIG = {"blob": "x" * (600 * 1024)}  # over the default max_task_bytes (512 KiB)
REFUSED_PUSHES = [  # (path, body, status)
    ("/serviceqs/{name}/tasks", BIG, 413),  # the fast path
    ("/serviceqs/{name}/tasks", DEEP, 413),
    ("/serviceqs/{name}/tasks/batch", {"tasks": [{"ok": 1}, BIG]}, 413),
    ("/serviceqs/{name}/tasks/batch", {"tasks": [DEEP]}, 413),
    ("/serviceqs/{name}/tasks/batch", {"tasks": []}, 422),
    ("/serviceqs/{name}/tasks/batch", {"tasks": "x"}, 422),
    ("/add", [{"ok": 1}, BIG], 413),  # on SERVICEQ_DEFAULT, which does not exist yet
    ("/add", DEEP, 413),
    ("/set-worker", {"worker_count": -1}, 422),
]


def test_a_refused_push_to_a_new_name_writes_nothing(server: ServerProcess, conn: Redis) -> None:
    with httpx.Client(base_url=server.base, timeout=30) as http:
        for i, (path, body, status) in enumerate(REFUSED_PUSHES):
            answer = http.post(path.format(name=f"new{i}"), json=body)
            assert answer.status_code == status, (path, answer.text)
            assert conn.keys("*") == [], path


BODY_LIMIT = 64 * 1024


@pytest.fixture(scope="module")
def capped(redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    log = tmp_path_factory.mktemp("http-capped") / "server.log"
    small = {"SERVICEQ_AUTO_CREATE_MAX": "3", "SERVICEQ_MAX_BODY_BYTES": str(BODY_LIMIT)}
    with running_server(redis_server.url, log, BATCH_MAX_DELAY_MS="5", **small) as proc:
        yield proc


def test_auto_create_stops_at_its_cap_and_writes_nothing_past_it(capped: ServerProcess, conn: Redis) -> None:
    ServiceQ("made-in-python", connection=conn, role="producer")  # counted: every service queue on the Redis
    with httpx.Client(base_url=capped.base, timeout=10) as http:
        for name in ("a", "b"):
            assert http.post(f"/serviceqs/{name}/tasks", json={"n": 1}).status_code == 201
        before = snapshot(conn)
        for path in ("/serviceqs/c/tasks", "/serviceqs/c/tasks/batch", "/add", "/set-worker"):
            body = {"tasks": [1]} if path.endswith("batch") else {"worker_count": 1} if "worker" in path else [1]
            refused = http.post(path, json=body)
            assert refused.status_code == 409, (path, refused.text)
            assert "SERVICEQ_AUTO_CREATE_MAX" in refused.json()["detail"]
        assert snapshot(conn) == before
        assert http.post("/serviceqs/a/tasks/batch", json={"tasks": [2, 3]}).status_code == 201  # existing: pushed
        assert http.delete("/serviceqs/b").status_code == 200
        assert http.post("/serviceqs/c/tasks", json={"n": 1}).status_code == 201  # room again


# --- query values -------------------------------------------------------------------------------------
OUT_OF_RANGE = [  # (method, path): each a 422 naming the parameter, never Redis' refusal (503)
    *(("get", f"/serviceqs/victim/batches?offset={n}") for n in (2**63, 2**64, 10**30, -1, MAX_OFFSET + 1)),
    *(("get", f"/serviceqs/victim/batches/latest?offset={n}") for n in (2**63, -1)),
    ("get", "/serviceqs/victim/batches/latest?outcome=failed&offset=9223372036854775808"),
    ("get", "/serviceqs/victim/batches?limit=9223372036854775808"),
    ("get", "/serviceqs/victim/batches/latest?limit=0"),
    ("get", "/ui/serviceqs/victim/batches/latest?limit=99999999999999999999"),
    *(("post", f"/serviceqs/victim/stop?timeout={t}") for t in ("nan", "inf", "1e400", "-1", str(2**63))),
]


def test_out_of_range_query_values_are_a_422(server: ServerProcess, conn: Redis, victim: ServiceQ) -> None:
    before = snapshot(conn)
    with httpx.Client(base_url=server.base, timeout=10) as http:
        for method, path in OUT_OF_RANGE:
            answer = http.request(method, path)
            assert answer.status_code == 422, (path, answer.text)
            assert "query." in answer.json()["detail"], path
        assert snapshot(conn) == before
        for path in ("/serviceqs/victim/batches", "/serviceqs/victim/batches/latest"):  # the largest offset works
            assert http.get(path, params={"offset": MAX_OFFSET, "limit": 1000}).status_code == 200


def test_every_number_a_route_takes_in_its_path_or_query_is_bounded() -> None:
    """So no route hands Redis a number it refuses (the OpenAPI schema is what FastAPI validates against)."""
    schema = create_app(HttpConfig()).openapi()
    numeric = [
        (path, param["name"], param["schema"])
        for path, operations in schema["paths"].items()
        for operation in operations.values()
        for param in operation.get("parameters", [])
        if param["schema"].get("type") in ("integer", "number")
    ]
    assert {name for _, name, _ in numeric} >= {"offset", "limit", "timeout"}
    unbounded = [(path, name) for path, name, bounds in numeric if not {"minimum", "maximum"} <= set(bounds)]
    assert unbounded == []


# --- metrics ------------------------------------------------------------------------------------------
def samples(body: bytes, metric: str) -> dict[str, float]:
    """``metric``'s value by service queue, from a scrape in Prometheus' text format."""
    from prometheus_client.parser import text_string_to_metric_families

    return {
        sample.labels["queue"]: sample.value
        for family in text_string_to_metric_families(body.decode())
        for sample in family.samples
        if sample.name == metric
    }


def test_serve_mounts_metrics_behind_the_token(redis_server: RedisServer, conn: Redis, tmp_path: Path) -> None:
    token = "metrics-s3cret"
    with running_server(redis_server.url, tmp_path / "server.log", SERVICEQ_API_TOKEN=token) as server:
        auth = {"Authorization": f"Bearer {token}"}
        assert httpx.post(f"{server.base}/serviceqs/q/tasks", json={"n": 1}, headers=auth).status_code == 201
        assert httpx.get(f"{server.base}/metrics").status_code == 401
        scraped = httpx.get(f"{server.base}/metrics", headers=auth)
        assert scraped.status_code == 200 and scraped.headers["content-type"].startswith("text/plain")
        assert samples(scraped.content, "rq_serviceq_tasks_pushed_total") == {"q": 1.0}


def test_a_scrape_of_many_queues_is_right_and_skips_a_non_number(server: ServerProcess, conn: Redis) -> None:
    """Every queue's figures are its own (read in a few pipelines); one bad totals field drops only itself."""
    names = [f"q{i:03}" for i in range(200)]
    for i, name in enumerate(names):
        ServiceQ(name, connection=conn, role="producer").push_many([{"n": n} for n in range(i % 4 + 1)])
    conn.hset(ServiceQ.open("q007", connection=conn).keys.totals, mapping={"pushed": "abc", "passed": "nan"})
    scraped = httpx.get(f"{server.base}/metrics", timeout=30)
    assert scraped.status_code == 200
    pushed = samples(scraped.content, "rq_serviceq_tasks_pushed_total")
    assert pushed == {name: float(i % 4 + 1) for i, name in enumerate(names) if name != "q007"}
    assert "q007" not in samples(scraped.content, "rq_serviceq_tasks_passed_total")
    assert samples(scraped.content, "rq_serviceq_queue_depth") == {n: float(i % 4 + 1) for i, n in enumerate(names)}
    assert set(samples(scraped.content, "rq_serviceq_batch_tasks")) == set(names)
    wait_for(lambda: "totals field pushed='abc' is not a number" in server.log(), 5, "the warning in the log")


def listening_on(port: int) -> set[str]:
    """The local addresses a socket LISTENs on at ``port`` (IPv4, from /proc/net/tcp)."""
    found = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        address, _, hex_port = local.partition(":")
        if int(hex_port, 16) == port and state == "0A":
            found.add(".".join(str(b) for b in reversed(bytes.fromhex(address))))
    return found


def test_metrics_command_binds_loopback_unless_told(redis_url: str, conn: Redis, tmp_path: Path) -> None:
    port = free_port()
    cmd = [sys.executable, "-m", "rq_serviceq", "metrics", "--port", str(port)]
    env = dict(os.environ, RQ_REDIS_URL=redis_url, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: listening_on(port), 15, "rq-serviceq metrics to listen")
        assert listening_on(port) == {"127.0.0.1"}
    finally:
        proc.terminate()
        proc.wait(10)


def test_serve_beyond_loopback_without_a_token_warns(
    redis_server: RedisServer, server: ServerProcess, tmp_path: Path
) -> None:
    wide = ServerProcess(redis_server.url, tmp_path / "server.log")
    wide.cmd += ["--host", "0.0.0.0"]
    try:
        wide.start()
        assert "listening on 0.0.0.0 with no SERVICEQ_API_TOKEN" in wide.log()
    finally:
        wide.stop()
    assert "SERVICEQ_API_TOKEN" not in server.log()  # the loopback default says nothing


# --- memory per request -----------------------------------------------------------------------------
@pytest.mark.parametrize("path", ["/serviceqs/big/tasks", "/serviceqs/big/tasks/batch", "/add"])
def test_an_oversize_body_is_refused_before_it_is_read_whole(capped: ServerProcess, conn: Redis, path: str) -> None:
    """Chunked, so no Content-Length gives it away: the 413 comes while the body is still being sent."""
    head = f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
    with socket.create_connection(("127.0.0.1", capped.port), timeout=10) as sock:
        sock.sendall(f"{head}Transfer-Encoding: chunked\r\n\r\n".encode())
        chunk = b'"' + b"x" * 8190 + b'"'
        for _ in range(BODY_LIMIT // len(chunk) + 2):  # over the limit, and never the last (empty) chunk
            sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        assert sock.recv(4096).startswith(b"HTTP/1.1 413")
    assert conn.keys("*") == []


def test_a_batch_is_held_about_once_while_it_is_pushed(redis_url: str, conn: Redis) -> None:
    """Encoded tasks cost their size (orjson's own bytes kept a 64 KiB buffer for a 5 KB task), and each
    parsed task is let go once encoded: the measure behind docs/benchmarks.md's peak RSS figures."""
    service = Service(HttpConfig(redis_url=redis_url))
    tasks = [{"blob": "x" * 5000, "n": i} for i in range(2000)]
    size = sum(len(json.dumps(task)) for task in tasks)
    try:
        tracemalloc.start()
        service.push_batch("mem", tasks)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
        service.close()
    assert conn.llen(Keys("mem").queue) == 2000
    assert peak < 2 * size, f"pushing {size} bytes of tasks peaked at {peak} bytes"
