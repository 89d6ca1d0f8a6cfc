"""Prometheus metrics of every service queue on a Redis: what only rq-serviceq knows.

rq-exporter already exports RQ's own figures (jobs per registry of each RQ queue,
workers, their job counts); a service queue ``NAME`` shows there as the RQ queue
``NAME-pending``.  This exports the rest: tasks pushed, passed, failed, retried and
lost (worker deaths), batches and their durations, callback failures, waiting
retries, live workers and supervisors.  Every series carries ``queue`` (the service
queue) and ``rq_queue`` (``NAME-pending``, rq-exporter's ``queue`` label) so the two
can be joined.

A scrape costs three pipelined round trips, however many service queues there
are and whatever their size or history: the counters are running totals the Lua
scripts keep in Redis (``totals.py`` says why there rather than counted at scrape time), so every
exporter (the HTTP service's ``/metrics``, ``rq-serviceq metrics`` on each worker
machine) reads the same monotonic numbers, restarts included.

Use it::

    rq-serviceq metrics --port 9121                      # a worker machine, standalone
    app = rq_serviceq.metrics.make_wsgi_app(connection)   # mount at /metrics in a WSGI app
    body = rq_serviceq.metrics.generate_latest(connection)
"""

from __future__ import annotations

import logging
import math
import signal
import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import redis
from redis import Redis

from rq_serviceq.batch import totals
from rq_serviceq.models import Status
from rq_serviceq.store import keys as k
from rq_serviceq.store import state
from rq_serviceq.store.connection import connect
from rq_serviceq.store.outage import Outage

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


logger = logging.getLogger("rq_serviceq.metrics")

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
                rows = self._read_all()
        except redis.exceptions.RedisError:
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from _families(rows)

    def _read_all(self) -> list[dict[str, Any]]:
        """Every service queue's figures in three pipelined round trips, however many queues there are.

        One pair of round trips per queue made a scrape of 5,000 queues take
        2.6 s; the figures come from the same commands, sent together.
        """
        with self.conn.pipeline(transaction=False) as pipe:
            pipe.smembers(k.NAMES)
            pipe.time()
            raw_names, (secs, micros) = pipe.execute()
        names = sorted(state.text(name) for name in raw_names)
        now = secs + micros / 1_000_000
        with self.conn.pipeline(transaction=False) as pipe:
            for name in names:
                _queue_figures(pipe, k.Keys(name), now)
            figures = pipe.execute()
        per_queue = [figures[i : i + _FIGURES] for i in range(0, len(figures), _FIGURES)]
        with self.conn.pipeline(transaction=False) as pipe:
            for name, (_, (_, _, active, last), *_, workers) in zip(names, per_queue, strict=True):
                for worker in workers:
                    key = state.text(worker)
                    pipe.exists(key if key.startswith(k.RQ_WORKER_PREFIX) else k.worker_key(key))
                if active or last:
                    pipe.hmget(k.Keys(name).batch(state.text(active or last)), *_LEDGER)
            replies = iter(pipe.execute())
        return [_row(name, queue, replies) for name, queue in zip(names, per_queue, strict=True)]


_FIGURES = 7  # the commands _queue_figures sends for each queue


def _queue_figures(pipe: Any, keys: k.Keys, now: float) -> None:
    pipe.hgetall(keys.totals)
    pipe.hmget(keys.state, "status", "worker_count", "active_batch", "last_batch")
    pipe.llen(keys.queue)
    pipe.zcard(keys.retry)
    pipe.zcard(keys.leases)
    pipe.zcount(keys.supervisors, now, "+inf")
    pipe.smembers(keys.workers)


def _row(name: str, figures: list[Any], replies: Iterator[Any]) -> dict[str, Any]:
    """One queue's figures; ``replies`` yields its workers' EXISTS, then its batch ledger if it has a batch."""
    raw_totals, (status, worker_count, active, last), depth, waiting, in_flight, supervisors, workers = figures
    live = sum(1 for _ in workers if next(replies))
    ledger = next(replies) if active or last else [None] * len(_LEDGER)
    counts, skipped = _numbers(name, state.decode_hash(raw_totals))
    return {
        "name": name,
        "totals": counts,
        "skipped": skipped,
        "status": state.text(status or b"CREATED"),
        "queue_depth": depth,
        "waiting_retries": waiting,
        "tasks_in_flight": in_flight,
        "live_workers": live,
        "supervisors": supervisors,
        "worker_count": _integer(name, "worker_count", worker_count),
        "batch": {field: _integer(name, field, value) for field, value in zip(_LEDGER, ledger, strict=True)},
    }


def _numbers(name: str, raw: dict[str, str]) -> tuple[dict[str, float], set[str]]:
    """The totals that are numbers, and the fields that are not (written by hand, or by a bug): those are
    left out of the scrape with a warning (not reported as 0, a counter reset), so one bad field does not
    turn the whole scrape into a 500."""
    found: dict[str, float] = {}
    skipped: set[str] = set()
    for field, value in raw.items():
        try:
            found[field] = _finite(value)
        except ValueError:
            skipped.add(field)
            logger.warning("metrics: service queue %r: totals field %s=%r is not a number; skipped", name, field, value)
    return found, skipped


def _finite(value: str) -> float:
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(value)
    return number


def _integer(name: str, field: str, value: Any) -> int:
    try:
        return int(value or 0)
    except ValueError:
        logger.warning("metrics: service queue %r: %s=%r is not an integer; reported as 0", name, field, value)
        return 0


def _families(rows: list[dict[str, Any]]) -> Iterator[Metric]:
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    def labels(row: dict[str, Any]) -> list[str]:
        return [row["name"], k.pending_queue_name(row["name"])]

    for counter, help_text in _COUNTER_HELP.items():
        family = CounterMetricFamily(f"rq_serviceq_tasks_{counter}", help_text, labels=LABELS)
        for row in rows:
            if counter not in row["skipped"]:
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
            if field not in row["skipped"]:
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
        if any(field == "duration_sum" or field.startswith(totals.BUCKET_PREFIX) for field in row["skipped"]):
            continue  # a histogram with a hole in it would be wrong, not partial
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


def serve(port: int = 9121, host: str = "127.0.0.1", url: str | None = None) -> None:
    """``rq-serviceq metrics``: serve ``/metrics`` until SIGTERM or SIGINT."""
    import prometheus_client

    server, thread = prometheus_client.start_http_server(port, addr=host, registry=make_registry(url=url))
    stopping = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stopping.set())
    stopping.wait()
    server.shutdown()
    thread.join(5)
