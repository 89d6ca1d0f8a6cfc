"""Prometheus metrics of every service queue on a Redis: what only rq-serviceq knows.

rq-exporter already exports RQ's own figures (jobs per registry of each RQ queue,
workers, their job counts); a service queue ``NAME`` shows there as the RQ queue
``NAME-pending``.  This exports the rest: tasks pushed, passed, failed, retried and
lost (worker deaths), batches and their durations, callback failures, waiting
retries, live workers and supervisors.  Every series carries ``queue`` (the service
queue) and ``rq_queue`` (``NAME-pending``, rq-exporter's ``queue`` label) so the two
can be joined.

A scrape costs two pipelined round trips per service queue, whatever the queue's
size or history: the counters are running totals the Lua scripts keep in Redis
(``totals.py`` says why there rather than counted at scrape time), so every
exporter (the HTTP service's ``/metrics``, ``rq-serviceq metrics`` on each worker
machine) reads the same monotonic numbers, restarts included.

Use it::

    rq-serviceq metrics --port 9121                      # a worker machine, standalone
    app = rq_serviceq.metrics.make_wsgi_app(connection)   # mount at /metrics in a WSGI app
    body = rq_serviceq.metrics.generate_latest(connection)
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import redis
from redis import Redis

from . import keys as k
from . import state, totals
from .connection import connect
from .models import Status
from .outage import Outage

# prometheus-client is an optional extra (`metrics`): imported where used, so that this module
# imports without it and `rq-serviceq metrics` can say what to install.
if TYPE_CHECKING:
    from prometheus_client.core import Metric
    from prometheus_client.registry import CollectorRegistry


def __getattr__(name: str) -> Any:
    """``CONTENT_TYPE_LATEST``: prometheus_client's, read when asked for (it changes between versions)."""
    if name == "CONTENT_TYPE_LATEST":
        import prometheus_client

        return prometheus_client.CONTENT_TYPE_LATEST
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


_LEDGER = ("submitted", "passed", "failed", "pending")
LABELS = ("queue", "rq_queue")
_COUNTER_HELP = {
    "pushed": "Tasks pushed (requeued ones included: they are new tasks)",
    "passed": "Tasks that passed",
    "failed": "Tasks that failed for good (after their retries)",
    "retried": "Attempts that failed and were scheduled to retry",
    "lost": "Times a worker died running a task (its lease ran out; job field sq_lost)",
}
_GAUGES = {
    "queue_depth": "Tasks queued for a worker (RQ's queue NAME-pending)",
    "waiting_retries": "Tasks waiting for their retry to fall due",
    "tasks_in_flight": "Tasks claimed by a worker (running, or about to)",
    "live_workers": "Workers registered on the pending queue whose RQ heartbeat is alive",
    "supervisors": "Supervisors (rq-serviceq worker NAME) alive",
    "worker_count": "The worker_count setting: workers wanted across all machines",
}


class ServiceQCollector:
    """Reads every service queue on the Redis at each scrape; holds no state of its own."""

    def __init__(self, connection: Redis | None = None, url: str | None = None) -> None:
        self.conn = connection if connection is not None else connect(url)
        self.outage = Outage(self.conn, "metrics exporter", logging.getLogger("rq_serviceq.metrics"))

    def describe(self) -> list[Metric]:
        return []  # nothing to describe ahead: the queues are found at scrape time

    def collect(self) -> Iterator[Metric]:
        from prometheus_client.core import GaugeMetricFamily

        up = GaugeMetricFamily("rq_serviceq_redis_up", "1 when this scrape reached Redis, else 0")
        try:
            with self.outage.noting("a scrape"):  # one log line when Redis goes, one when it is back
                rows = [self._read(state.text(name)) for name in sorted(self.conn.smembers(k.NAMES))]
        except redis.exceptions.RedisError:
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from _families(rows)

    def _read(self, name: str) -> dict[str, Any]:
        keys = k.Keys(name)
        now = _redis_now(self.conn)
        with self.conn.pipeline(transaction=False) as pipe:
            pipe.hgetall(keys.totals)
            pipe.hmget(keys.state, "status", "worker_count", "active_batch", "last_batch")
            pipe.llen(keys.queue)
            pipe.zcard(keys.retry)
            pipe.zcard(keys.leases)
            pipe.zcount(keys.supervisors, now, "+inf")
            pipe.smembers(keys.workers)
            raw_totals, (status, worker_count, active, last), depth, waiting, in_flight, supervisors, workers = (
                pipe.execute()
            )
        batch_id = active or last
        with self.conn.pipeline(transaction=False) as pipe:
            for worker in workers:
                key = state.text(worker)
                pipe.exists(key if key.startswith(k.RQ_WORKER_PREFIX) else k.worker_key(key))
            if batch_id:
                pipe.hmget(keys.batch(state.text(batch_id)), *_LEDGER)
            replies = pipe.execute()
        ledger = replies.pop() if batch_id else [None] * 4
        return {
            "name": name,
            "totals": {field: float(value) for field, value in state.decode_hash(raw_totals).items()},
            "status": state.text(status or b"CREATED"),
            "queue_depth": depth,
            "waiting_retries": waiting,
            "tasks_in_flight": in_flight,
            "live_workers": sum(1 for alive in replies if alive),
            "supervisors": supervisors,
            "worker_count": int(worker_count or 0),
            "batch": dict(zip(_LEDGER, (int(v or 0) for v in ledger), strict=True)),
        }


def _redis_now(conn: Redis) -> float:
    secs, micros = conn.time()
    return secs + micros / 1_000_000


def _families(rows: list[dict[str, Any]]) -> Iterator[Metric]:
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    def labels(row: dict[str, Any]) -> list[str]:
        return [row["name"], k.pending_queue_name(row["name"])]

    for counter, help_text in _COUNTER_HELP.items():
        family = CounterMetricFamily(f"rq_serviceq_tasks_{counter}", help_text, labels=LABELS)
        for row in rows:
            family.add_metric(labels(row), row["totals"].get(counter, 0.0))
        yield family
    yield _labelled_counter(rows, labels, "rq_serviceq_batches", "Batches ended, by final status", "status",
                            {"finished": "batches_finished", "stopped": "batches_stopped"})  # fmt: skip
    callbacks = {"begin": "begin_callback_failures", "end": "end_callback_failures"}
    yield _labelled_counter(rows, labels, "rq_serviceq_callback_failures",
                            "Batch callbacks that failed for good (their report field says 'failed: ...')",
                            "callback", callbacks)  # fmt: skip
    yield _durations(rows, labels)
    for gauge, help_text in _GAUGES.items():
        level = GaugeMetricFamily(f"rq_serviceq_{gauge}", help_text, labels=LABELS)
        for row in rows:
            level.add_metric(labels(row), row[gauge])
        yield level
    batch = GaugeMetricFamily(
        "rq_serviceq_batch_tasks", "The current (or last) batch's ledger", labels=[*LABELS, "state"]
    )
    status = GaugeMetricFamily("rq_serviceq_status", "1 for the service queue's status", labels=[*LABELS, "status"])
    for row in rows:
        for name, value in row["batch"].items():
            batch.add_metric([*labels(row), name], value)
        for choice in (s.value for s in Status if s not in (Status.ENDING, Status.SUSPENDED, Status.DELETED)):
            status.add_metric([*labels(row), choice], 1.0 if row["status"] == choice else 0.0)
    yield batch
    yield status


def _labelled_counter(
    rows: list[dict[str, Any]],
    labels: Callable[[dict[str, Any]], list[str]],
    name: str,
    help_text: str,
    label: str,
    fields: dict[str, str],
) -> Metric:
    from prometheus_client.core import CounterMetricFamily

    family = CounterMetricFamily(name, help_text, labels=[*LABELS, label])
    for row in rows:
        for value, field in fields.items():
            family.add_metric([*labels(row), value], row["totals"].get(field, 0.0))
    return family


def _durations(rows: list[dict[str, Any]], labels: Callable[[dict[str, Any]], list[str]]) -> Metric:
    from prometheus_client.core import HistogramMetricFamily

    family = HistogramMetricFamily(
        "rq_serviceq_batch_duration_seconds",
        "Batch durations, first push to last task counted, of batches ended since the queue was created",
        labels=LABELS,
    )
    for row in rows:
        counts = row["totals"]
        cumulative, buckets = 0.0, []
        for bound in totals.DURATION_BUCKETS:
            cumulative += counts.get(f"{totals.BUCKET_PREFIX}{bound!r}", 0.0)
            buckets.append((_le(bound), cumulative))
        buckets.append(("+Inf", cumulative + counts.get(f"{totals.BUCKET_PREFIX}inf", 0.0)))
        family.add_metric(labels(row), buckets, sum_value=counts.get("duration_sum", 0.0))
    return family


def _le(bound: float) -> str:
    return str(int(bound)) if bound == int(bound) else repr(bound)


def make_registry(connection: Redis | None = None, url: str | None = None) -> CollectorRegistry:
    """A registry holding only rq-serviceq's collector (no process metrics of the serving process)."""
    from prometheus_client.registry import CollectorRegistry

    registry = CollectorRegistry(auto_describe=False)
    registry.register(ServiceQCollector(connection, url))
    return registry


def make_wsgi_app(connection: Redis | None = None, url: str | None = None) -> Callable[..., Any]:
    """A WSGI app serving the metrics: mount it at ``/metrics`` (e.g. with a2wsgi in an ASGI app)."""
    import prometheus_client

    return prometheus_client.make_wsgi_app(make_registry(connection, url))


def generate_latest(connection: Redis | None = None, url: str | None = None) -> bytes:
    """The metrics in Prometheus' text format, for a handler that returns them with ``CONTENT_TYPE_LATEST``."""
    import prometheus_client

    return prometheus_client.generate_latest(make_registry(connection, url))


def serve(port: int = 9121, host: str = "0.0.0.0", url: str | None = None) -> None:
    """``rq-serviceq metrics``: serve ``/metrics`` until SIGTERM or SIGINT."""
    import prometheus_client

    server, thread = prometheus_client.start_http_server(port, addr=host, registry=make_registry(url=url))
    stopping = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stopping.set())
    stopping.wait()
    server.shutdown()
    thread.join(5)
