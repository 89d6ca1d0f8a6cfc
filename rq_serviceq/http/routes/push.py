"""Tasks in (tags ``tasks`` and ``seed``): one task, a batch of them, and the seeds' example routes
(``/add``, ``/set-worker``; ``/jobs/batch``, ``/jobs/add`` and its siblings, which read any Content-Type).

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
from rq_serviceq.http.schemas import (
    BatchCreated,
    BatchRequest,
    SeedBatchCreated,
    SeedJobCreated,
    TaskCreated,
    WorkerConfigUpdate,
)
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


async def push_many(request: Request, name: str, tasks: list[Any], key: str = "tasks", seed: bool = False) -> Response:
    """``key``: the body's name for the list; ``seed``: answer as the seed's ``/jobs/batch`` (jobs, job_ids)."""
    svc = service(request)
    limit = svc.config.max_batch
    if not tasks:
        raise HTTPException(422, f"{key} is empty: send at least one task")
    if len(tasks) > limit:
        raise HTTPException(413, f"batch of {len(tasks)} tasks is over SERVICEQ_MAX_BATCH ({limit}): split it")
    task_ids, batch_ids = written(await svc.run(svc.push_batch, name, tasks))
    body = {
        "task_ids": task_ids,
        "batch_id": batch_ids[0],
        "batch_ids": batch_ids,
        "total_enqueued": len(task_ids),
        "message": f"Successfully enqueued {len(task_ids)} {'jobs' if seed else 'tasks'} in batch",
    }
    if seed:
        body["job_ids"] = task_ids
    # BatchCreated, built here: not validated again on the way out, and encoded by orjson (1,000 ids)
    return Response(codec.dumps(body), status_code=201, media_type="application/json")


def batch_items(body: Any) -> tuple[list[Any], str]:
    """The tasks of a batch body, ``{"tasks": [...]}`` or the seed's ``{"jobs": [...]}``, and which it was;
    anything else a 422 naming what is wrong (checked in full only then: a 1,000-task body is not walked)."""
    if isinstance(body, dict) and len(body) == 1:
        for word in ("tasks", "jobs"):
            if isinstance(body.get(word), list):
                return body[word], word
    request: BatchRequest = validated(BatchRequest, body)  # raises a 422 naming what is wrong with the body
    return request.items(), "tasks" if request.tasks is not None else "jobs"


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
    tasks, key = batch_items(await read_json(request))
    return await push_many(request, name, tasks, key)


@router.post("/add", status_code=201, response_model=BatchCreated | TaskCreated, openapi_extra=ADD_DOC, tags=["seed"])
async def seed_add(request: Request) -> Any:
    """The seed's example route, on the service queue SERVICEQ_DEFAULT: an array is a list of tasks."""
    body = await read_json(request, any_type=True)
    name = service(request).config.default_queue
    if isinstance(body, list):
        return await push_many(request, name, body)
    return await push_one(request, name, body)


@router.post("/set-worker", tags=["seed"])
async def seed_set_worker(request: Request) -> dict[str, Any]:
    """The seed's example route: worker settings of SERVICEQ_DEFAULT (created if SERVICEQ_AUTO_CREATE)."""
    update = validated(WorkerConfigUpdate, await read_json(request, any_type=True))
    svc = service(request)

    def apply() -> dict[str, Any]:
        sq = svc.for_push(svc.config.default_queue)
        sq.set_worker_config(**update.model_dump(exclude_none=True))
        return sq.describe()

    settings: dict[str, Any] = await svc.run(apply)
    return settings


# --- the batching seed's routes (docs/http.md): /jobs/batch and /jobs/{add,subtract,multiply,divide} ----------
JOB_TYPES = {"add": "Add", "subtract": "Subtract", "multiply": "Multiply", "divide": "Divide"}
JOBS_DOC = body_doc(
    BatchRequest.model_json_schema(),
    {"jobs": [{"type": "Add", "args": {"a": 1, "b": 2}}, {"type": "Multiply", "args": {"a": 3, "b": 4}}]},
    "the seed's jobs (or tasks), any JSON values; read as JSON whatever the Content-Type",
)
JOB_DOC = body_doc({"type": "object"}, {"a": 1, "b": 2}, "the job's args, a JSON object; any Content-Type")


@router.post("/jobs/batch", status_code=201, response_model=SeedBatchCreated, openapi_extra=JOBS_DOC, tags=["seed"])
async def seed_jobs_batch(request: Request) -> Response:
    """The batching seed's batch endpoint, on SERVICEQ_DEFAULT: ``{"jobs": [...]}`` (or ``{"tasks": [...]}``)."""
    tasks, key = batch_items(await read_json(request, any_type=True))
    return await push_many(request, service(request).config.default_queue, tasks, key, seed=True)


async def _seed_job(request: Request, job_type: str) -> JSONResponse:
    """One job ``{"type": job_type, "args": body}``, the shape of a ``/jobs/batch`` job (auto-batched)."""
    args = await read_json(request, any_type=True)
    if not isinstance(args, dict):
        raise HTTPException(422, 'the body must be a JSON object of the job\'s args, like {"a": 1, "b": 2}')
    created = await push_one(request, service(request).config.default_queue, {"type": job_type, "args": args})
    body = {"job_id": created.task_id, "task_id": created.task_id, "batch_id": created.batch_id}
    return JSONResponse(body, status_code=201)


def _seed_job_route(path: str, job_type: str) -> None:
    async def route(request: Request) -> JSONResponse:
        return await _seed_job(request, job_type)

    route.__name__ = f"seed_job_{path}"
    route.__doc__ = f'The batching seed\'s single-job endpoint: one task {{"type": "{job_type}", "args": body}}.'
    router.post(f"/jobs/{path}", status_code=201, response_model=SeedJobCreated, openapi_extra=JOB_DOC, tags=["seed"])(
        route
    )


for _path, _type in JOB_TYPES.items():
    _seed_job_route(_path, _type)
