"""What the surfaces read: one place for the CLI, the HTTP service, Django, Flask and the metrics.

Each read is a typed function returning a model of ``models.py``, in as few round trips as
it can; the facade (``ServiceQ``) exposes them, and the surfaces never build a key or name a
hash field themselves (``tests/unit/test_structure.py``).  The batch reports themselves are
``report.py``'s; this module reads what goes around them: where the tasks are, every queue
at once, the figures the metrics export.
"""

from __future__ import annotations

import logging
import math

from redis import Redis

from rq_serviceq.batch import report
from rq_serviceq.models import Progress, QueueFigures, QueueLengths, Settings, Status
from rq_serviceq.store import keys as k
from rq_serviceq.store import scripts
from rq_serviceq.store.keys import Ledger, State
from rq_serviceq.store.replies import decode_hash, text

logger = logging.getLogger("rq_serviceq.metrics")


def names(conn: Redis) -> list[str]:
    """Every service queue on this Redis, sorted."""
    return sorted(text(name) for name in conn.smembers(k.NAMES))


def exists(conn: Redis, name: str) -> bool:
    return bool(conn.exists(k.Keys(name).state))


def count(conn: Redis) -> int:
    """How many service queues this Redis holds (one round trip): what a cap on creating them counts."""
    return int(conn.scard(k.NAMES))


def statuses(conn: Redis) -> dict[str, str]:
    """Every service queue and its status, by name (two round trips)."""
    found = names(conn)
    with conn.pipeline(transaction=False) as pipe:
        for name in found:
            pipe.hget(k.Keys(name).state, State.STATUS)
        replies = pipe.execute()
    return {name: text(status) for name, status in zip(found, replies, strict=True) if status is not None}


def current_batch_id(conn: Redis, keys: k.Keys) -> str | None:
    """The active batch, or the last one when none is active."""
    active, last = conn.hmget(keys.state, State.ACTIVE_BATCH, State.LAST_BATCH)
    chosen = active or last
    return text(chosen) if chosen else None


def batch_done(conn: Redis, keys: k.Keys, batch_id: str, field: str = Ledger.FINALIZED) -> bool:
    """Whether the batch has ``field`` set: FINALIZED (report and callback done) or END_TIME (last task counted)."""
    return bool(conn.hexists(keys.batch(batch_id), field))


def lengths(conn: Redis, keys: k.Keys) -> QueueLengths:
    """Where the service queue's tasks are, in one round trip."""
    with conn.pipeline(transaction=False) as pipe:
        pipe.llen(keys.queue)
        pipe.zcard(keys.retry)
        pipe.zcard(keys.leases)
        pipe.zcard(keys.finished)
        pipe.zcard(keys.failed)
        pipe.scard(keys.workers)
        queued, waiting, in_flight, passed, failed, workers = pipe.execute()
    return QueueLengths(
        queued=queued, waiting_retries=waiting, in_flight=in_flight, passed=passed, failed=failed, workers=workers
    )


def progress(conn: Redis, keys: k.Keys, settings: Settings, batch_id: str) -> Progress:
    """A batch's ledger, the queue's status and where its tasks wait, in one round trip."""
    with conn.pipeline(transaction=False) as pipe:
        pipe.hgetall(keys.batch(batch_id))
        pipe.time()
        pipe.hget(keys.state, State.STATUS)
        pipe.llen(keys.queue)
        pipe.zcard(keys.retry)
        pipe.hget(keys.state, State.PAUSE_REASON)
        raw, (secs, micros), status, queued, waiting, reason = pipe.execute()
    fields = decode_hash(raw)
    queue_status = text(status or Status.CREATED)
    summary = report.summary_of(fields, secs + micros / 1e6, settings, batch_id)
    return Progress(
        **summary.model_dump(),
        finalized=Ledger.FINALIZED in fields,
        queue_status=queue_status,
        pause_reason=text(reason or b"") if queue_status == Status.PAUSED else "",
        queued=queued,
        waiting_retries=waiting,
    )


def figures(conn: Redis) -> list[QueueFigures]:
    """Every service queue's figures, sorted by name: one round trip for the names, then one script call
    per ``scripts.READ_SLICE`` queues, all sent together (1,000 queues: bench/metrics.py)."""
    return [_figures(read) for read in scripts.read_queues(conn, names(conn))]


def _figures(read: scripts.QueueRead) -> QueueFigures:
    counts, skipped = _numbers(read.name, read.totals)
    ledger = read.ledger or [None] * len(Ledger.COUNTS)
    return QueueFigures(
        name=read.name,
        status=read.status or Status.CREATED,
        batch_id=read.batch_id,
        batch={field: _integer(read.name, field, value) for field, value in zip(Ledger.COUNTS, ledger, strict=True)},
        totals=counts,
        skipped=skipped,
        queue_depth=read.queued,
        waiting_retries=read.waiting_retries,
        tasks_in_flight=read.in_flight,
        live_workers=read.live_workers,
        supervisors=read.supervisors,
        worker_count=_integer(read.name, "worker_count", read.worker_count),
    )


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


def _integer(name: str, field: str, value: str | None) -> int:
    try:
        return int(value or 0)
    except ValueError:
        logger.warning("metrics: service queue %r: %s=%r is not an integer; reported as 0", name, field, value)
        return 0
