"""What the routes share: their documented errors, path parameters, bodies, and work on an existing queue.

Bodies are read here rather than by FastAPI's own parsing so that each bad
input gets its own status and a message that names it (not JSON: 400, wrong
content type: 415, too big: 413), before anything reaches Redis.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import HTTPException, Path, Query, Request
from pydantic import BaseModel, ValidationError

from rq_serviceq.http import codec
from rq_serviceq.http.batcher import AutoBatcher
from rq_serviceq.http.schemas import ErrorBody
from rq_serviceq.http.service import Service, UnknownServiceQ
from rq_serviceq.serviceq import ServiceQ

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

checked = codec.checked_name

Name = Annotated[str, Path(description="service queue name: 1-100 of A-Z a-z 0-9 _ . -")]
BatchId = Annotated[str, Path(pattern=r"^[A-Za-z0-9_-]{1,64}$", description="a batch id, or 'latest'")]
# Past any list a Redis can hold, and with a page added still exact in a double and an int64 (Redis
# refused 2**63, which reached it as a 503).
MAX_OFFSET = 2**53 - 1
Offset = Annotated[int, Query(ge=0, le=MAX_OFFSET, description="items to skip")]


def service(request: Request) -> Service:
    svc: Service = request.app.state.service
    return svc


def batcher(request: Request) -> AutoBatcher | None:
    found: AutoBatcher | None = request.app.state.batcher
    return found


async def read_json(request: Request, any_type: bool = False) -> Any:
    """The body as JSON, refused with 415/413/400 naming the problem (``codec``'s checks).

    ``any_type``: read it as JSON whatever its Content-Type (the seed's routes: its curls send
    none, and ``curl -d`` says form-urlencoded); a body that is not JSON is still a 400.
    """
    limit = service(request).config.max_body_bytes
    length = request.headers.get("content-length", "")
    if any_type:
        codec.check_length(length, limit)
    else:
        codec.check_body_headers(request.headers.get("content-type"), length, limit)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise codec.too_big(limit)
    return codec.parse_json(body)  # parsed where it lies: a bytes() of it was one more copy of the body


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
    sq: ServiceQ = svc.existing(name)
    try:
        return work(sq)
    except LookupError:
        if not sq.exists():
            svc.forget(name)
            raise UnknownServiceQ(f"no service queue named {name!r} on {svc.where}") from None
        raise
