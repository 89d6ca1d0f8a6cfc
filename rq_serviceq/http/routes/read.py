"""Reports out (tags ``read`` and ``service``): the service queues, their batches and reports, and /healthz.

Reads and controls never create a service queue: an unknown name is a 404.
"""

from __future__ import annotations

from itertools import islice
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request

from rq_serviceq.http.routes.common import ERRORS, BatchId, Name, Offset, batcher, checked, service, with_queue
from rq_serviceq.http.schemas import (
    BatchList,
    BatchProgress,
    BatchReportPage,
    Health,
    Page,
    ServiceQDetail,
    ServiceQList,
    ServiceQSummary,
)
from rq_serviceq.models import BatchReport
from rq_serviceq.serviceq import ServiceQ

ACTIVE = ("PENDING", "RUNNING", "PAUSED")

router = APIRouter(responses=ERRORS)
open_router = APIRouter()  # no token needed (when one is set): a load balancer's probe


@open_router.get("/healthz", tags=["service"])
async def healthz(request: Request) -> Health:
    """200 when Redis answers PING; 503 naming the Redis otherwise."""
    svc = service(request)
    await svc.run(svc.conn.ping)
    auto = batcher(request)
    return Health(status="ok", redis=svc.where, waiting_tasks=auto.waiting if auto else 0)


@router.get("/serviceqs", tags=["read"])
async def list_serviceqs(request: Request) -> ServiceQList:
    svc = service(request)
    found: dict[str, str] = {}
    for conn in svc.all_servers():  # every server the routes name, so one service lists every queue
        found |= await svc.run(ServiceQ.statuses, conn)
    return ServiceQList(serviceqs=[ServiceQSummary(name=n, status=s) for n, s in sorted(found.items())])


@router.get("/serviceqs/{name}", tags=["read"])
async def get_serviceq(name: Name, request: Request) -> ServiceQDetail:
    name = checked(name)
    svc = service(request)

    def read(sq: ServiceQ) -> ServiceQDetail:
        return ServiceQDetail(name=name, settings=sq.describe(), status_info=sq.status_info())

    detail: ServiceQDetail = await svc.run(with_queue, svc, name, read)
    return detail


@router.get("/serviceqs/{name}/batches", tags=["read"])
async def list_batches(
    name: Name,
    request: Request,
    offset: Offset = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
) -> BatchList:
    """Batch history, newest first (reports are kept for the service queue's report_ttl).

    A listing carries no task lists: they are empty and ``tasks_inline`` is false
    (read one batch, ``/batches/{batch_id}``, for its tasks).
    """
    name = checked(name)
    svc = service(request)
    found = await svc.run(with_queue, svc, name, lambda sq: sq.batches(offset, limit))
    return BatchList(batches=[BatchReport.model_validate(b | {"tasks_inline": False}) for b in found])


def resolve_batch(sq: ServiceQ, batch_id: str) -> str:
    if batch_id != "latest":
        return batch_id
    current = sq.current_batch_id()
    if current is None:
        raise LookupError(f"service queue {sq.name!r} has had no batch yet")
    return current


@router.get("/serviceqs/{name}/batches/{batch_id}", tags=["read"])
async def get_batch(
    name: Name,
    batch_id: BatchId,
    request: Request,
    outcome: Literal["passed", "failed"] | None = None,
    offset: Offset = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> BatchReportPage:
    """The batch report; task lists paged (both lists, or only ``outcome``'s), failed tasks first."""
    name = checked(name)
    svc = service(request)

    def read(sq: ServiceQ) -> BatchReportPage:
        bid = resolve_batch(sq, batch_id)
        summary = sq.get_batch_summary(bid)
        lists = {}
        for which in ("failed", "passed"):
            wanted = outcome in (None, which)
            lists[which] = list(islice(sq.iter_tasks(bid, which, limit, offset), limit)) if wanted else []
        complete = offset == 0 and outcome is None and summary["total_success"] + summary["total_failed"] <= limit
        return BatchReportPage.model_validate(
            summary
            | {"passed_tasks": lists["passed"], "failed_tasks": lists["failed"], "tasks_inline": complete}
            | {"page": Page(outcome=outcome, offset=offset, limit=limit)}
        )

    page: BatchReportPage = await svc.run(with_queue, svc, name, read)
    return page


@router.get("/serviceqs/{name}/batches/{batch_id}/progress", tags=["read"])
async def get_progress(name: Name, batch_id: BatchId, request: Request) -> BatchProgress:
    """Counters, rate and ETA of one batch: what the batch page polls."""
    name = checked(name)
    svc = service(request)
    result: BatchProgress = await svc.run(with_queue, svc, name, lambda sq: progress(sq, resolve_batch(sq, batch_id)))
    return result


def progress(sq: ServiceQ, batch_id: str) -> BatchProgress:
    summary = sq.get_batch_summary(batch_id)
    active = summary["end_time"] is None and summary["status"] in ACTIVE
    waiting = sq.queue_lengths().waiting_retries if active else 0  # not the whole status info, workers and all
    done = summary["total_success"] + summary["total_failed"]
    duration = summary["batch_duration"] or 0.0
    rate = done / duration if duration > 0 and done else None
    pending = summary["total_pending"]
    eta = 0.0 if pending == 0 else (round(pending / rate, 3) if rate else None)
    limit = sq.settings.rate_limit
    if eta is not None and limit:  # no sooner than the rate limit allows
        eta = max(eta, round(pending / limit, 3))
    given = {"waiting_retries": waiting, "rate_per_second": rate and round(rate, 3), "eta_seconds": eta}
    return BatchProgress.model_validate(summary | given | {"rate_limit": limit})
