"""Control (tag ``control``): settings, pause, resume, stop, start, scale, requeue, delete.

The web process starts no worker processes (its handles are producer-role):
supervisors or ``rq worker`` run them, and they follow worker_count.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel

from rq_serviceq.http.routes.common import ERRORS, Name, checked, read_json, service, validated, with_queue
from rq_serviceq.http.schemas import (
    BreakerUpdate,
    ControlResult,
    RetryConfigUpdate,
    ScaleRequest,
    WorkerConfigUpdate,
)
from rq_serviceq.serviceq import ServiceQ

router = APIRouter(responses=ERRORS)


def _result(sq: ServiceQ, message: str, **extra: Any) -> ControlResult:
    return ControlResult(name=sq.name, status=sq.get_status(), message=message, **extra)


async def control(request: Request, name: str, work: Any) -> ControlResult:
    svc = service(request)
    result: ControlResult = await svc.run(with_queue, svc, name, work)
    return result


async def update_settings(
    request: Request, name: str, model: type[BaseModel], apply: Callable[[ServiceQ, dict[str, Any]], None]
) -> dict[str, Any]:
    """A PUT of some settings: the body checked against ``model``, what it gives applied, the settings returned."""
    name = checked(name)
    body = validated(model, await read_json(request))
    nullable: frozenset[str] = getattr(model, "NULLABLE", frozenset())
    update = {
        key: value for key, value in body.model_dump(exclude_unset=True).items() if value is not None or key in nullable
    }
    svc = service(request)

    def work(sq: ServiceQ) -> dict[str, Any]:
        apply(sq, update)
        return sq.describe()

    settings: dict[str, Any] = await svc.run(with_queue, svc, name, work)
    return settings


@router.put("/serviceqs/{name}/worker-config", tags=["control"])
async def put_worker_config(name: Name, request: Request) -> dict[str, Any]:
    """The seed's SetWorkerConfig; omitted fields keep their value.  Returns the settings."""
    return await update_settings(request, name, WorkerConfigUpdate, lambda sq, given: sq.set_worker_config(**given))


@router.put("/serviceqs/{name}/retry-config", tags=["control"])
async def put_retry_config(name: Name, request: Request) -> dict[str, Any]:
    """The seed's SetRetryConfig; omitted fields keep their value.  Returns the settings."""
    return await update_settings(request, name, RetryConfigUpdate, lambda sq, given: sq.set_retry_config(**given))


@router.put("/serviceqs/{name}/breaker", tags=["control"])
async def put_breaker(name: Name, request: Request) -> dict[str, Any]:
    """Set the whole breaker (``set_breaker``): the service queue pauses itself when its batch fails too
    much; omitted fields are off, ``{}`` turns it off.  Returns the settings."""
    return await update_settings(request, name, BreakerUpdate, lambda sq, given: sq.set_breaker(**given))


@router.post("/serviceqs/{name}/pause", tags=["control"])
async def pause(name: Name, request: Request) -> ControlResult:
    """On return no task of this service queue starts anywhere until resume; running ones finish."""
    name = checked(name)

    def work(sq: ServiceQ) -> ControlResult:
        sq.pause()
        return _result(sq, "paused: no task starts until resume")

    return await control(request, name, work)


@router.post("/serviceqs/{name}/resume", tags=["control"])
async def resume(name: Name, request: Request) -> ControlResult:
    name = checked(name)

    def work(sq: ServiceQ) -> ControlResult:
        sq.resume()
        return _result(sq, "resumed")

    return await control(request, name, work)


@router.post("/serviceqs/{name}/stop", tags=["control"])
async def stop(name: Name, request: Request, timeout: Annotated[float, Query(ge=0, le=300)] = 30.0) -> ControlResult:
    """End the active batch: queued and waiting tasks fail with STOPPED; running ones finish."""
    name = checked(name)

    def work(sq: ServiceQ) -> ControlResult:
        batch_id = sq.stop(timeout=timeout)
        return _result(sq, f"stopped batch {batch_id}" if batch_id else "no active batch", batch_id=batch_id)

    return await control(request, name, work)


@router.post("/serviceqs/{name}/start", tags=["control"])
async def start(name: Name, request: Request) -> ControlResult:
    """Let workers take tasks (resumes a paused queue) and say how many listen.

    The web process starts no worker processes: supervisors (``rq-serviceq worker
    NAME``) or ``rq worker`` run them, and they follow worker_count.
    """
    name = checked(name)

    def work(sq: ServiceQ) -> ControlResult:
        if sq.get_status() == "PAUSED":
            sq.resume()
        live = sq.live_workers()
        message = (
            f"{live} worker(s) listening on {sq.queue_name}"
            if live
            else f"no worker is listening on {sq.queue_name}: run `rq-serviceq worker {sq.name}` "
            "(this web process starts none)"
        )
        return _result(sq, message, live_workers=live)

    return await control(request, name, work)


@router.post("/serviceqs/{name}/scale", tags=["control"])
async def scale(name: Name, request: Request) -> ControlResult:
    """worker_count, the total across machines; supervisors follow within a second."""
    name = checked(name)
    body = validated(ScaleRequest, await read_json(request))

    def work(sq: ServiceQ) -> ControlResult:
        sq.scale(body.worker_count)
        return _result(sq, f"worker_count is now {body.worker_count}", count=body.worker_count)

    return await control(request, name, work)


@router.post("/serviceqs/{name}/requeue-failed", tags=["control"])
async def requeue_failed(
    name: Name,
    request: Request,
    batch_id: Annotated[str | None, Query(pattern=r"^[A-Za-z0-9_-]{1,64}$")] = None,
) -> ControlResult:
    """Push a batch's failed tasks again as new tasks (default: the current or last batch)."""
    name = checked(name)

    def work(sq: ServiceQ) -> ControlResult:
        count = sq.requeue_failed(batch_id)
        return _result(sq, f"requeued {count} failed task(s)", count=count)

    return await control(request, name, work)


@router.delete("/serviceqs/{name}", tags=["control"])
async def delete(name: Name, request: Request) -> ControlResult:
    """Remove everything of the service queue: tasks, batches, reports, config."""
    name = checked(name)
    svc = service(request)

    def work(sq: ServiceQ) -> ControlResult:
        sq.delete()
        svc.forget(name)
        return ControlResult(name=name, status="DELETED", message=f"service queue {name!r} deleted")

    return await control(request, name, work)
