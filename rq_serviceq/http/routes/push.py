"""Tasks in (tags ``tasks`` and ``seed``): one task, a batch of them, and the seed's two example routes.

The single-task push is served by ``_fast.fastpath.serve`` ahead of
FastAPI, with the same checks (``codec``) and the same push
(``Service.push_one``); the route here is its OpenAPI entry and serves it
under a root_path.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import JSONResponse, Response

from rq_serviceq.http import codec
from rq_serviceq.http.routes.common import ERRORS, Name, batcher, body_doc, checked, read_json, service, validated
from rq_serviceq.http.schemas import BatchCreated, BatchRequest, TaskCreated, WorkerConfigUpdate
from rq_serviceq.serviceq import written

router = APIRouter(responses=ERRORS)

TASK_DOC = body_doc({}, {"name": "Tuhin1", "gender": "male", "country": "india"}, "one task: any JSON value")
BATCH_DOC = body_doc(
    BatchRequest.model_json_schema(), {"tasks": [{"a": 1}, {"a": 2}]}, "the tasks, at most SERVICEQ_MAX_BATCH"
)
ADD_DOC = body_doc({}, [{"name": "Tuhin1"}, {"name": "Tuhin2"}], "a JSON array of tasks, or one task")


async def push_one(request: Request, name: str, task: Any) -> TaskCreated:
    pushed = await service(request).push_one(name, task, batcher(request))
    return TaskCreated(task_id=pushed.task_id, batch_id=pushed.batch_id)


async def push_many(request: Request, name: str, tasks: list[Any]) -> Response:
    svc = service(request)
    limit = svc.config.max_batch
    if not tasks:
        raise HTTPException(422, "tasks is empty: send at least one task")
    if len(tasks) > limit:
        raise HTTPException(413, f"batch of {len(tasks)} tasks is over SERVICEQ_MAX_BATCH ({limit}): split it")
    task_ids, batch_ids = written(await svc.run(svc.push_batch, name, tasks))
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
