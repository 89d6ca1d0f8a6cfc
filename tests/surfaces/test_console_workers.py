"""Who works a service queue: GET /serviceqs/{name}/workers, and the queue page's Workers panel in Chromium.

A real supervisor (``rq-serviceq worker NAME``) runs a real worker on a slow
task; the API and the page must name its machine, its pid and the task it is on.
"""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from redis import Redis

from rq_serviceq import ServiceQ
from rq_serviceq.testing import RedisServer
from tests import tasks
from tests.http_helpers import running_server, wait_for
from tests.surfaces.test_http_browser import headless_chromium

TOKEN = "workers-s3cret"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def busy_worker(http: httpx.Client, name: str, task_ids: list[str]) -> dict[str, Any]:
    """The queue's worker once RQ says it is busy on one of ``task_ids``."""
    found: dict[str, Any] = {}

    def busy() -> bool:
        listing = http.get(f"/serviceqs/{name}/workers").json()
        on_task = [w for w in listing["workers"] if w["state"] == "busy" and w["current_task"] in task_ids]
        if on_task and listing["supervisors"]:
            found.update(listing, worker=on_task[0])
        return bool(found)

    wait_for(busy, 60, "a busy worker on a pushed task", interval=0.2)
    return found


def test_workers_api_and_panel_show_a_busy_worker(
    redis_server: RedisServer,
    conn: Redis,
    tmp_path: Path,
    spawn_supervisor: Callable[..., subprocess.Popen[bytes]],
) -> None:
    from selenium.webdriver.common.by import By

    sq = ServiceQ("crew", connection=conn, role="producer")  # starts no worker of its own
    sq.set_task_function(tasks.slow)
    sq.set_worker_config(worker_count=1)
    task_ids = sq.push_many([{"seconds": 30}, {"seconds": 30}])
    supervisor = spawn_supervisor("crew")
    with (
        running_server(redis_server.url, tmp_path / "server.log", SERVICEQ_API_TOKEN=TOKEN) as server,
        httpx.Client(base_url=server.base, headers=AUTH, timeout=10) as http,
    ):
        listing = busy_worker(http, "crew", task_ids)
        worker = listing["worker"]
        assert worker["machine"] == socket.gethostname() and worker["process"] > 0
        assert worker["passed"] == 0 and worker["failed"] == 0 and worker["seconds_since_seen"] < 30
        assert listing["worker_count"] == 1 and listing["status"] == "RUNNING"
        (held,) = listing["supervisors"]
        assert (held["process"], held["machine"], held["share"]) == (supervisor.pid, socket.gethostname(), 1)
        assert worker["supervisor"] == held["id"]  # started by it: its naming, the only supervisor on its machine
        assert http.get("/serviceqs/nobody/workers").status_code == 404

        with headless_chromium(TOKEN) as driver:
            driver.get(f"{server.base}/ui/serviceqs/crew")

            def shown() -> bool:
                rows = driver.find_elements(By.CSS_SELECTOR, "#workers tbody tr")
                cells = [[td.text for td in row.find_elements(By.TAG_NAME, "td")] for row in rows]
                return any(
                    c[1] == worker["machine"] and c[2] == str(worker["process"]) and c[4] in task_ids for c in cells
                )

            wait_for(shown, 20, "the Workers panel to show the busy worker", interval=0.2)
            supervisors = driver.find_element(By.ID, "supervisors").text
            assert held["id"] in supervisors and driver.find_element(By.ID, "error").text == ""
            path = tmp_path / "workers-panel.png"
            driver.save_screenshot(str(path))
            assert path.stat().st_size > 5000
            print(f"screenshot: {path}")


def test_roster_divides_worker_count_as_the_supervisors_do(conn: Redis) -> None:
    """Three supervisors' heartbeats, one lapsed: the two live ones split worker_count 3 as 2 + 1 (first by id
    takes the extra), the lapsed one is left out, and nobody is evicted by the read."""
    sq = ServiceQ("split", connection=conn, role="producer")
    sq.set_worker_config(worker_count=3)
    now = float(conn.time()[0])
    beats = {"web-1-100-aaaaaa": now + 30, "web-2-200-bbbbbb": now + 30, "old-host-300-cccccc": now - 30}
    conn.zadd(sq.keys.supervisors, beats)
    roster = sq.roster()
    assert [(s.id, s.machine, s.process, s.share) for s in roster.supervisors] == [
        ("web-1-100-aaaaaa", "web-1", 100, 2),
        ("web-2-200-bbbbbb", "web-2", 200, 1),
    ]
    assert roster.workers == [] and roster.worker_count == 3
    assert conn.zcard(sq.keys.supervisors) == 3
