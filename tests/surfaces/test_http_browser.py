"""rq-dashboard at /rq and the batch pages at /ui, rendered by a real headless Chromium behind the token.

Screenshots are kept in the test's tmp path; their paths are printed (``pytest -s`` shows them).
"""

from __future__ import annotations

import contextlib
import json
import shutil
from collections.abc import Callable, Iterator, Sequence
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
from tests.http_helpers import running_server, wait_for

TOKEN = "browser-s3cret"
CHROMIUM = next(filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None)
CHROMEDRIVER = shutil.which("chromedriver") or shutil.which("/usr/bin/chromedriver")
CHROME_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--window-size=1280,1000",
]


# No name resolves but loopback's: a page that reaches for a CDN gets nothing, as on a machine without internet.
OFFLINE_FLAGS = ("--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",)


@contextlib.contextmanager
def headless_chromium(token: str | None, *, flags: Sequence[str] = (), log_requests: bool = False) -> Iterator[Any]:
    """Debian's headless Chromium (skips the test where there is none), sending ``token`` with every
    request the pages make, as a proxy or an extension would add it (``None``: no token at all).

    ``flags`` go to Chromium after the usual ones (``OFFLINE_FLAGS`` cuts it off the network);
    ``log_requests`` keeps the DevTools network log that ``requested_urls`` reads."""
    if CHROMIUM is None or CHROMEDRIVER is None:
        pytest.skip("no headless Chromium here: apt-get install chromium chromium-driver (.ci/run does)")
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (*CHROME_FLAGS, *flags):
        options.add_argument(flag)
    if log_requests:
        options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(20)
    driver.execute_cdp_cmd("Network.enable", {})
    if token is not None:
        driver.execute_cdp_cmd("Network.setExtraHTTPHeaders", {"headers": {"Authorization": f"Bearer {token}"}})
    try:
        yield driver
    finally:
        driver.quit()


def requested_urls(driver: Any) -> list[str]:
    """Every URL the browser asked for since the last call (a driver made with ``log_requests=True``)."""
    messages = (json.loads(entry["message"])["message"] for entry in driver.get_log("performance"))
    return [m["params"]["request"]["url"] for m in messages if m["method"] == "Network.requestWillBeSent"]


def elsewhere(urls: list[str], base: str) -> list[str]:
    """The URLs of ``urls`` not on the server at ``base`` (``data:`` and ``blob:`` URLs are the page's own)."""
    return [url for url in urls if not url.startswith((f"{base}/", "data:", "blob:"))]


@pytest.fixture
def browser() -> Iterator[Any]:
    with headless_chromium(TOKEN) as driver:
        yield driver


def shot(driver: Any, path: Path) -> None:
    driver.save_screenshot(str(path))
    assert path.stat().st_size > 5000
    print(f"screenshot: {path}")


def test_dashboard_and_batch_page_render_in_chromium(
    browser: Any, redis_server: RedisServer, conn: Redis, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By

    with running_server(redis_server.url, tmp_path / "server.log", SERVICEQ_API_TOKEN=TOKEN) as server:
        auth = {"Authorization": f"Bearer {TOKEN}"}
        added = httpx.post(f"{server.base}/serviceqs/drag/tasks/batch", json={"tasks": SEED_TASKS}, headers=auth)
        batch_id = added.json()["batch_id"]
        sq = ServiceQ.open("drag", connection=conn)
        sq.set_task_function(tasks.seed_task)  # retry_limit 0: three fail
        sq.set_worker_config(rate_limit=50.0)
        drain(sq)

        browser.get(f"{server.base}/rq/")
        wait_for(lambda: "drag-pending" in browser.page_source, 20, "rq-dashboard to list drag-pending")
        assert "RQ dashboard" in browser.title or "rq" in browser.title.lower()
        shot(browser, tmp_path / "rq-dashboard.png")

        browser.get(f"{server.base}/ui/")
        wait_for(lambda: browser.find_elements(By.LINK_TEXT, "drag"), 20, "the service queue list")
        shot(browser, tmp_path / "ui-serviceqs.png")
        browser.get(f"{server.base}/ui/serviceqs/drag")
        wait_for(lambda: browser.find_elements(By.ID, "budget"), 20, "the queue page")
        assert browser.find_element(By.ID, "budget").text.startswith("start budget: rate limit 50/s (burst a second")

        browser.get(f"{server.base}/ui/serviceqs/drag/batches/{batch_id}")
        rows: Callable[[], list[Any]] = lambda: browser.find_elements(By.CSS_SELECTOR, "#tasks tbody tr")  # noqa: E731
        wait_for(lambda: browser.find_element(By.ID, "status").text == "FINISHED" and len(rows()) == 7, 20, "report")
        assert browser.find_element(By.ID, "total_failed").text == "3"
        outcomes = [row.find_elements(By.TAG_NAME, "td")[0].text for row in rows()]
        assert outcomes == ["failed"] * 3 + ["passed"] * 4  # failed tasks first
        assert "NO_RETRY | user do not have whatsapp number" in browser.page_source
        assert browser.find_element(By.ID, "eta").text == "0.0 s"
        assert browser.find_element(By.ID, "rate_limit").text == "50 starts/s"
        shot(browser, tmp_path / "ui-batch.png")


def test_swagger_ui_renders_offline_from_the_package(redis_server: RedisServer, tmp_path: Path) -> None:
    """``/docs`` draws its operations with the network cut off, without the token the server has
    (the page and its assets are open), and asks nothing of any host but the service."""
    from selenium.webdriver.common.by import By

    with (
        running_server(redis_server.url, tmp_path / "server.log", SERVICEQ_API_TOKEN=TOKEN) as server,
        headless_chromium(None, flags=OFFLINE_FLAGS, log_requests=True) as browser,
    ):
        browser.get(f"{server.base}/docs")
        operations: Callable[[], list[Any]] = lambda: browser.find_elements(By.CSS_SELECTOR, ".opblock")  # noqa: E731
        wait_for(lambda: len(operations()) >= 10, 20, "Swagger UI to list the operations")
        paths = {op.find_element(By.CSS_SELECTOR, ".opblock-summary-path").text for op in operations()}
        assert {"/serviceqs/{name}/tasks", "/healthz"} <= {p.replace("\u200b", "") for p in paths}
        assert browser.find_elements(By.CSS_SELECTOR, ".information-container .title")  # the schema's title drawn
        shot(browser, tmp_path / "docs-offline.png")
        urls = requested_urls(browser)
        assert f"{server.base}/docs/assets/swagger-ui-bundle.js" in urls and f"{server.base}/openapi.json" in urls
        assert elsewhere(urls, server.base) == []


def test_no_page_of_the_service_loads_anything_from_outside(
    redis_server: RedisServer, conn: Redis, tmp_path: Path
) -> None:
    """The batch pages and rq-dashboard, offline, behind the token: every request stays on the server."""
    from selenium.webdriver.common.by import By

    with (
        running_server(redis_server.url, tmp_path / "server.log", SERVICEQ_API_TOKEN=TOKEN) as server,
        headless_chromium(TOKEN, flags=OFFLINE_FLAGS, log_requests=True) as browser,
    ):
        auth = {"Authorization": f"Bearer {TOKEN}"}
        added = httpx.post(f"{server.base}/serviceqs/drag/tasks/batch", json={"tasks": SEED_TASKS}, headers=auth)
        batch_id = added.json()["batch_id"]
        sq = ServiceQ.open("drag", connection=conn)
        sq.set_task_function(tasks.seed_task)
        drain(sq)
        pages = {
            "/ui/": lambda: browser.find_elements(By.LINK_TEXT, "drag"),
            "/ui/serviceqs/drag": lambda: batch_id in browser.page_source,
            f"/ui/serviceqs/drag/batches/{batch_id}": lambda: (
                len(browser.find_elements(By.CSS_SELECTOR, "#tasks tbody tr")) == 7
            ),
            "/rq/": lambda: "drag-pending" in browser.page_source,
            "/rq/0/view/workers": lambda: browser.find_elements(By.CSS_SELECTOR, "table"),
        }
        urls: list[str] = []
        for path, drawn in pages.items():
            browser.get(f"{server.base}{path}")
            wait_for(drawn, 20, f"{path} to draw")
            urls += requested_urls(browser)
        assert {f"{server.base}{path}" for path in pages} <= set(urls)
        assert elsewhere(urls, server.base) == []
