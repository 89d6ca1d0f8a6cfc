"""Prometheus metrics of every service queue on a Redis: what only rq-serviceq knows.

rq-exporter already exports RQ's own figures (jobs per registry of each RQ queue,
workers, their job counts); a service queue ``NAME`` shows there as the RQ queue
``NAME-pending``.  This exports the rest: tasks pushed, passed, failed, retried and
lost (worker deaths), batches and their durations, callback failures, waiting
retries, live workers and supervisors.  Every series carries ``queue`` (the service
queue) and ``rq_queue`` (``NAME-pending``, rq-exporter's ``queue`` label) so the two
can be joined.

A scrape costs two round trips and a read-only script call per 200 service queues,
whatever their size or history, and is written straight in the text format (docs/metrics.md,
"What a scrape costs"): the counters are running totals the Lua scripts keep in Redis
(``totals.py`` says why there rather than counted at scrape time), so every exporter (the HTTP
service's ``/metrics``, ``rq-serviceq metrics`` on each worker machine) reads the same
monotonic numbers, restarts included.

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
from dataclasses import dataclass
from functools import cache
from itertools import accumulate
from operator import attrgetter
from socketserver import ThreadingMixIn
from typing import TYPE_CHECKING, Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import redis
from redis import Redis

from rq_serviceq.batch import totals
from rq_serviceq.models import QueueFigures, Status
from rq_serviceq.serviceq import ServiceQ
from rq_serviceq.store.connection import connect
from rq_serviceq.store.outage import Outage

# prometheus-client is an optional extra (`metrics`), needed only for ``make_registry`` (a collector for a
# registry of your own): the scrape itself is written here, straight from the figures (see docs/metrics.md).
if TYPE_CHECKING:
    from prometheus_client.core import Metric
    from prometheus_client.registry import CollectorRegistry

CONTENT_TYPE_LATEST = "text/plain; version=0.0.4; charset=utf-8"  # the text format written here
logger = logging.getLogger("rq_serviceq.metrics")

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
_UP_HELP = "1 when this scrape reached Redis, else 0"
_STATUSES = tuple(s.value for s in Status if s not in (Status.ENDING, Status.SUSPENDED, Status.DELETED))
# Every queue's samples of one family, a list per queue of (extra label value, value) pairs: computed a family
# at a time over all queues (a comprehension, not a call per queue), since a scrape is 41,000 lines at 1,000.
Samples = Callable[[list[QueueFigures]], list[list[tuple[str, float]]]]


@dataclass(frozen=True)
class Family:
    """One exported metric: the single description both writers (the text below, prometheus-client's
    families) read, so the two cannot drift apart."""

    name: str  # without a counter's ``_total``
    kind: str  # counter or gauge (the histogram is written by ``_histogram_lines``)
    help: str
    label: str | None  # the label beside queue and rq_queue, if any
    samples: Samples


def _totals(fields: dict[str, str]) -> Samples:
    """Counters from the running totals; a field that is not a number is left out, not reported as 0."""
    pairs = list(fields.items())
    return lambda rows: [[(label, r.totals.get(f, 0.0)) for label, f in pairs if f not in r.skipped] for r in rows]


def _gauge(name: str) -> Samples:
    read = attrgetter(name)
    return lambda rows: [[("", read(r))] for r in rows]


def _status(rows: list[QueueFigures]) -> list[list[tuple[str, float]]]:
    return [[(choice, 1.0 if r.status == choice else 0.0) for choice in _STATUSES] for r in rows]


def _ledger(rows: list[QueueFigures]) -> list[list[tuple[str, float]]]:
    return [list(r.batch.items()) for r in rows]


_BATCHES = {"finished": "batches_finished", "stopped": "batches_stopped"}
_CALLBACKS = {"begin": "begin_callback_failures", "end": "end_callback_failures"}
_CALLBACK_HELP = "Batch callbacks that failed for good (their report field says 'failed: ...')"
_BREAKER_HELP = "Times the breaker (set_breaker) paused the service queue"
FAMILIES = (
    *(
        Family(f"rq_serviceq_tasks_{name}", "counter", text, None, _totals({"": name}))
        for name, text in _COUNTER_HELP.items()
    ),
    Family("rq_serviceq_batches", "counter", "Batches ended, by final status", "status", _totals(_BATCHES)),
    Family("rq_serviceq_callback_failures", "counter", _CALLBACK_HELP, "callback", _totals(_CALLBACKS)),
    Family("rq_serviceq_breaker_trips", "counter", _BREAKER_HELP, None, _totals({"": "breaker_trips"})),
)
HISTOGRAM = (
    "rq_serviceq_batch_duration_seconds",
    "Batch durations, first push to last task counted, of batches ended since the queue was created",
)
GAUGES = (
    *(Family(f"rq_serviceq_{name}", "gauge", text, None, _gauge(name)) for name, text in _GAUGES.items()),
    Family("rq_serviceq_batch_tasks", "gauge", "The current (or last) batch's ledger", "state", _ledger),
    STATUS := Family("rq_serviceq_status", "gauge", "1 for the service queue's status", "status", _status),
)


class ServiceQCollector:
    """Reads every service queue on the Redis at each scrape; holds no state of its own but the outage's
    (one log line when Redis goes, one when it is back)."""

    def __init__(self, connection: Redis | None = None, url: str | None = None, outage: Outage | None = None) -> None:
        """``outage``: the process's own bookkeeping, where it has one (the HTTP service), so that an outage
        is still one line each way in its log, not one more for the scrapes."""
        self.conn = connection if connection is not None else connect(url)
        self.routed = ServiceQ.routed_servers()  # the other servers RQ_SERVICEQ_ROUTES names, read at each scrape
        self.outage = outage or Outage(self.conn, "metrics exporter", logging.getLogger("rq_serviceq.metrics"))

    def read(self) -> list[QueueFigures] | None:
        """Every queue's figures; None when Redis cannot be reached (or refused the read)."""
        try:
            with self.outage.noting("a scrape"):
                return ServiceQ.figures(self.conn, self.routed)
        except redis.exceptions.RedisError:
            return None

    def exposition(self) -> bytes:
        """The scrape in Prometheus' text format, written straight from the figures: what every exporter serves."""
        return render(self.read()).encode()

    def describe(self) -> list[Metric]:
        return []  # nothing to describe ahead: the queues are found at scrape time

    def collect(self) -> Iterator[Metric]:
        """The same scrape as prometheus-client families, for a registry of your own (``make_registry``)."""
        from prometheus_client.core import GaugeMetricFamily

        rows = self.read()
        up = GaugeMetricFamily("rq_serviceq_redis_up", _UP_HELP)
        up.add_metric([], 0 if rows is None else 1)
        yield up
        if rows is not None:
            yield from _families(rows)


# --- the text format (https://prometheus.io/docs/instrumenting/exposition_formats/) --------------
def render(rows: list[QueueFigures] | None) -> str:
    """The exposition of ``rows`` (None: Redis away, only ``rq_serviceq_redis_up 0``), line for line what
    prometheus-client writes for the same families; labels in name order, as it sorts them."""
    out = ["# HELP rq_serviceq_redis_up ", _UP_HELP, "\n# TYPE rq_serviceq_redis_up gauge\n"]
    out.append(f"rq_serviceq_redis_up {'0.0' if rows is None else '1.0'}\n")
    if rows is not None:
        labels = [f'queue="{_escape(row.name)}",rq_queue="{_escape(row.name)}-pending"' for row in rows]
        for family in FAMILIES:
            _family_lines(out, family, rows, labels)
        _histogram_lines(out, rows, labels)
        for family in GAUGES:
            (_status_lines if family is STATUS else _family_lines)(out, family, rows, labels)
    return "".join(out)


def _family_lines(out: list[str], family: Family, rows: list[QueueFigures], labels: list[str]) -> None:
    """One family's lines, over precomputed label text and remembered numbers."""
    name, number, extra = family.name + ("_total" if family.kind == "counter" else ""), _NUMBER, family.label
    out.append(f"# HELP {name} {_escape_help(family.help)}\n# TYPE {name} {family.kind}\n")
    samples = zip(labels, family.samples(rows), strict=True)
    if extra is None:
        out += [f"{name}{{{base}}} {number[v]}\n" for base, pairs in samples for _, v in pairs]
    elif extra < "queue":  # labels in name order, as prometheus-client sorts them: "callback" before queue
        out += [
            f"{name}{{{_pair(extra, label)},{base}}} {number[v]}\n" for base, pairs in samples for label, v in pairs
        ]
    else:  # "state", "status": after rq_queue
        out += [
            f"{name}{{{base},{_pair(extra, label)}}} {number[v]}\n" for base, pairs in samples for label, v in pairs
        ]


def _histogram_lines(out: list[str], rows: list[QueueFigures], labels: list[str]) -> None:
    name, help_text = HISTOGRAM
    out.append(f"# HELP {name} {_escape_help(help_text)}\n# TYPE {name} histogram\n")
    heads, number = [f'{name}_bucket{{le="{le}",' for le in _LES], _NUMBER
    mark = "\x00"  # no label text holds it (escaped names): where a queue's labels go in the empty histogram
    empty = (
        "".join(f"{head}{mark}}} 0.0\n" for head in heads) + f"{name}_count{{{mark}}} 0.0\n{name}_sum{{{mark}}} 0.0\n"
    )
    for row, base in zip(rows, labels, strict=True):
        if _HISTOGRAM_FIELDS.isdisjoint(row.totals) and not row.skipped:  # most queues: one C call, 17 lines
            out.append(empty.replace(_MARK, base))
            continue
        found = _buckets(row)
        if found is None:
            continue
        buckets, sum_value = found
        out += [f"{head}{base}}} {number[count]}\n" for head, count in zip(heads, buckets, strict=True)]
        out.append(f"{name}_count{{{base}}} {number[buckets[-1]]}\n{name}_sum{{{base}}} {number[sum_value]}\n")


def _status_lines(out: list[str], family: Family, rows: list[QueueFigures], labels: list[str]) -> None:
    """The status one-hot: six lines a queue that depend on its status alone, written by one C call a queue."""
    out.append(f"# HELP {family.name} {_escape_help(family.help)}\n# TYPE {family.name} gauge\n")
    blocks = {
        status: "".join(f'{family.name}{{{_MARK},status="{c}"}} {"1.0" if c == status else "0.0"}\n' for c in _STATUSES)
        for status in (*_STATUSES, None)
    }
    out += [blocks.get(row.status, blocks[None]).replace(_MARK, base) for row, base in zip(rows, labels, strict=True)]


def _buckets(row: QueueFigures) -> tuple[list[float], float] | None:
    """The cumulative bucket counts (``_LES``' order) and the sum of a queue's durations; None when a field
    is not a number (a histogram with a hole in it would be wrong, not partial)."""
    if row.skipped and any(f == "duration_sum" or f.startswith(totals.BUCKET_PREFIX) for f in row.skipped):
        return None
    counts = row.totals
    return list(accumulate(counts.get(field, 0.0) for field in _BUCKET_FIELDS)), counts.get("duration_sum", 0.0)


def _le(bound: float) -> str:
    return str(int(bound)) if bound == int(bound) else repr(bound)


# Bucket bounds as the ``le`` label writes them, and the totals fields (non-cumulative) they add up.
_LES = [*(_le(bound) for bound in totals.DURATION_BUCKETS), "+Inf"]
_MARK = "\x00"  # where a queue's labels go in a block of lines written at once: no label text holds it (escaped)
_BUCKET_FIELDS = [
    *(f"{totals.BUCKET_PREFIX}{bound!r}" for bound in totals.DURATION_BUCKETS),
    f"{totals.BUCKET_PREFIX}inf",
]
_HISTOGRAM_FIELDS = frozenset([*_BUCKET_FIELDS, "duration_sum"])


def _escape(value: str) -> str:
    """A label value as the format wants it: backslash, double quote and line feed escaped."""
    if "\\" in value or '"' in value or "\n" in value:
        return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return value


@cache
def _pair(label: str, value: str) -> str:
    return f'{label}="{_escape(value)}"'


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _go_number(value: float) -> str:
    """A sample value as Go (and prometheus-client) writes it: ``3.0``, ``+Inf``, ``1.234567e+06``."""
    number = float(value)
    if math.isinf(number):
        return "+Inf" if number > 0 else "-Inf"
    if math.isnan(number):
        return "NaN"
    written = repr(number)
    dot = written.find(".")
    if number > 0 and dot > 6:  # Go switches to an exponent sooner than Python
        mantissa = f"{written[0]}.{written[1:dot]}{written[dot + 1 :]}".rstrip("0.")
        return f"{mantissa}e+{dot - 1:02d}"
    return written


class _Numbers(dict[float, str]):
    """Sample values as written, remembered (up to a bound): a scrape writes the same few counts
    tens of thousands of times, and a dict lookup is what is left of that."""

    def __missing__(self, value: float) -> str:
        written = _go_number(value)
        if len(self) < 100_000:
            self[value] = written
        return written


_NUMBER = _Numbers()


# --- prometheus-client's families, for make_registry --------------------------------------------
def _families(rows: list[QueueFigures]) -> Iterator[Metric]:
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

    def family_of(spec: Family) -> Metric:
        labels = [*LABELS, spec.label] if spec.label else list(LABELS)
        kind = CounterMetricFamily if spec.kind == "counter" else GaugeMetricFamily
        family = kind(spec.name, spec.help, labels=labels)
        for row, pairs in zip(rows, spec.samples(rows), strict=True):
            for label, value in pairs:
                family.add_metric([row.name, f"{row.name}-pending", *([label] if spec.label else [])], value)
        return family

    yield from (family_of(spec) for spec in FAMILIES)
    durations = HistogramMetricFamily(*HISTOGRAM, labels=LABELS)
    for row in rows:
        found = _buckets(row)
        if found is not None:
            buckets = list(zip(_LES, found[0], strict=True))
            durations.add_metric([row.name, f"{row.name}-pending"], buckets, sum_value=found[1])
    yield durations
    yield from (family_of(spec) for spec in GAUGES)


# --- serving ----------------------------------------------------------------------------------
def make_registry(connection: Redis | None = None, url: str | None = None) -> CollectorRegistry:
    """A prometheus-client registry holding only rq-serviceq's collector (no process metrics of the serving
    process).  Slower than ``generate_latest``: prometheus-client builds an object per sample."""
    from prometheus_client.registry import CollectorRegistry

    registry = CollectorRegistry(auto_describe=False)
    registry.register(ServiceQCollector(connection, url))
    return registry


def make_wsgi_app(connection: Redis | None = None, url: str | None = None) -> Callable[..., Any]:
    """A WSGI app serving the metrics: mount it at ``/metrics`` (e.g. with a2wsgi in an ASGI app)."""
    collector = ServiceQCollector(connection, url)

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        body = collector.exposition()
        start_response("200 OK", [("Content-Type", CONTENT_TYPE_LATEST), ("Content-Length", str(len(body)))])
        return [body]

    return app


def generate_latest(connection: Redis | None = None, url: str | None = None) -> bytes:
    """The metrics in Prometheus' text format, for a handler that returns them with ``CONTENT_TYPE_LATEST``.
    A handler that scrapes again and again keeps one ``ServiceQCollector`` and calls its ``exposition()``
    (its outage lines then come once each way, not once a scrape)."""
    return ServiceQCollector(connection, url).exposition()


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass  # a line per scrape is noise: the outage lines say what matters


def serve(port: int = 9121, host: str = "127.0.0.1", url: str | None = None) -> None:
    """``rq-serviceq metrics``: serve ``/metrics`` until SIGTERM or SIGINT."""
    server = make_server(host, port, make_wsgi_app(url=url), server_class=_Server, handler_class=_QuietHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    stopping = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stopping.set())
    stopping.wait()
    server.shutdown()
    thread.join(5)
