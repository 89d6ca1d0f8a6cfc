"""The batch page as an operator uses it, in a real headless Chromium behind the token: the chart drawn from
the progress feed (retry waves and all), the page following the feed while workers work (by server-sent
events, or by polling when the stream is cut off), the tasks table paged and filtered, and its download.

Screenshots go to the test's tmp path; with ``SERVICEQ_DOC_SCREENSHOTS=docs/img`` the batch page is also saved
there as ``console-batch.png`` (the one docs/http.md shows).
"""

from __future__ import annotations

import csv
import io
import os
import shutil
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
from tests.http_helpers import ServerProcess, running_server, wait_for
from tests.surfaces.test_http_browser import headless_chromium

TOKEN = "console-s3cret"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def server(redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One server for the module (it keeps nothing between tests: each test's state is in Redis, flushed)."""
    log = tmp_path_factory.mktemp("console-batch") / "server.log"
    with running_server(redis_server.url, log, SERVICEQ_API_TOKEN=TOKEN) as running:
        yield running


@pytest.fixture
def browser() -> Iterator[Any]:
    with headless_chromium(TOKEN) as driver:
        yield driver


def push(server: ServerProcess, batch: list[Any]) -> str:
    added = httpx.post(f"{server.base}/serviceqs/drag/tasks/batch", json={"tasks": batch}, headers=AUTH, timeout=20)
    assert added.status_code == 201, added.text
    batch_id: str = added.json()["batch_id"]
    return batch_id


def by_css(driver: Any, selector: str) -> list[Any]:
    from selenium.webdriver.common.by import By

    found: list[Any] = driver.find_elements(By.CSS_SELECTOR, selector)
    return found


def text_of(driver: Any, element_id: str) -> str:
    found: str = driver.execute_script("return document.getElementById(arguments[0]).textContent", element_id)
    return found


def rows(driver: Any) -> list[list[str]]:
    """The tasks table's cells, read in one go (the table is redrawn as pages load)."""
    found: list[list[str]] = driver.execute_script(
        "return [...document.querySelectorAll('#tasks tbody tr')].map(r => [...r.cells].map(c => c.textContent))"
    )
    return found


def live(driver: Any) -> str:
    mode: str = driver.execute_script("return document.body.dataset.live || ''")
    return mode


def shot(driver: Any, path: Path, doc_name: str | None = None) -> None:
    driver.save_screenshot(str(path))
    assert path.stat().st_size > 5000
    print(f"screenshot: {path}")
    docs = os.environ.get("SERVICEQ_DOC_SCREENSHOTS")
    if doc_name and docs and Path(docs).is_dir():
        shutil.copyfile(path, Path(docs) / doc_name)


def test_a_finished_batch_draws_its_chart_and_pages_filters_and_downloads_its_failures(
    server: ServerProcess, browser: Any, conn: Redis, tmp_path: Path
) -> None:
    batch_id = push(server, [{"i": i, "b": 0} for i in range(300)])
    sq = ServiceQ.open("drag", connection=conn)
    sq.set_task_function(tasks.mixed)  # by i % 5: pass, NO_RETRY, retry then pass, raise (retried), NoRetry
    sq.set_retry_config(retry_limit=2)
    drain(sq)
    assert sq.get_batch_summary(batch_id)["total_failed"] == 180

    browser.get(f"{server.base}/ui/serviceqs/drag/batches/{batch_id}")
    wait_for(lambda: live(browser) == "done" and text_of(browser, "status") == "FINISHED", 20, "the ended batch")
    wait_for(lambda: len(rows(browser)) == 50, 20, "the first page of tasks")
    passed_line = by_css(browser, "#chart-counts path.line.passed")[0].get_attribute("d")
    assert passed_line.startswith("M") and passed_line.count("H") >= 3  # a step per progress event, and more
    assert by_css(browser, "#chart-counts path.line.failed") and by_css(browser, "#chart-counts circle.dot")
    assert by_css(browser, "#chart-counts rect.retried")  # the retry waves
    assert by_css(browser, "#chart-rate path.line.rate")[0].get_attribute("d").count("L") >= 1
    assert "use the API" not in browser.page_source
    browser.set_window_size(1280, 1500)  # the counters, both charts and the table's first rows
    shot(browser, tmp_path / "console-batch.png", "console-batch.png")
    browser.set_window_size(1280, 1000)

    first_ids = [r[4] for r in rows(browser)]
    assert [r[0] for r in rows(browser)] == ["failed"] * 50 and text_of(browser, "page-info") == "tasks 1-50"
    by_css(browser, "#next")[0].click()
    wait_for(lambda: text_of(browser, "page-info") == "tasks 51-100", 10, "the second page")
    second_ids = [r[4] for r in rows(browser)]
    assert len(second_ids) == 50 and not set(first_ids) & set(second_ids)
    for shown in ("tasks 101-150", "tasks 151-200"):  # 180 failed, then the passed follow on the same page
        by_css(browser, "#next")[0].click()
        wait_for(lambda: text_of(browser, "page-info") == shown, 10, shown)  # noqa: B023
    assert [r[0] for r in rows(browser)] == ["failed"] * 30 + ["passed"] * 20
    by_css(browser, "#prev")[0].click()
    wait_for(lambda: text_of(browser, "page-info") == "tasks 101-150", 10, "back a page")

    from selenium.webdriver.support.ui import Select

    Select(by_css(browser, "#f-directive")[0]).select_by_value("NO_RETRY")
    wait_for(lambda: text_of(browser, "page-info") == "tasks 1-50", 10, "the NO_RETRY filter")
    assert {r[1] for r in rows(browser)} == {"NO_RETRY | not wanted", "NO_RETRY | gone for good"}
    by_css(browser, "#f-remark")[0].send_keys("GONE")
    wait_for(lambda: {r[1] for r in rows(browser)} == {"NO_RETRY | gone for good"}, 10, "the remark filter")
    wait_for(lambda: text_of(browser, "page-info") == "tasks 1-50", 10, "the filtered page")
    assert by_css(browser, "#next")[0].is_enabled()  # 60 match
    shot(browser, tmp_path / "console-batch-filtered.png")

    link = by_css(browser, "#export-csv")[0].get_attribute("href")
    assert "directive=NO_RETRY" in link and "remark=GONE" in link and "format=csv" in link
    download = httpx.get(link, headers=AUTH, timeout=20)
    assert download.status_code == 200 and "attachment" in download.headers["content-disposition"]
    exported = list(csv.DictReader(io.StringIO(download.text)))
    assert len(exported) == 60 and {r["remark"] for r in exported} == {"NO_RETRY | gone for good"}
    jsonl = httpx.get(by_css(browser, "#export-jsonl")[0].get_attribute("href"), headers=AUTH, timeout=20)
    assert len(jsonl.text.splitlines()) == 60


# the polling fallback is slow (it waits out polls): CI runs it with the slow tests
@pytest.mark.parametrize(
    "cut", [pytest.param(False, id="stream"), pytest.param(True, id="polling", marks=pytest.mark.slow)]
)
def test_the_page_follows_workers_without_a_reload(
    server: ServerProcess, browser: Any, conn: Redis, spawn_cli_worker: Any, tmp_path: Path, cut: bool
) -> None:
    batch_id = push(server, [{"seconds": 0.03} for _ in range(120)])
    sq = ServiceQ.open("drag", connection=conn)
    sq.set_task_function(tasks.slow)
    if cut:  # EventSource's request fails: the page polls events/recent and the counters instead
        browser.execute_cdp_cmd("Network.setBlockedURLs", {"urls": ["*/events?*"]})
    browser.get(f"{server.base}/ui/serviceqs/drag/batches/{batch_id}")
    wanted = "polling" if cut else "stream"
    wait_for(lambda: live(browser) == wanted and text_of(browser, "total_pending") == "120", 20, f"the page {wanted}")
    browser.execute_script("window.sameLoad = true")
    points = int(by_css(browser, "#chart-counts")[0].get_attribute("data-points") or 0)

    spawn_cli_worker("drag-pending", "--burst")
    wait_for(lambda: 0 < int(text_of(browser, "total_success") or 0) < 120, 30, "counters moving")
    assert live(browser) == wanted
    wait_for(lambda: text_of(browser, "status") == "FINISHED" and live(browser) == "done", 60, "the batch's end")
    assert browser.execute_script("return window.sameLoad") is True  # no reload
    assert text_of(browser, "total_success") == "120"
    assert int(by_css(browser, "#chart-counts")[0].get_attribute("data-points")) > points + 2
    assert by_css(browser, "#chart-counts path.line.passed")
    shot(browser, tmp_path / f"console-batch-live-{wanted}.png")
