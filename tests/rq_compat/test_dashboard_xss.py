"""Everything the mounted rq-dashboard renders from Redis is text: names written into Redis run no script.

rq-dashboard 0.9 builds its queue, worker and job lists and its job page in the browser, from JSON, with
underscore templates whose ``<%= %>`` writes a value into the page as HTML, some inside an attribute.  A writer
of ``rq:*`` keys chooses queue names, worker names and queue lists, job ids, descriptions, origins and
exception text.  Here each carries markup that, run, records its field in ``window.__xss``; every page of
``/rq`` in headless Chromium must leave it undefined and show each value exactly as written.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from redis import Redis
from rq.job import Job
from rq.serializers import JSONSerializer

from rq_serviceq.testing import RedisServer
from tests.http_helpers import ServerProcess, running_server
from tests.rq_compat.test_dashboard_truth import JOB_PAGE_JS
from tests.surfaces.test_http_browser import headless_chromium

TOKEN = "xss-s3cret"
WAIT = 15.0
QUEUE = "drag-pending"


def hostile(field: str) -> str:
    """Markup that breaks out of an attribute as well as text, and says which field let it run."""
    return f"{field}\"'><img src=x onerror=\"window.__xss=(window.__xss||[]).concat('{field}')\">"


QUEUE_NAME = hostile("queue")
WORKER_NAME = hostile("worker")
WORKER_QUEUES = [hostile("worker-queue-1"), hostile("worker-queue-2")]
JOB_ID = "job-id_of-a-hostile-job"  # RQ fetches no job by an id of other than letters, digits, "_" and "-"
ELSEWHERE_JOB_ID = "job-of-a-hostile-queue"  # its origin is a hostile name
BUSY_WITH = hostile("current-job")  # ... but a worker's current job may name anything
DESCRIPTION = hostile("description")
ORIGIN = hostile("origin")
EXC_INFO = hostile("exc-info")
VERSION = hostile("version")

XSS_JS = "return window.__xss === undefined ? null : window.__xss;"
QUEUE_NAMES_JS = "return [...document.querySelectorAll('tr[data-role=queue]')].map(tr => tr.cells[0].innerText);"
WORKER_ROWS_JS = r"""
return [...document.querySelectorAll('table#workers tbody tr[data-role=worker]')].map(tr => ({
  name: tr.cells[0].innerText.trim(), title: tr.cells[0].title, job_title: tr.cells[1].title,
  current_job: tr.cells[1].innerText.trim(), queues: tr.cells[2].innerText.trim()}));
"""
JOB_ROWS_JS = r"""
return [...document.querySelectorAll('table#jobs tbody tr[data-role=job]')].map(tr => ({
  id: tr.dataset.jobId, id_text: tr.querySelector('.job_id').innerText,
  description: tr.querySelector('.description').innerText,
  exc_info: (tr.querySelector('pre.exc_info') || {innerText: ''}).innerText}));
"""
ORIGIN_JS = r"""
const label = [...document.querySelectorAll('#job-data strong')].find(s => s.textContent.trim() === 'Origin queue');
return label.parentElement.innerText.replace(/^[^:]*:\s*/, '');
"""


@pytest.fixture(scope="module")
def server(redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with running_server(redis_server.url, tmp_path_factory.mktemp("xss") / "server.log", SERVICEQ_API_TOKEN=TOKEN) as s:
        yield s


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with headless_chromium(TOKEN) as driver:
        yield driver


def write_hostile_names(conn: Redis) -> None:
    """What a writer of ``rq:*`` keys can leave: a queue, a worker on hostile queues busy with a failed job."""
    conn.sadd("rq:queues", f"rq:queue:{QUEUE_NAME}", f"rq:queue:{QUEUE}")
    conn.rpush(f"rq:queue:{QUEUE_NAME}", "some-job")
    for job_id, origin in ((JOB_ID, QUEUE), (ELSEWHERE_JOB_ID, ORIGIN)):
        job = Job.create(
            func="tests.tasks.returns", args=({"n": 1},), connection=conn, serializer=JSONSerializer, id=job_id
        )
        job.description, job.origin = DESCRIPTION, origin
        job.save()
        with conn.pipeline() as pipe:
            job._handle_failure(EXC_INFO, pipe)  # as RQ files a failed job: its failed registry, a failure result
            pipe.execute()
    for name, current_job in ((WORKER_NAME, JOB_ID), (f"2-{WORKER_NAME}", BUSY_WITH)):
        worker_key = f"rq:worker:{name}"
        conn.hset(
            worker_key,
            mapping={
                "queues": ",".join(WORKER_QUEUES),
                "state": "busy",
                "current_job": current_job,
                "birth": "2026-12-01T00:00:00.000000Z",
                "last_heartbeat": "2026-12-01T00:00:00.000000Z",
                "version": VERSION,
                "python_version": VERSION,
            },
        )
        conn.sadd("rq:workers", worker_key)


def until(driver: Any, script: str, want: Callable[[Any], bool], what: str) -> Any:
    from selenium.webdriver.support.ui import WebDriverWait

    def read(d: Any) -> Any:
        value = d.execute_script(script)
        return value if want(value) else None

    return WebDriverWait(driver, WAIT, poll_frequency=0.05).until(read, message=f"waiting for {what}")


def no_script_ran(driver: Any) -> None:
    assert driver.execute_script(XSS_JS) is None, "markup from Redis ran as script"


def test_dashboard_pages_show_names_from_redis_as_text(
    conn: Redis, server: ServerProcess, browser: Any, tmp_path: Path
) -> None:
    write_hostile_names(conn)

    browser.get(f"{server.base}/rq/0/view/queues")
    names = until(browser, QUEUE_NAMES_JS, lambda names: QUEUE in names, "the queue list")
    assert QUEUE_NAME in names
    no_script_ran(browser)

    browser.get(f"{server.base}/rq/0/view/workers")
    rows = until(browser, WORKER_ROWS_JS, lambda rows: len(rows) == 2, "the worker list")
    busy, busy_with_no_job = sorted(rows, key=lambda row: row["name"] != WORKER_NAME)
    for row in rows:
        assert row["queues"] == ", ".join(WORKER_QUEUES)
        assert row["title"] == f"RQ {VERSION} / Python {VERSION}"
    assert busy["name"] == WORKER_NAME and busy_with_no_job["name"] == f"2-{WORKER_NAME}"
    assert f"Job ID: {JOB_ID}" in busy["job_title"] and DESCRIPTION in busy["current_job"]
    assert f"Job ID: {BUSY_WITH}" in busy_with_no_job["job_title"] and busy_with_no_job["current_job"] == BUSY_WITH
    no_script_ran(browser)

    browser.get(f"{server.base}/rq/0/view/jobs/{QUEUE}/failed/20/asc/1")
    (job,) = until(browser, JOB_ROWS_JS, bool, "the failed registry")
    assert job == {"id": JOB_ID, "id_text": JOB_ID, "description": DESCRIPTION, "exc_info": EXC_INFO}
    no_script_ran(browser)

    browser.get(f"{server.base}/rq/0/view/job/{ELSEWHERE_JOB_ID}")
    page = until(browser, JOB_PAGE_JS, bool, "the job page")
    assert (page["description"], page["exception_info"]) == (DESCRIPTION, EXC_INFO)
    assert browser.execute_script(ORIGIN_JS) == ORIGIN
    no_script_ran(browser)
    browser.save_screenshot(str(tmp_path / "job.png"))
