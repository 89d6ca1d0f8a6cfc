"""A Redis under Sentinel, named by one redis+sentinel:// URL in every entry point (no failover here: that is
tests/guarantees/test_failover.py): producers, start()'s workers, the CLI, supervisors, `rq worker` by hand
with RQ's own Sentinel settings, the HTTP service with its dashboard and metrics, Flask, Django."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from redis import Redis
from redis.sentinel import SentinelConnectionPool

from rq_serviceq import ServiceQ, connect
from rq_serviceq.metrics import ServiceQCollector
from rq_serviceq.store.connection import connection_url
from rq_serviceq.testing import SentinelCluster
from tests import tasks
from tests.conftest import ROOT, wait_until
from tests.http_helpers import running_server


def _through_sentinel(conn: Redis) -> bool:
    return isinstance(conn.connection_pool, SentinelConnectionPool)


def _queue(name: str, workers: int = 2) -> ServiceQ:
    sq = ServiceQ(name)  # the default connection: RQ_REDIS_URL, the Sentinel URL
    sq.set_worker_config(worker_count=workers, auto_start=False)
    sq.set_task_function(tasks.slow)
    sq.set_batch_end_callback(tasks.store_report)
    return sq


def _ends(conn: Redis, batch_id: str) -> int:
    return int(conn.get(f"test:batch_end_count:{batch_id}") or 0)


def test_producer_and_the_workers_start_spawns_reach_the_primary(
    sentinel_url: str, sentinel_cluster: SentinelCluster
) -> None:
    sq = _queue("sentq")
    assert _through_sentinel(sq.connection) and connection_url(sq.connection) == sentinel_url
    pool: Any = sq.connection.connection_pool
    assert pool.get_master_address() == ("127.0.0.1", sentinel_cluster.primary.port)
    sq.push_many([{"i": i, "seconds": 0} for i in range(40)])
    assert sq.start() == 2  # `rq worker --connection-class ...SentinelAwareRedis` with the URL in RQ_REDIS_URL
    report = sq.wait_for_batch(timeout=60)
    assert (report["total_submitted"], report["total_success"]) == (40, 40)
    assert _ends(sentinel_cluster.primary.client(), report["batch_id"]) == 1
    sq.join(30)


def test_the_cli_takes_the_url_from_url_and_from_the_environment(sentinel_url: str) -> None:
    _queue("sentq")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    listed = subprocess.run([sys.executable, "-m", "rq_serviceq", "list", "--json", "--url", sentinel_url],
                            env=env, capture_output=True, text=True, timeout=60)  # fmt: skip
    assert listed.returncode == 0, listed.stderr
    assert [row["name"] for row in json.loads(listed.stdout)] == ["sentq"]
    status = subprocess.run([sys.executable, "-m", "rq_serviceq", "status", "sentq"],
                            env=env, capture_output=True, text=True, timeout=60)  # fmt: skip
    assert status.returncode == 0, status.stderr
    bad = subprocess.run([sys.executable, "-m", "rq_serviceq", "list", "--url", "redis+sentinel://u:secret@h:1"],
                         env=env, capture_output=True, text=True, timeout=60)  # fmt: skip
    assert bad.returncode != 0 and "bad Sentinel URL" in bad.stderr and "secret" not in bad.stderr
    assert "Traceback" not in bad.stderr


def test_rq_worker_by_hand_with_rqs_own_sentinel_settings_file(
    sentinel_url: str, sentinel_cluster: SentinelCluster, tmp_path: Path
) -> None:
    sq = _queue("sentq")
    sq.push_many([{"i": i, "seconds": 0} for i in range(10)])
    instances = [("127.0.0.1", port) for port in sentinel_cluster.sentinel_ports]
    (tmp_path / "rq_sentinel_settings.py").write_text(
        f"SENTINEL = {{'INSTANCES': {instances!r}, 'MASTER_NAME': 'mymaster', 'DB': 0, 'SOCKET_TIMEOUT': 5}}\n"
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path), str(ROOT)]))
    env.pop("RQ_REDIS_URL")  # RQ's CLI prefers a URL to its settings file; the callback finds REDIS_URL
    cmd = [sys.executable, "-m", "rq.cli", "worker", "--worker-class", "rq_serviceq.ServiceQWorker",
           "-c", "rq_sentinel_settings", "--burst", "--quiet", "sentq-pending"]  # fmt: skip
    done = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    report = sq.wait_for_batch(timeout=30)
    assert report["total_success"] == 10 and _ends(sq.connection, report["batch_id"]) == 1


@contextlib.contextmanager
def _supervisor(name: str, url: str) -> Iterator[subprocess.Popen[bytes]]:
    env = dict(os.environ, RQ_REDIS_URL=url, PYTHONPATH=str(ROOT))
    cmd = [sys.executable, "-m", "rq_serviceq", "worker", name, "--interval", "0.2"]
    proc = subprocess.Popen(cmd, env=env, cwd=ROOT, start_new_session=True)
    try:
        yield proc
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)


def test_supervisor_and_http_service_with_its_dashboard_and_metrics(sentinel_url: str, tmp_path: Path) -> None:
    sq = _queue("sentq")
    with (
        _supervisor("sentq", sentinel_url),
        running_server(sentinel_url, tmp_path / "serve.log") as server,
        httpx.Client(base_url=server.base, timeout=30) as http,
    ):
        wait_until(lambda: len(sq.get_status_info()["worker_reports"]) == 2)
        pushed = http.post("/serviceqs/sentq/tasks/batch", json={"tasks": [{"i": i, "seconds": 0} for i in range(50)]})
        assert pushed.status_code == 201, pushed.text
        report = sq.wait_for_batch(timeout=60)
        assert report["total_success"] == 50 and report["batch_id"] == pushed.json()["batch_id"]
        assert "rq_serviceq_redis_up 1" in http.get("/metrics").text
        assert http.get("/rq/").status_code == 200
        assert "sentq-pending" in http.get("/rq/0/data/queues.json").text
    assert 'queue="sentq"' in ServiceQCollector(url=sentinel_url).exposition().decode()


def test_flask_and_django_settings_take_the_url(sentinel_url: str) -> None:
    from rq_serviceq.contrib import flask as serviceq_flask

    assert _through_sentinel(serviceq_flask._State(sentinel_url, {}).connection)
    pytest.importorskip("django")
    from rq_serviceq.contrib import django as serviceq_django

    conn = serviceq_django._connection(sentinel_url)
    assert _through_sentinel(conn) and conn.ping()
    assert _through_sentinel(connect())  # RQ_REDIS_URL
