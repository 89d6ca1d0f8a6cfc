"""Metrics: the running totals the scripts keep, scraped through the WSGI app and `rq-serviceq metrics`."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from redis import Redis
from werkzeug.test import Client

from rq_serviceq import ServiceQ, metrics
from rq_serviceq.models import QueueFigures
from rq_serviceq.testing import free_port
from rq_serviceq.worker.claim import claim
from tests import tasks
from tests.conftest import ROOT, drain, present, wait_until

DASHBOARD = ROOT / "deploy" / "grafana" / "rq-serviceq.json"


def scrape(body: bytes | str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample as {(name, sorted labels): value}, read with prometheus_client's own parser."""
    text = body.decode() if isinstance(body, bytes) else body
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


def test_counters_gauges_and_histogram(make_sq: Callable[..., ServiceQ], conn: Redis) -> None:
    sq = make_sq("drag", worker_count=2, auto_start=False)
    sq.set_retry_config(retry_limit=1)
    sq.set_task_function(tasks.returns)
    sq.set_batch_begin_callback(tasks.raises)  # fails: counted once as a begin callback failure
    ok, lost_one = sq.push_many([{"value": True}, {"value": True}])
    sq.push_many([{"value": False}, {"value": [False, "NO_RETRY | x"]}])
    # A worker that claims a task, starts it and dies: its lease runs out and the next claim counts it lost.
    got = claim(conn, sq.keys, "ghost", sq.settings, 1, 0.05)
    (job,) = got.jobs
    conn.rpush(sq.keys.journal("ghost"), f"s{job.id}\x1f{job.claim}")  # as its journal says (worker/journal.py)
    wait_until(lambda: present(conn.zscore(sq.keys.leases, job.id)) < conn.time()[0] + conn.time()[1] / 1e6)
    before = scrape(metrics.generate_latest(conn))
    assert value(before, "rq_serviceq_tasks_pushed_total", queue="drag", rq_queue="drag-pending") == 4
    assert value(before, "rq_serviceq_queue_depth", queue="drag", rq_queue="drag-pending") == 3
    assert value(before, "rq_serviceq_tasks_in_flight", queue="drag", rq_queue="drag-pending") == 1
    assert value(before, "rq_serviceq_status", queue="drag", rq_queue="drag-pending", status="RUNNING") == 1
    drain(sq)

    app = Client(metrics.make_wsgi_app(conn))
    response = app.get("/metrics")
    assert response.status_code == 200 and response.headers["Content-Type"].startswith("text/plain")
    after = scrape(response.get_data())
    lab = {"queue": "drag", "rq_queue": "drag-pending"}
    counts = {name: value(after, f"rq_serviceq_tasks_{name}_total", **lab) for name in metrics._COUNTER_HELP}
    assert counts == {"pushed": 4, "passed": 2, "failed": 2, "retried": 1, "lost": 1}
    assert value(after, "rq_serviceq_batches_total", status="finished", **lab) == 1
    assert value(after, "rq_serviceq_callback_failures_total", callback="begin", **lab) == 1
    assert value(after, "rq_serviceq_callback_failures_total", callback="end", **lab) == 0
    assert value(after, "rq_serviceq_batch_duration_seconds_count", **lab) == 1
    assert value(after, "rq_serviceq_batch_duration_seconds_bucket", le="+Inf", **lab) == 1
    assert value(after, "rq_serviceq_batch_duration_seconds_bucket", le="1", **lab) in (0, 1)
    assert value(after, "rq_serviceq_worker_count", **lab) == 2
    assert value(after, "rq_serviceq_batch_tasks", state="passed", **lab) == 2
    assert value(after, "rq_serviceq_status", status="FINISHED", **lab) == 1
    assert value(after, "rq_serviceq_redis_up") == 1
    assert lost_one and ok  # the dead worker's task ran again and passed
    assert conn.hget(f"rq:job:{job.id}", "sq_lost") == b"1"


def test_end_callback_failure_and_stop_are_counted(make_sq: Callable[..., ServiceQ], conn: Redis) -> None:
    sq = make_sq("drag", worker_count=0, auto_start=False)
    sq.set_task_function(tasks.returns)
    sq.set_batch_end_callback(tasks.failing_end_callback)
    sq.push_many([{"value": True}])
    drain(sq)
    sq.set_batch_end_callback(tasks.store_report)
    sq.push_many([{"value": True}] * 3)
    sq.stop()
    samples = scrape(metrics.generate_latest(conn))
    lab = {"queue": "drag", "rq_queue": "drag-pending"}
    assert value(samples, "rq_serviceq_callback_failures_total", callback="end", **lab) == 1
    assert value(samples, "rq_serviceq_batches_total", status="stopped", **lab) == 1
    assert value(samples, "rq_serviceq_batches_total", status="finished", **lab) == 1
    assert value(samples, "rq_serviceq_tasks_failed_total", **lab) == 3  # stopped tasks fail
    sq.delete()  # its totals go with it
    assert ("rq_serviceq_tasks_pushed_total", tuple(sorted(lab.items()))) not in scrape(metrics.generate_latest(conn))


def test_redis_down_is_a_metric_not_an_error() -> None:
    samples = scrape(metrics.generate_latest(url="redis://127.0.0.1:1/0"))
    assert samples == {("rq_serviceq_redis_up", ()): 0.0}


def test_metrics_command_serves_a_scrape(make_sq: Callable[..., ServiceQ], redis_url: str) -> None:
    make_sq("drag", auto_start=False).push_many([{"x": 1}])
    port = free_port()
    env = dict(os.environ, RQ_REDIS_URL=redis_url, PYTHONPATH=str(ROOT))
    cmd = [sys.executable, "-m", "rq_serviceq", "metrics", "--port", str(port), "--host", "127.0.0.1"]
    proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        body = _get_when_up(f"http://127.0.0.1:{port}/metrics")
        assert value(scrape(body), "rq_serviceq_tasks_pushed_total", queue="drag", rq_queue="drag-pending") == 1
    finally:
        proc.terminate()
        assert proc.wait(10) == 0


def _get_when_up(url: str) -> bytes:
    bodies: list[bytes] = []

    def fetched() -> bool:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                bodies.append(response.read())
        except OSError:
            return False
        return True

    wait_until(fetched, timeout=20)
    return bodies[0]


def test_grafana_dashboard_uses_only_exported_metrics(make_sq: Callable[..., ServiceQ], conn: Redis) -> None:
    make_sq("drag", auto_start=False)
    exported = {name for name, _ in scrape(metrics.generate_latest(conn))}
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    used = {m for expr in exprs for m in re.findall(r"\b(rq_serviceq_[a-z_]+)", expr)}
    assert used and used <= exported, used - exported
    assert {"rq_serviceq_tasks_lost_total", "rq_serviceq_batch_duration_seconds_bucket"} <= used


@pytest.mark.parametrize("path", sorted((ROOT / "docs").glob("metrics.md")))
def test_documented_metric_names_exist(path: Path, make_sq: Callable[..., ServiceQ], conn: Redis) -> None:
    make_sq("drag", auto_start=False)
    exported = {name for name, _ in scrape(metrics.generate_latest(conn))}
    documented = set(re.findall(r"`(rq_serviceq_[a-z_]+)", path.read_text()))
    histogram = {"rq_serviceq_batch_duration_seconds"}
    assert documented and documented - histogram <= exported, documented - histogram - exported


def test_worker_log_keeps_the_seed_format_and_can_go_elsewhere(capsys: pytest.CaptureFixture[str]) -> None:
    import logging

    from rq_serviceq import log

    saved = (list(log.logger.handlers), log.logger.propagate, log.logger.level)
    try:
        log.logger.handlers.clear()
        log.worker_log(True, "w1", "task t1 passed")
        epoch, worker, message = capsys.readouterr().out.rstrip("\n").split("  |  ")
        assert float(epoch) > 1e9 and (worker, message) == ("w1", "task t1 passed")
        log.worker_log(False, "w1", "not shown")
        assert capsys.readouterr().out == ""

        records: list[logging.LogRecord] = []
        log.logger.handlers[:] = [type("Keep", (logging.Handler,), {"emit": lambda self, r: records.append(r)})()]
        log.worker_log(True, "w2", "to my handler")
        assert capsys.readouterr().out == "" and [(r.worker_id, r.getMessage()) for r in records] == [  # type: ignore[attr-defined]
            ("w2", "to my handler")
        ]
    finally:
        log.logger.handlers[:], log.logger.propagate, log.logger.level = saved[0], saved[1], saved[2]


def test_worker_log_as_json_lines() -> None:
    env = dict(os.environ, RQ_SERVICEQ_LOG_FORMAT="json", PYTHONPATH=str(ROOT))
    code = "from rq_serviceq.log import worker_log; worker_log(True, 'w3', 'hello')"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=30).stdout
    line = json.loads(out)
    assert (line["worker_id"], line["message"], line["level"]) == ("w3", "hello", "INFO") and line["time"] > 1e9


def _prometheus_client_text(rows: list[QueueFigures] | None, conn: Redis) -> bytes:
    """The same figures through prometheus-client's families and writer: how every scrape was written before."""
    import prometheus_client
    from prometheus_client.registry import CollectorRegistry

    class Fixed(metrics.ServiceQCollector):
        def read(self) -> list[QueueFigures] | None:
            return rows

    registry = CollectorRegistry(auto_describe=False)
    registry.register(Fixed(conn))
    return prometheus_client.generate_latest(registry)


def test_the_scrape_is_line_for_line_what_prometheus_client_writes(
    make_sq: Callable[..., ServiceQ], conn: Redis
) -> None:
    done = make_sq("done", worker_count=0, auto_start=False)
    done.set_task_function(tasks.returns)
    done.push_many([{"value": True}, {"value": [False, "NO_RETRY | x"]}])
    drain(done)  # a batch ended: durations, batches_finished, passed and failed counted
    paused = make_sq("paused", worker_count=3, auto_start=False)
    paused.push_many([{"x": 1}] * 3)
    paused.pause()
    make_sq("bare", auto_start=False)
    conn.hset("rq:serviceq:paused:totals", mapping={"failed": "not a number", "passed": 1234567})
    body = metrics.generate_latest(conn)
    assert body == _prometheus_client_text(ServiceQ.figures(conn), conn)
    samples = scrape(body)
    lab = {"queue": "done", "rq_queue": "done-pending"}
    assert value(samples, "rq_serviceq_tasks_passed_total", **lab) == 1
    assert value(samples, "rq_serviceq_batch_duration_seconds_count", **lab) == 1
    assert value(samples, "rq_serviceq_status", queue="paused", rq_queue="paused-pending", status="PAUSED") == 1
    assert value(samples, "rq_serviceq_tasks_passed_total", queue="paused", rq_queue="paused-pending") == 1234567
    assert ("rq_serviceq_tasks_failed_total", (("queue", "paused"), ("rq_queue", "paused-pending"))) not in samples
    assert value(samples, "rq_serviceq_worker_count", queue="paused", rq_queue="paused-pending") == 3
    assert value(samples, "rq_serviceq_batch_tasks", queue="paused", rq_queue="paused-pending", state="pending") == 3
    down = metrics.render(None).encode()
    assert down == _prometheus_client_text(None, conn) and scrape(down) == {("rq_serviceq_redis_up", ()): 0.0}


def test_label_values_are_escaped_as_prometheus_client_escapes_them(conn: Redis) -> None:
    odd = QueueFigures(name='a"b\\c\nd', status="RUNNING", totals={"pushed": 2.5e9, "duration_sum": 0.1})
    assert metrics.render([odd]).encode() == _prometheus_client_text([odd], conn)
    assert value(scrape(metrics.render([odd])), "rq_serviceq_tasks_pushed_total", queue='a"b\\c\nd',
                 rq_queue='a"b\\c\nd-pending') == 2.5e9  # fmt: skip


def test_a_scrape_of_1000_queues_reads_every_queue_once(conn: Redis) -> None:
    names = [f"q{i:04d}" for i in range(1000)]
    for name in names:
        ServiceQ(name, connection=conn)
    for name in ("q0000", "q0199", "q0200", "q0999"):  # either side of a read script call's slice
        sq = ServiceQ(name, connection=conn)
        sq.set_worker_config(worker_count=0, auto_start=False)
        sq.push_many([{"n": n} for n in range(int(name[1:]) + 1)])
    samples = scrape(metrics.generate_latest(conn))
    ones: dict[str, float] = {}
    for (metric, labels), v in samples.items():
        if metric == "rq_serviceq_status":
            ones[dict(labels)["queue"]] = ones.get(dict(labels)["queue"], 0.0) + v
    assert ones == dict.fromkeys(names, 1.0)  # every queue once, one status each
    for name in names:
        lab = {"queue": name, "rq_queue": f"{name}-pending"}
        pushed = int(name[1:]) + 1 if name in ("q0000", "q0199", "q0200", "q0999") else 0
        assert value(samples, "rq_serviceq_queue_depth", **lab) == pushed, name
        assert value(samples, "rq_serviceq_batch_tasks", state="submitted", **lab) == pushed, name


def test_a_full_redis_is_still_scraped() -> None:
    """The read script writes nothing, so Redis at maxmemory (noeviction) runs it, loading it first if it must."""
    from rq_serviceq.testing import RedisServer

    with RedisServer("--maxmemory-policy", "noeviction") as server:
        full = Redis.from_url(server.url)
        ServiceQ("drag", connection=full).push_many([{"x": 1}])
        full.script_flush()  # the scrape must load its script on the full Redis
        full.config_set("maxmemory", 1)
        try:
            samples = scrape(metrics.generate_latest(full))
        finally:
            full.config_set("maxmemory", 0)
    assert value(samples, "rq_serviceq_redis_up") == 1
    assert value(samples, "rq_serviceq_tasks_pushed_total", queue="drag", rq_queue="drag-pending") == 1


def test_the_metrics_benchmark_runs() -> None:
    """bench/metrics.py measures the 1,000-queue figure of docs/metrics.md; here it only has to run (20 queues)."""
    cmd = [sys.executable, "-m", "bench.metrics", "--queues", "20", "--runs", "1"]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120, env=dict(os.environ))
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("| 20 queues | read_ms ") and "ratio" in done.stdout
