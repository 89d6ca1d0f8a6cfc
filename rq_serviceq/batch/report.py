"""passed/failed → report: batch reports, streamed from Redis.

A batch's passed and failed task ids are Redis lists in completion order;
a report reads them a page at a time, so a million-task batch never needs
to be in memory at once.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

from redis import Redis

from rq_serviceq.models import BatchReport, BatchSummary, QTask, Settings, Status, StatusInfo, WorkerReport
from rq_serviceq.store import keys as k
from rq_serviceq.store.keys import Ledger
from rq_serviceq.store.replies import decode_hash, rq_date, text
from rq_serviceq.task import stored

PAGE_SIZE = 1000
HISTORY_SWEEP = 100  # oldest batch history entries checked for expiry at each batch end
# What reading a damaged ``data`` field raises: bad JSON or UTF-8 (ValueError), the wrong shape
# (IndexError, KeyError, TypeError), nesting too deep for the JSON reader (RecursionError).
UNREADABLE = (ValueError, LookupError, TypeError, RecursionError)
# RQ's own ``created_at`` and ``ended_at`` are on Redis' clock (the scripts write them), so a passed task keeps
# no second copy of either; ``sq_last`` (a retry's time, or a failed task's end) comes first where it is kept.
_KEPT = ["sq_batch", "created_at", "sq_retries", "sq_last", "sq_remark", "ended_at"]
_TASK_FIELDS = [*_KEPT, *stored.READ]  # what a report keeps of a task, then the task itself (task.stored)

logger = logging.getLogger("rq_serviceq")


def summary(conn: Redis, keys: k.Keys, settings: Settings, batch_id: str, status: str | None = None) -> BatchSummary:
    """The batch report without its task lists."""
    fields = decode_hash(conn.hgetall(keys.batch(batch_id)))
    now = redis_now(conn) if fields and not fields.get(Ledger.END_TIME) else None
    return summary_of(fields, now, settings, batch_id, status)


def summary_of(
    fields: dict[str, str], now: float | None, settings: Settings, batch_id: str, status: str | None = None
) -> BatchSummary:
    """The summary of a ledger read with other things in one round trip; ``now`` (Redis' clock) times a
    batch that has not ended."""
    if not fields:
        raise LookupError(f"service queue {settings.name!r} has no batch {batch_id!r} (never existed, or expired)")
    start = _float(fields.get(Ledger.START_TIME))
    end = _float(fields.get(Ledger.END_TIME))
    until = end if end is not None else now
    return BatchSummary(
        batch_id=batch_id,
        serviceq_id=settings.id,
        serviceq_name=settings.name,
        start_time=start,
        end_time=end,
        batch_duration=None if start is None or until is None else until - start,
        total_submitted=int(fields.get(Ledger.SUBMITTED, 0)),
        total_success=int(fields.get(Ledger.PASSED, 0)),
        total_failed=int(fields.get(Ledger.FAILED, 0)),
        total_pending=int(fields.get(Ledger.PENDING, 0)),
        status=status or fields.get(Ledger.STATUS, Status.PENDING),
        begin_callback=fields.get(Ledger.BEGIN_CALLBACK),
        end_callback=fields.get(Ledger.END_CALLBACK),
    )


def build(conn: Redis, keys: k.Keys, settings: Settings, batch_id: str, status: str | None = None) -> BatchReport:
    """The seed's batch report, with task lists up to ``report_inline_limit`` (the facade's
    ``get_batch_report`` turns it into the seed's map)."""
    rep = BatchReport(**summary(conn, keys, settings, batch_id, status).model_dump())
    if rep.total_success + rep.total_failed <= settings.report_inline_limit:
        rep.passed_tasks = list(iter_tasks(conn, keys, settings.id, batch_id, "passed"))
        rep.failed_tasks = list(iter_tasks(conn, keys, settings.id, batch_id, "failed"))
    else:
        rep.tasks_inline = False
    return rep


def iter_tasks(
    conn: Redis, keys: k.Keys, serviceq_id: str, batch_id: str, which: str, page_size: int = PAGE_SIZE, start: int = 0
) -> Iterator[QTask]:
    """Stream a batch's passed or failed tasks in completion order, a page per round trip."""
    if which not in ("passed", "failed"):
        raise ValueError(f"which must be 'passed' or 'failed', not {which!r}")
    for ids in iter_id_pages(conn, keys, batch_id, which, page_size, start):
        with conn.pipeline(transaction=False) as pipe:
            for task_id in ids:
                pipe.hmget(k.job_key(task_id), _TASK_FIELDS)
            rows = pipe.execute()
        for task_id, row in zip(ids, rows, strict=True):
            if row[0] is not None:  # its batch: a deleted job is listed by its remark alone
                yield qtask_from_row(task_id, serviceq_id, row)


def iter_id_pages(
    conn: Redis, keys: k.Keys, batch_id: str, which: str, page_size: int = PAGE_SIZE, start: int = 0
) -> Iterator[list[str]]:
    list_key = keys.batch_passed(batch_id) if which == "passed" else keys.batch_failed(batch_id)
    while ids := [text(x) for x in conn.lrange(list_key, start, start + page_size - 1)]:
        yield ids
        start += page_size


# The batch's fields status info repeats (its ``status`` is the service queue's, not the batch's).
_BATCH_IN_STATUS = (set(StatusInfo.model_fields) & set(BatchSummary.model_fields)) - {"status"}


def status_info(conn: Redis, keys: k.Keys, settings: Settings, status: str, batch_id: str | None) -> StatusInfo:
    """The seed's status info for the current (or last) batch: one read of its ledger, the queue
    lengths and RQ's worker registry."""
    batch = summary(conn, keys, settings, batch_id) if batch_id else None
    with conn.pipeline(transaction=False) as pipe:
        pipe.llen(keys.queue)
        pipe.zcard(keys.retry)
        pipe.zcard(keys.finished)
        pipe.zcard(keys.failed)
        pipe.hgetall(keys.task_function_errors)
        pipe.hgetall(keys.rate)
        pipe.hget(keys.state, k.State.PAUSE_REASON)
        pipe.time()
        queued, waiting, passed, failed, errors, raw_rate, reason, (secs, micros) = pipe.execute()
    workers = worker_reports(conn, keys, paused=status == Status.PAUSED)
    now = secs + micros / 1e6
    budget = start_budget(settings, decode_hash(raw_rate), now)
    return StatusInfo(
        **(batch.model_dump(include=_BATCH_IN_STATUS) if batch else {}),
        **budget,
        eta_seconds=eta_seconds(batch, now, settings.rate_limit, budget["throttled_until"]) if batch else None,
        status=status,
        pending_q_length=queued + waiting,
        waiting_retries=waiting,
        passed_q_length=passed,
        failed_q_length=failed,
        worker_reports=workers,
        pause_reason=text(reason or b"") if status == Status.PAUSED else "",  # a stale one (stop()) is not shown
        # Workers that cannot import the task function give its tasks back and say why here (live ones only).
        task_function_errors={name: why for name, why in decode_hash(errors).items() if name in workers},
    )


def history(conn: Redis, keys: k.Keys, settings: Settings, offset: int = 0, limit: int = 50) -> list[BatchSummary]:
    """Up to ``limit`` batches from the ``offset``-th newest, skipping those whose report has expired."""
    found = []
    for batch_id in (text(b) for b in conn.zrevrange(keys.batches, offset, offset + max(limit, 1) - 1)):
        try:
            found.append(summary(conn, keys, settings, batch_id))
        except LookupError:
            continue  # expired: the history is trimmed when a batch ends
    return found


def eta_seconds(
    batch: BatchSummary, now: float, rate_limit: float | None = None, throttled_until: float | None = None
) -> float | None:
    """Time left in the batch at the throughput so far, no faster than the rate limit, after any throttle;
    None until a task has ended."""
    done = batch.total_success + batch.total_failed
    if batch.total_pending == 0:
        return 0.0 if done else None
    if not done or batch.start_time is None or batch.end_time is not None:
        return None
    elapsed = max(now - batch.start_time, 1e-6)
    left = batch.total_pending * elapsed / done
    if rate_limit:
        left = max(left, batch.total_pending / rate_limit)
    if throttled_until and throttled_until > now:
        left += throttled_until - now
    return round(left, 3)


RATE_WINDOW = 5.0  # lua/includes/rate.lua's RATE_WINDOW
HELD_BACK_SECONDS = 2.0


def start_budget(settings: Settings, rate: dict[str, str], now: float) -> dict[str, Any]:
    """Status info's start-budget fields, from the settings and the hash ``lua/includes/rate.lua`` keeps."""

    def number(field: str) -> float:
        try:
            return float(rate.get(field) or 0)
        except ValueError:  # written by hand: read as absent
            return 0.0

    until = number("until")
    throttled = until > now
    recent = None
    if settings.rate_limit is not None or throttled or rate:
        age = now - number("w")
        current, before = number("wn"), number("pn")
        if age >= 2 * RATE_WINDOW:
            current = before = 0.0
        elif age >= RATE_WINDOW:  # the current window is over: it is the one before a window not begun
            current, before, age = 0.0, current, age - RATE_WINDOW
        span = min(RATE_WINDOW, max(1.0, now - number("s")))  # claims began less than a window ago
        recent = round((before * (1 - age / RATE_WINDOW) + current) / span, 3)
    return {
        "rate_limit": settings.rate_limit,
        "rate_burst": settings.rate_burst,
        "start_rate": recent,
        "held_back": now - number("held") < HELD_BACK_SECONDS,
        "throttled_until": until if throttled else None,
        "throttle_remark": rate.get("why") if throttled else None,
    }


def why(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:200]


def qtask_from_row(task_id: str, serviceq_id: str, row: list[bytes | None]) -> QTask:
    """The reported Qtask; one whose data cannot be read comes with ``task: None`` and a remark
    saying so, so that one damaged hash cannot take a whole report (or its callback) down."""
    batch_id, created, retries, last, remark, ended = row[: len(_KEPT)]
    remark_text = text(remark or b"")
    try:
        task = stored.task_of(row[len(_KEPT) :])
    except UNREADABLE as exc:
        task = None
        note = f"UNREADABLE | the task's data could not be read ({why(exc)})"
        remark_text = f"{note}; remark: {remark_text}" if remark_text else note
    return QTask(
        task_id=task_id,
        batch_id=text(batch_id or b""),
        serviceq_id=serviceq_id,
        task=task,
        total_retry_attempts=int(retries or 0),
        last_retry_timestamp=_float(last) if last else rq_seconds(ended),
        created_at=rq_seconds(created),
        remark=remark_text,
    )


def keep_for(conn: Redis, keys: k.Keys, batch_id: str, ttl: int) -> None:
    """Give a finished batch's report (ledger, lists, task hashes) its time to live."""
    for which in ("passed", "failed"):
        for ids in iter_id_pages(conn, keys, batch_id, which):
            with conn.pipeline(transaction=False) as pipe:
                for task_id in ids:
                    pipe.expire(k.job_key(task_id), ttl)
                pipe.execute()
    conn.expire(keys.batch_passed(batch_id), ttl)
    conn.expire(keys.batch_failed(batch_id), ttl)
    conn.expire(keys.batch(batch_id), ttl)


def forget_expired_batches(conn: Redis, keys: k.Keys, limit: int = HISTORY_SWEEP) -> list[str]:
    """Drop batches whose report expired from the batch history; returns their ids.

    Only the oldest ``limit`` entries are looked at, so a batch end pays a bounded
    price however long the history is; the expired ones are mostly there, and a
    later batch end takes the next ones.
    """
    oldest = [text(b) for b in conn.zrange(keys.batches, 0, limit - 1)]
    with conn.pipeline(transaction=False) as pipe:
        for batch_id in oldest:
            pipe.exists(keys.batch(batch_id))
        alive = pipe.execute()
    gone = [batch_id for batch_id, live in zip(oldest, alive, strict=True) if not live]
    if gone:
        conn.zrem(keys.batches, *gone)
    return gone


def worker_reports(conn: Redis, keys: k.Keys, paused: bool = False) -> dict[str, WorkerReport]:
    """The seed's worker post box, read from RQ's own worker registry for the pending queue.

    The seed's workers report PAUSED while their service queue is paused, as these do.
    """
    names = sorted(text(n) for n in conn.smembers(keys.workers))
    with conn.pipeline(transaction=False) as pipe:
        for name in names:
            pipe.hgetall(name if name.startswith(k.RQ_WORKER_PREFIX) else k.worker_key(name))
        hashes = pipe.execute()
    now = redis_now(conn)
    reports = {}
    for key, raw in zip(names, hashes, strict=True):
        if not raw:
            continue
        fields = decode_hash(raw)
        wid = key.removeprefix(k.RQ_WORKER_PREFIX)
        born = rq_seconds(fields.get("birth"))
        reports[wid] = WorkerReport(
            id=wid,
            created_at=born,
            status=Status.PAUSED if paused else _WORKER_STATUS.get(fields.get("state", ""), Status.RUNNING),
            success_count=int(fields.get("successful_job_count") or 0),
            failed_count=int(fields.get("failed_job_count") or 0),
            uptime=0.0 if born is None else round(now - born, 3),
        )
    return reports


_WORKER_STATUS = {"suspended": Status.PAUSED}  # RQ's worker states; the rest (busy, idle, started) read RUNNING


def redis_now(conn: Redis) -> float:
    secs, micros = conn.time()
    return secs + micros / 1_000_000


def rq_seconds(value: bytes | str | None) -> float | None:
    """An RQ date field as seconds since the epoch; None for none or garbage."""
    date = rq_date(value)
    return date.timestamp() if date else None


def _float(value: Any) -> float | None:
    if value is None or value == "" or value == b"":
        return None
    return float(value)
