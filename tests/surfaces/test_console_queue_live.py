"""The queue page follows its service queue without a reload: its status line and batch table re-read when
the progress feed speaks (server-sent events), or by polling when the stream is cut off, in a real Chromium."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from redis import Redis

from rq_serviceq import ServiceQ
from tests import tasks
from tests.http_helpers import ServerProcess, wait_for
from tests.surfaces.test_console_batch import browser, live, push, server, shot, text_of

__all__ = ["browser", "server"]  # the fixtures, shared with the batch page's tests


def batch_rows(driver: Any) -> list[list[str]]:
    found: list[list[str]] = driver.execute_script(
        "return [...document.querySelectorAll('#batches tbody tr')].map(r => [...r.cells].map(c => c.textContent))"
    )
    return found


# the polling fallback is slow (it waits out polls): CI runs it with the slow tests
@pytest.mark.parametrize(
    "cut", [pytest.param(False, id="stream"), pytest.param(True, id="polling", marks=pytest.mark.slow)]
)
def test_the_queue_page_follows_a_batch_without_a_reload(
    server: ServerProcess, browser: Any, conn: Redis, spawn_cli_worker: Any, tmp_path: Path, cut: bool
) -> None:
    first = push(server, [{"value": True}])
    sq = ServiceQ.open("drag", connection=conn)
    sq.set_task_function(tasks.slow)
    if cut:  # EventSource's request fails: the page polls instead
        browser.execute_cdp_cmd("Network.setBlockedURLs", {"urls": ["*/events"]})
    browser.get(f"{server.base}/ui/serviceqs/drag")
    wanted = "polling" if cut else "stream"
    wait_for(lambda: live(browser) == wanted, 20, f"the page {wanted}")
    browser.execute_script("window.sameLoad = true")
    assert [r[0] for r in batch_rows(browser)] == [first] and text_of(browser, "q-pending") == "1"

    sq.pause()
    wait_for(lambda: text_of(browser, "q-state") == "PAUSED", 20, "the status line saying PAUSED")
    sq.resume()
    spawn_cli_worker("drag-pending", "--burst")
    wait_for(lambda: batch_rows(browser)[0][1] == "FINISHED", 30, "the first batch finished in the table")
    second = push(server, [{"seconds": 0.01}] * 3)
    wait_for(lambda: [r[0] for r in batch_rows(browser)] == [second, first], 20, "the new batch listed first")
    wait_for(lambda: batch_rows(browser)[0][2] == "3", 20, "its size in the table")
    assert browser.execute_script("return window.sameLoad") is True  # no reload
    assert live(browser) == wanted
    shot(browser, tmp_path / f"console-queue-live-{wanted}.png")
