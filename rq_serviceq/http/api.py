"""The JSON API: tasks in, batches and control out.

Bodies are read here rather than by FastAPI's own parsing so that each bad
input gets its own status and a message that names it (not JSON: 400, wrong
content type: 415, too big: 413), before anything reaches Redis.
"""

from __future__ import annotations

from collections.abc import Callable
from itertools import islice
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Path, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ValidationError

from rq_serviceq.batch import push
from rq_serviceq.http import codec
from rq_serviceq.http.batcher import AutoBatcher
from rq_serviceq.http.schemas import (
    BatchCreated,
    BatchList,
    BatchProgress,
    BatchReportPage,
    BatchRequest,
    ControlResult,
    ErrorBody,
    Health,
    Page,
    RetryConfigUpdate,
    ScaleRequest,
    ServiceQDetail,
    ServiceQList,
    ServiceQSummary,
    TaskCreated,
    WorkerConfigUpdate,
)
from rq_serviceq.http.service import Pushed, Service, UnknownServiceQ
from rq_serviceq.models import BatchReport, StatusInfo, validate_name
from rq_serviceq.serviceq import ServiceQ
from rq_serviceq.worker import launcher

ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody, "description": what}
    for code, what in {
        400: "the body is not JSON",
        401: "SERVICEQ_API_TOKEN is set and the request did not carry it",
        403: "a browser's cross-site request to a state-changing route",
        404: "no such service queue (or batch)",
        413: "body, batch or task over its limit",
        409: "a push would auto-create a service queue past SERVICEQ_AUTO_CREATE_MAX",
        415: "Content-Type is not application/json",
        422: "a value breaks a rule; the message names it",
        503: "Redis cannot be reached or refused the write; the message names the Redis (password hidden)",
    }.items()
}
ACTIVE = ("PENDING", "RUNNING", "PAUSED")

router = APIRouter(responses=ERRORS)
open_router = APIRouter()


# --- plumbing ---------------------------------------------------------------------------------
def service(request: Request) -> Service:
    svc: Service = request.app.state.service
    return svc


def batcher(request: Request) -> AutoBatcher | None:
    found: AutoBatcher | None = request.app.state.batcher
    return found


def checked(name: str) -> str:
    """The path's service queue name, or a 422 saying what a name may be (inline: a dependency costs more)."""
    try:
        return validate_name(name)
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from None


Name = Annotated[str, Path(description="service queue name: 1-100 of A-Z a-z 0-9 _ . -")]
BatchId = Annotated[str, Path(pattern=r"^[A-Za-z0-9_-]{1,64}$", description="a batch id, or 'latest'")]
# Past any list a Redis can hold, and with a page added still exact in a double and an int64 (Redis
# refused 2**63, which reached it as a 503).
MAX_OFFSET = 2**53 - 1
Offset = Annotated[int, Query(ge=0, le=MAX_OFFSET, description="items to skip")]


async def read_json(request: Request) -> Any:
    """The body as JSON, refused with 415/413/400 naming the problem."""
    limit = service(request).config.max_body_bytes
    check_body_headers(request.headers.get("content-type"), request.headers.get("content-length", ""), limit)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise HTTPException(413, f"body is over SERVICEQ_MAX_BODY_BYTES ({limit})")
    return parse_json(body)  # parsed where it lies: a bytes() of it was one more copy of the body


def check_body_headers(content_type: str | None, content_length: str, limit: int) -> None:
    """415 unless the body is JSON; 413 if it says it is over ``limit`` bytes (before reading a byte of it)."""
    media = (content_type or "").split(";")[0].strip().lower()
    if media != "application/json" and not media.endswith("+json"):
        sent = f"not {content_type!r}" if content_type else "none was sent"
        raise HTTPException(415, f"Content-Type must be application/json ({sent})")
    if content_length.isdigit() and int(content_length) > limit:
        raise HTTPException(413, f"body of {content_length} bytes is over SERVICEQ_MAX_BODY_BYTES ({limit})")


def parse_json(body: bytes | bytearray) -> Any:
    """400 for an empty body or one that is not JSON, naming why."""
    if not body or body.isspace():
        raise HTTPException(400, "body is empty: send a JSON value")
    try:
        return codec.loads(body)
    except (ValueError, RecursionError) as exc:
        raise HTTPException(400, f"body is not valid JSON: {exc}") from None


def body_doc(schema: dict[str, Any], example: Any, description: str) -> dict[str, Any]:
    content = {"application/json": {"schema": schema, "example": example}}
    return {"requestBody": {"required": True, "description": description, "content": content}}


def validated(model: type[BaseModel], value: Any) -> Any:
    try:
        return model.model_validate(value)
    except ValidationError as exc:
        raise HTTPException(422, describe_errors(exc.errors())) from None


def describe_errors(errors: Any) -> str:
    parts = []
    for err in errors:
        where = ".".join(str(x) for x in err.get("loc", ()) if x != "body")
        parts.append(f"{where}: {err['msg']}" if where else str(err["msg"]))
    return "; ".join(parts)


def with_queue(svc: Service, name: str, work: Any) -> Any:
    """Run ``work(sq)`` on an existing service queue; one deleted meanwhile by another process is a 404."""
    sq = svc.existing(name)
    try:
        return work(sq)
    except LookupError:
        if not svc.conn.exists(sq.keys.state):
            svc.forget(name)
            raise UnknownServiceQ(f"no service queue named {name!r} on {svc.where}") from None
        raise


# --- pushing -------------------------------------------------------------------------------------
TASK_DOC = body_doc({}, {"name": "Tuhin1", "gender": "male", "country": "india"}, "one task: any JSON value")
BATCH_DOC = body_doc(
    BatchRequest.model_json_schema(), {"tasks": [{"a": 1}, {"a": 2}]}, "the tasks, at most SERVICEQ_MAX_BATCH"
)
ADD_DOC = body_doc({}, [{"name": "Tuhin1"}, {"name": "Tuhin2"}], "a JSON array of tasks, or one task")


async def push_one(request: Request, name: str, task: Any) -> TaskCreated:
    pushed = await push_task(service(request), batcher(request), name, task)
    return TaskCreated(task_id=pushed.task_id, batch_id=pushed.batch_id)


async def push_task(svc: Service, auto: AutoBatcher | None, name: str, task: Any) -> Pushed:
    """One task into Redis: with the concurrent requests' tasks when auto-batching, else alone; then answered."""
    encoded = await svc.encode_one(name, task)
    if auto is not None:
        pushed: Pushed = await auto.submit(name, encoded)
        return pushed
    (pushed,) = await svc.run(svc.push_each, name, [encoded])
    return pushed


async def push_many(request: Request, name: str, tasks: list[Any]) -> Response:
    svc = service(request)
    limit = svc.config.max_batch
    if not tasks:
        raise HTTPException(422, "tasks is empty: send at least one task")
    if len(tasks) > limit:
        raise HTTPException(413, f"batch of {len(tasks)} tasks is over SERVICEQ_MAX_BATCH ({limit}): split it")
    task_ids, batch_ids = push.written(await svc.run(svc.push_batch, name, tasks))
    body = {
        "task_ids": task_ids,
        "batch_id": batch_ids[0],
        "batch_ids": batch_ids,
        "total_enqueued": len(task_ids),
        "message": f"Successfully enqueued {len(task_ids)} tasks in batch",
    }
    # BatchCreated, built here: not validated again on the way out, and encoded by orjson (1,000 ids)
    return Response(codec.dumps(body), status_code=201, media_type="application/json")


@router.post(
    "/serviceqs/{name}/tasks", status_code=201, response_model=TaskCreated, openapi_extra=TASK_DOC, tags=["tasks"]
)
async def create_task(name: Name, request: Request) -> JSONResponse:
    """One task; answered once it is in Redis (auto-batched with concurrent requests when BATCH_AUTO_ENABLED).

    Served by ``fastpath.ServiceApp`` ahead of FastAPI (same checks, same
    answers): this route is its OpenAPI entry, and serves under a root_path.
    """
    created = await push_one(request, checked(name), await read_json(request))
    return JSONResponse({"task_id": created.task_id, "batch_id": created.batch_id}, status_code=201)


@router.post(
    "/serviceqs/{name}/tasks/batch",
    status_code=201,
    response_model=BatchCreated,
    openapi_extra=BATCH_DOC,
    tags=["tasks"],
)
async def create_batch(name: Name, request: Request) -> Response:
    """Many tasks, one Redis round trip per 1,000."""
    name = checked(name)
    body = await read_json(request)
    if not (isinstance(body, dict) and len(body) == 1 and isinstance(body.get("tasks"), list)):
        validated(BatchRequest, body)  # raises a 422 naming what is wrong with the body
    return await push_many(request, name, body["tasks"])


@router.post("/add", status_code=201, response_model=BatchCreated | TaskCreated, openapi_extra=ADD_DOC, tags=["seed"])
async def seed_add(request: Request) -> Any:
    """The seed's example route, on the service queue SERVICEQ_DEFAULT: an array is a list of tasks."""
    body = await read_json(request)
    name = service(request).config.default_queue
    if isinstance(body, list):
        return await push_many(request, name, body)
    return await push_one(request, name, body)


@router.post("/set-worker", tags=["seed"])
async def seed_set_worker(request: Request) -> dict[str, Any]:
    """The seed's example route: worker settings of SERVICEQ_DEFAULT (created if SERVICEQ_AUTO_CREATE)."""
    update = validated(WorkerConfigUpdate, await read_json(request))
    svc = service(request)

    def apply() -> dict[str, Any]:
        sq = svc.for_push(svc.config.default_queue)
        sq.set_worker_config(**update.model_dump(exclude_none=True))
        return sq.describe()

    settings: dict[str, Any] = await svc.run(apply)
    return settings


# --- reading --------------------------------------------------------------------------------------
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
    found = await svc.run(ServiceQ.statuses, svc.conn)
    return ServiceQList(serviceqs=[ServiceQSummary(name=n, status=s) for n, s in found.items()])


@router.get("/serviceqs/{name}", tags=["read"])
async def get_serviceq(name: Name, request: Request) -> ServiceQDetail:
    name = checked(name)
    svc = service(request)

    def read(sq: ServiceQ) -> ServiceQDetail:
        info = StatusInfo.model_validate(sq.get_status_info())
        return ServiceQDetail(name=name, settings=sq.describe(), status_info=info)

    detail: ServiceQDetail = await svc.run(with_queue, svc, name, read)
    return detail


@router.get("/serviceqs/{name}/batches", tags=["read"])
async def list_batches(
    name: Name,
    request: Request,
    offset: Offset = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
) -> BatchList:
    """Batch history, newest first (reports are kept for the service queue's report_ttl)."""
    name = checked(name)
    svc = service(request)
    found = await svc.run(with_queue, svc, name, lambda sq: sq.batches(offset, limit))
    return BatchList(batches=[BatchReport.model_validate(b) for b in found])


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
    waiting = sq.get_status_info().get("waiting_retries", 0) if active else 0
    done = summary["total_success"] + summary["total_failed"]
    duration = summary["batch_duration"] or 0.0
    rate = done / duration if duration > 0 and done else None
    pending = summary["total_pending"]
    eta = 0.0 if pending == 0 else (round(pending / rate, 3) if rate else None)
    return BatchProgress.model_validate(
        summary | {"waiting_retries": waiting, "rate_per_second": rate and round(rate, 3), "eta_seconds": eta}
    )


# --- control --------------------------------------------------------------------------------------
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
    update = validated(model, await read_json(request)).model_dump(exclude_none=True)
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
        live = launcher.live_workers(sq.connection, sq.name)
        message = (
            f"{live} worker(s) listening on {sq.keys.queue_name}"
            if live
            else f"no worker is listening on {sq.keys.queue_name}: run `rq-serviceq worker {sq.name}` "
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
