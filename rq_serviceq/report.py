"""passed/failed → report: batch reports, streamed from Redis.

A batch's passed and failed task ids are Redis lists in completion order;
a report reads them a page at a time, so a million-task batch never needs
to be in memory at once.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Iterator
from typing import Any

from redis import Redis
from rq.utils import utcparse

from . import keys as k
from .models import BatchReport, QTask, Settings, WorkerReport
from .state import decode_hash, text

PAGE_SIZE = 1000
_TASK_FIELDS = ["data", "sq_batch", "sq_created", "sq_retries", "sq_last", "sq_remark"]


def summary(conn: Redis, keys: k.Keys, settings: Settings, batch_id: str, status: str | None = None) -> BatchReport:
    """The batch report without its task lists."""
    fields = decode_hash(conn.hgetall(keys.batch(batch_id)))
    if not fields:
        raise LookupError(f"service queue {settings.name!r} has no batch {batch_id!r} (never existed, or expired)")
    start = _float(fields.get("start_time"))
    end = _float(fields.get("end_time"))
    now = redis_now(conn) if end is None else end
    return BatchReport(
        batch_id=batch_id,
        serviceq_id=settings.id,
        serviceq_name=settings.name,
        start_time=start,
        end_time=end,
        batch_duration=None if start is None else now - start,
        total_submitted=int(fields.get("submitted", 0)),
        total_success=int(fields.get("passed", 0)),
        total_failed=int(fields.get("failed", 0)),
        total_pending=int(fields.get("pending", 0)),
        status=status or fields.get("status", "PENDING"),
        end_callback=fields.get("end_callback"),
    )


def build(conn: Redis, keys: k.Keys, settings: Settings, batch_id: str, status: str | None = None) -> dict[str, Any]:
    """The seed's batch report as a dict, with task lists up to ``report_inline_limit``."""
    rep = summary(conn, keys, settings, batch_id, status)
    if rep.total_success + rep.total_failed <= settings.report_inline_limit:
        rep.passed_tasks = list(iter_tasks(conn, keys, settings.id, batch_id, "passed"))
        rep.failed_tasks = list(iter_tasks(conn, keys, settings.id, batch_id, "failed"))
    else:
        rep.tasks_inline = False
    return rep.model_dump()


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
            if row[1] is not None:  # its batch: a deleted job is listed by its remark alone
                yield qtask_from_row(task_id, serviceq_id, row)


def iter_id_pages(
    conn: Redis, keys: k.Keys, batch_id: str, which: str, page_size: int = PAGE_SIZE, start: int = 0
) -> Iterator[list[str]]:
    list_key = keys.batch_passed(batch_id) if which == "passed" else keys.batch_failed(batch_id)
    while ids := [text(x) for x in conn.lrange(list_key, start, start + page_size - 1)]:
        yield ids
        start += page_size


def tasks_to_requeue(conn: Redis, ids: list[str]) -> list[tuple[str, Any]]:
    """(task id, task) of the failed tasks among ``ids`` that were not requeued already."""
    with conn.pipeline(transaction=False) as pipe:
        for task_id in ids:
            pipe.hmget(k.job_key(task_id), ["data", "sq_final", "sq_requeued_as"])
        rows = pipe.execute()
    return [
        (task_id, _task_of(data))
        for task_id, (data, final, requeued) in zip(ids, rows, strict=True)
        if data is not None and final == b"failed" and not requeued
    ]


def eta_seconds(info: dict[str, Any], now: float) -> float | None:
    """Time left in the batch at the throughput so far; None until a task has ended."""
    done = info["total_success"] + info["total_failed"]
    if info["total_pending"] == 0:
        return 0.0 if done else None
    if not done or info["start_time"] is None or info["end_time"] is not None:
        return None
    elapsed = max(now - info["start_time"], 1e-6)
    return round(info["total_pending"] * elapsed / done, 3)


def _task_of(data: bytes | None) -> Any:
    if not data:
        return None
    try:
        raw = zlib.decompress(data)
    except zlib.error:
        raw = data
    return json.loads(raw)[2][0]


def qtask_from_row(task_id: str, serviceq_id: str, row: list[bytes | None]) -> QTask:
    data, batch_id, created, retries, last, remark = row
    return QTask(
        task_id=task_id,
        batch_id=text(batch_id or b""),
        serviceq_id=serviceq_id,
        task=_task_of(data),
        total_retry_attempts=int(retries or 0),
        last_retry_timestamp=_float(last),
        created_at=_float(created),
        remark=text(remark or b""),
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


def worker_reports(conn: Redis, keys: k.Keys) -> dict[str, dict[str, Any]]:
    """The seed's worker post box, read from RQ's own worker registry for the pending queue."""
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
        born = _rq_date(fields.get("birth"))
        reports[wid] = WorkerReport(
            id=wid,
            created_at=born,
            status=_WORKER_STATUS.get(fields.get("state", ""), "RUNNING"),
            success_count=int(fields.get("successful_job_count") or 0),
            failed_count=int(fields.get("failed_job_count") or 0),
            uptime=0.0 if born is None else round(now - born, 3),
        ).model_dump()
    return reports


_WORKER_STATUS = {"suspended": "PAUSED", "busy": "RUNNING", "idle": "RUNNING", "started": "RUNNING"}


def _rq_date(value: str | None) -> float | None:
    if not value:
        return None
    return utcparse(value).timestamp()


def redis_now(conn: Redis) -> float:
    secs, micros = conn.time()
    return secs + micros / 1_000_000


def _float(value: Any) -> float | None:
    if value is None or value == "" or value == b"":
        return None
    return float(value)
