"""The operator's console: the controls of the queue and batch pages, clicked in a real headless Chromium,
each changing what Redis holds; the same control routes refused (and Redis untouched) without the login or
from another site; the queue page's batch history drawn as an SVG.

Screenshots go to the test's tmp path; with ``SERVICEQ_DOC_SCREENSHOTS=docs/img`` the queue page's is also
saved there as ``console-queue.png`` (the one docs/http.md shows).
"""

from __future__ import annotations

import json
import os
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
from tests.guarantees.test_seed import SEED_TASKS
from tests.http_helpers import ServerProcess, running_server, wait_for
from tests.surfaces.test_http_browser import headless_chromium, shot
from tests.surfaces.test_http_edges import snapshot

TOKEN = "console-s3cret"
NAME = "console"
JSON = {"Content-Type": "application/json"}
BASIC = ("operator", TOKEN)  # the pages take Basic; the API only the Bearer header
BEARER = {"Authorization": f"Bearer {TOKEN}"}
UI_CONTROLS: list[tuple[str, str, dict[str, Any]]] = [  # (method, route under /ui/api/serviceqs/NAME/, body)
    ("POST", "pause", {}),
    ("POST", "resume", {}),
    ("POST", "stop", {}),
    ("POST", "scale", {"worker_count": 7}),
    ("POST", "requeue-failed?batch_id={first}", {}),
    ("PUT", "worker-config", {"rate_limit": 1, "rate_burst": 1}),
    ("PUT", "breaker", {"consecutive_failures": 1}),
]


@pytest.fixture(scope="module")
def server(redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One server for the module (it keeps nothing between tests: each test's state is in Redis, flushed)."""
    log = tmp_path_factory.mktemp("console-controls") / "server.log"
    with running_server(redis_server.url, log, SERVICEQ_API_TOKEN=TOKEN) as proc:
        yield proc


def finished_batches(server: ServerProcess, conn: Redis, sizes: list[int]) -> tuple[ServiceQ, list[str]]:
    """A service queue with one finished batch per size (the seed's tasks: some fail), pushed over HTTP."""
    sq = ServiceQ(NAME, connection=conn, role="producer")
    sq.set_task_function(tasks.seed_task)  # retry_limit 0: Tuhin3 and Tuhin6 fail at once
    batch_ids = []
    for size in sizes:
        body = {"tasks": (SEED_TASKS * 3)[:size]}
        added = httpx.post(f"{server.base}/serviceqs/{NAME}/tasks/batch", json=body, headers=BEARER, timeout=10)
        batch_ids.append(added.json()["batch_id"])
        drain(sq)
    return sq, batch_ids


def fresh(conn: Redis) -> ServiceQ:
    return ServiceQ.open(NAME, connection=conn)


# --- refused: without the login, from another site, as a form ---------------------------------------------
REFUSALS: list[tuple[str, dict[str, Any], int]] = [  # (why, request kwargs beyond the route, status)
    ("no login", {"headers": JSON}, 401),
    ("wrong password", {"headers": JSON, "auth": ("operator", "guess")}, 401),
    ("Sec-Fetch-Site cross-site", {"headers": {**JSON, "Sec-Fetch-Site": "cross-site"}, "auth": BASIC}, 403),
    ("Sec-Fetch-Site same-site", {"headers": {**JSON, "Sec-Fetch-Site": "same-site"}, "auth": BASIC}, 403),
    ("foreign Origin", {"headers": {**JSON, "Origin": "http://evil.example"}, "auth": BASIC}, 403),
    ("Origin null", {"headers": {**JSON, "Origin": "null"}, "auth": BASIC}, 403),
    # An old browser's form POST: no Fetch metadata, no Origin, the stored Basic login, a form's body.
    ("urlencoded form", {"headers": {"Content-Type": "application/x-www-form-urlencoded"}, "auth": BASIC}, 403),
    ("multipart form", {"headers": {"Content-Type": "multipart/form-data; boundary=x"}, "auth": BASIC}, 403),
    (
        "text/plain form",
        {"headers": {"Content-Type": "text/plain", "Sec-Fetch-Site": "same-origin"}, "auth": BASIC},
        403,
    ),
    ("no Content-Type", {"auth": BASIC}, 403),
]


@pytest.mark.parametrize(("why", "kwargs", "status"), REFUSALS, ids=[r[0] for r in REFUSALS])
def test_ui_controls_are_refused_without_the_login_or_from_another_site(
    server: ServerProcess, conn: Redis, why: str, kwargs: dict[str, Any], status: int
) -> None:
    sq, (first,) = finished_batches(server, conn, [7])
    sq.push({"name": "Tuhin1"})  # an active batch for stop to end
    before = snapshot(conn)
    with httpx.Client(base_url=f"{server.base}/ui/api/serviceqs/{NAME}/", timeout=10) as http:
        for method, route, body in UI_CONTROLS:
            # JSON text in every body: a text/plain form can carry JSON too, so the content type decides.
            answer = http.request(method, route.format(first=first), content=json.dumps(body).encode(), **kwargs)
            assert answer.status_code == status, (why, route, answer.text)
    assert snapshot(conn) == before, why
    # The same routes answer the login with a JSON body from the page's own origin (so the refusals above
    # were refusals, not a missing route).
    with httpx.Client(base_url=f"{server.base}/ui/api/serviceqs/{NAME}/", timeout=10, auth=BASIC) as http:
        origin = {**JSON, "Origin": server.base, "Sec-Fetch-Site": "same-origin"}
        assert http.post("pause", content=b"{}", headers=origin).json()["status"] == "PAUSED"
    assert fresh(conn).get_status() == "PAUSED"


# --- clicked in the page ---------------------------------------------------------------------------------
def click(browser: Any, ident: str) -> None:
    from selenium.webdriver.common.by import By

    browser.find_element(By.ID, ident).click()


def message_is(browser: Any, words: str) -> bool:
    """Whether the control's result message says ``words``.  The page reloads under us: an element of the
    old document (stale, or "does not belong to the document") is a no, and the next look finds the new one."""
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.common.by import By

    try:
        found = browser.find_elements(By.ID, "ctl-message")
        return bool(found) and words in found[0].text
    except WebDriverException:
        return False


def type_into(browser: Any, ident: str, value: str) -> None:
    from selenium.webdriver.common.by import By

    field = browser.find_element(By.ID, ident)
    field.clear()
    if value:
        field.send_keys(value)


def confirm_text(browser: Any, accept: bool) -> str:
    """The stop button's confirm(): its text, then accepted or dismissed."""
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    alert = WebDriverWait(browser, 10).until(expected_conditions.alert_is_present())
    text: str = alert.text
    if accept:
        alert.accept()
    else:
        alert.dismiss()
    return text


def test_queue_page_controls_change_what_redis_holds(server: ServerProcess, conn: Redis, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    sizes = [3, 7, 12, 5, 20, 9]
    sq, batch_ids = finished_batches(server, conn, sizes)
    last_failed = sq.batch_summary(batch_ids[-1]).total_failed
    assert last_failed > 0
    with headless_chromium(TOKEN) as browser:
        browser.get(f"{server.base}/ui/serviceqs/{NAME}")
        wait_for(lambda: browser.find_elements(By.ID, "ctl-pause"), 20, "the queue page's controls")

        # The history: one bar per batch in each row, oldest on the left, each naming its batch.
        for cls in ("hist-duration", "hist-size", "hist-failed"):
            bars = browser.find_elements(By.CSS_SELECTOR, f"#history rect.{cls}")
            assert [bar.get_attribute("data-batch") for bar in bars] == batch_ids, cls
        heights = [float(b.get_attribute("height")) for b in browser.find_elements(By.CSS_SELECTOR, "rect.hist-size")]
        assert heights.index(max(heights)) == sizes.index(max(sizes)) and heights[0] < heights[-1]
        shot(browser, tmp_path / "console-queue.png")
        if docs := os.environ.get("SERVICEQ_DOC_SCREENSHOTS"):
            Path(docs).mkdir(parents=True, exist_ok=True)
            shot(browser, Path(docs) / "console-queue.png")

        click(browser, "ctl-pause")
        wait_for(lambda: message_is(browser, "paused"), 20, "pause's message")
        assert fresh(conn).get_status() == "PAUSED"
        click(browser, "ctl-resume")
        wait_for(lambda: message_is(browser, "resumed"), 20, "resume's message")
        assert fresh(conn).get_status() != "PAUSED"

        type_into(browser, "ctl-worker-count", "3")
        click(browser, "ctl-scale")
        wait_for(lambda: message_is(browser, "worker_count is now 3"), 20, "scale's message")
        assert fresh(conn).settings.worker_count == 3
        assert browser.find_element(By.ID, "ctl-worker-count").get_attribute("value") == "3"  # the reloaded page

        type_into(browser, "ctl-rate-limit", "1-2")  # not a number: refused in the page, nothing sent
        click(browser, "ctl-rate")
        wait_for(lambda: message_is(browser, "starts/s: not a number"), 20, "the page's refusal")
        assert fresh(conn).settings.rate_limit is None
        type_into(browser, "ctl-rate-limit", "5")
        type_into(browser, "ctl-rate-burst", "2")
        click(browser, "ctl-rate")
        wait_for(lambda: message_is(browser, "saved: rate_limit 5, rate_burst 2"), 20, "the rate limit's message")
        assert (fresh(conn).settings.rate_limit, fresh(conn).settings.rate_burst) == (5.0, 2)
        assert browser.find_element(By.ID, "budget").text.startswith("start budget: rate limit 5/s (burst 2)")

        type_into(browser, "ctl-failure-ratio", "0.5")
        type_into(browser, "ctl-min-tasks", "10")
        click(browser, "ctl-breaker")
        wait_for(lambda: message_is(browser, "saved: failure_ratio 0.5, min_tasks 10"), 20, "the breaker's message")
        breaker = fresh(conn).breaker()
        assert (breaker.failure_ratio, breaker.min_tasks, breaker.consecutive_failures) == (0.5, 10, None)

        click(browser, "ctl-requeue")
        wait_for(lambda: message_is(browser, f"requeued {last_failed} failed task(s)"), 20, "requeue's message")
        assert fresh(conn).status_info().pending_q_length == last_failed  # no worker runs: they wait
        active = fresh(conn).current_batch_id()
        assert active not in batch_ids

        click(browser, "ctl-stop")  # dismissed: nothing happens
        text = confirm_text(browser, accept=False)
        assert f"Stop batch {active}? Its {last_failed} pending task(s) fail with STOPPED" in text
        assert fresh(conn).status_info().pending_q_length == last_failed
        click(browser, "ctl-stop")
        assert f"Its {last_failed} pending task(s)" in confirm_text(browser, accept=True)
        wait_for(lambda: message_is(browser, f"stopped batch {active}"), 20, "stop's message")
        stopped = fresh(conn).batch_summary(active)
        assert stopped.total_failed == last_failed and stopped.total_pending == 0
        assert stopped.status in ("STOPPED", "ENDING")  # ENDING until a worker runs the batch-end step
        assert fresh(conn).status_info().pending_q_length == 0
        shot(browser, tmp_path / "console-queue-stopped.png")


def test_batch_page_controls_act_on_that_batch(server: ServerProcess, conn: Redis, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    sq, (first, second) = finished_batches(server, conn, [7, 3])
    failed_first = sq.batch_summary(first).total_failed
    with headless_chromium(TOKEN) as browser:
        browser.get(f"{server.base}/ui/serviceqs/{NAME}/batches/{first}")
        wait_for(lambda: browser.find_element(By.ID, "status").text == "FINISHED", 20, "the batch page")
        assert not browser.find_elements(By.ID, "ctl-rate-limit")  # the queue's settings live on its page
        click(browser, "ctl-requeue")  # this batch's, not the latest's
        wait_for(lambda: message_is(browser, f"requeued {failed_first} failed task(s)"), 20, "requeue's message")
        assert fresh(conn).status_info().pending_q_length == failed_first

        click(browser, "ctl-pause")
        wait_for(lambda: message_is(browser, "paused"), 20, "pause's message")
        assert fresh(conn).get_status() == "PAUSED"
        type_into(browser, "ctl-worker-count", "2")
        click(browser, "ctl-scale")
        wait_for(lambda: message_is(browser, "worker_count is now 2"), 20, "scale's message")
        assert fresh(conn).settings.worker_count == 2
        click(browser, "ctl-resume")
        wait_for(lambda: message_is(browser, "resumed"), 20, "resume's message")
        assert fresh(conn).get_status() != "PAUSED"
        shot(browser, tmp_path / "console-batch.png")
    assert sq.batch_summary(second).total_failed > 0  # and those were not requeued: pending held only the first's


def test_history_svg_escapes_what_it_names_and_draws_a_running_batch() -> None:
    """The picture is markup built from Redis' values: each text is escaped, and a batch with no duration
    yet (running) or no ended task still gets its bar (a flat one)."""
    from rq_serviceq.http.ui import history_svg

    running = {
        "batch_id": "b2",
        "status": "<RUNNING>",
        "batch_duration": None,
        "total_submitted": 4,
        "total_success": 0,
        "total_failed": 0,
    }
    done = {
        "batch_id": "b1",
        "status": "FINISHED",
        "batch_duration": 2.5,
        "total_submitted": 8,
        "total_success": 6,
        "total_failed": 2,
    }
    svg = history_svg("q", [running, done])  # newest first, as sq.batches() gives them
    assert "<RUNNING>" not in svg and "&lt;RUNNING&gt;" in svg
    assert svg.count("class='hist-size'") == 2 and svg.index("data-batch='b1'") < svg.index("data-batch='b2'")
    assert "b1 (FINISHED): 2.500 s, 8 tasks, 2 failed (25%)" in svg
    assert history_svg("q", []) == "<p class='muted'>No batch yet.</p>"
