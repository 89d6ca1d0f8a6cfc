"""``POST /serviceqs/{name}/tasks`` answered in plain ASGI, ahead of FastAPI's machinery.

Profiled under wrk (py-spy, 64 clients, auto-batching on), a single-task push
spent some 85% of the server's CPU in FastAPI and Starlette: their middleware,
route matching over every route, dependency solving, ``Request`` and
``JSONResponse`` objects; the push itself, batched, costs a few microseconds a
task.  And that CPU is latency: the answers to a flush of 64 requests go out
one after another on the event loop.

``serve`` takes this one route ahead of FastAPI (``app.ServiceApp`` asks it
first), and leaves every other request to FastAPI.  It runs the
route's own steps with the helpers both share, below both (the token check,
``codec``'s name and body checks and parsing, ``Service.push_one``,
``errors.problem``), so it answers exactly what the route
(``routes/push.py``) would; ``tests/surfaces/test_http_fastpath.py`` sends both the
same requests and compares answers and stored tasks.  The FastAPI route stays
for the OpenAPI schema and for a request this path leaves alone (an app
mounted under a ``root_path``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from fastapi import FastAPI
from starlette.datastructures import State

from rq_serviceq.http import codec
from rq_serviceq.http.auth import Receive, Scope, Send, TokenCheck, refuse_api
from rq_serviceq.http.errors import problem

logger = logging.getLogger("rq_serviceq.http")

PREFIX, SUFFIX = "/serviceqs/", "/tasks"
_WANTED = (b"content-type", b"content-length", b"authorization")


async def serve(app: FastAPI, scope: Scope, receive: Receive, send: Send) -> bool:
    """Answer the request here if it is the single-task push (True); anything else is left to FastAPI (False)."""
    if scope["type"] != "http" or scope["method"] != "POST" or scope.get("root_path"):
        return False
    name = task_route_name(scope["path"])
    if name is None:
        return False
    await create_task(app.state, name, scope, receive, send)
    return True


async def create_task(state: State, name: str, scope: Scope, receive: Receive, send: Send) -> None:
    headers = _headers(scope)
    check: TokenCheck = state.token_check
    if check.required and not check.allows(headers.get(b"authorization", b"").decode("latin-1") or None):
        await refuse_api(send)
        return
    try:
        status, body, extra = 201, await _push(state, name, headers, receive), None
    except _ClientGone:
        return
    except Exception as exc:
        status, payload, extra = problem(exc, state.service.where)
        if status == 500:
            logger.exception("unexpected error on POST %s", scope["path"])
        body = codec.dumps(payload)
    await _respond(send, status, body, extra)


async def _push(state: State, name: str, headers: Mapping[bytes, bytes], receive: Receive) -> bytes:
    """What the route does (``routes.push.create_task``), in its order: name, headers, body, push."""
    name = codec.checked_name(name)
    svc = state.service
    limit = svc.config.max_body_bytes
    content_type = headers.get(b"content-type")
    length = headers.get(b"content-length", b"").decode("latin-1")
    codec.check_body_headers(content_type.decode("latin-1") if content_type is not None else None, length, limit)
    task = codec.parse_json(await _read_body(receive, limit))
    pushed = await svc.push_one(name, task, state.batcher)
    return codec.dumps({"task_id": pushed.task_id, "batch_id": pushed.batch_id})


def task_route_name(path: str) -> str | None:
    """The ``{name}`` of ``/serviceqs/{name}/tasks`` (one path segment, as Starlette matches it), else None."""
    if path.startswith(PREFIX) and path.endswith(SUFFIX):
        name = path[len(PREFIX) : -len(SUFFIX)]
        if name and "/" not in name:
            return name
    return None


def _headers(scope: Scope) -> dict[bytes, bytes]:
    """The headers this route reads (ASGI names are lower case); the first of repeated ones, as Starlette's."""
    found: dict[bytes, bytes] = {}
    for key, value in scope["headers"]:
        if key in _WANTED and key not in found:
            found[key] = value
    return found


class _ClientGone(Exception):
    """The client disconnected before its body arrived: nothing to answer."""


async def _read_body(receive: Receive, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _ClientGone
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise codec.too_big(limit)
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def _respond(send: Send, status: int, body: bytes, extra: Mapping[str, str] | None) -> None:
    headers = [(b"content-length", b"%d" % len(body)), (b"content-type", b"application/json")]
    headers += [(key.lower().encode("latin-1"), value.encode("latin-1")) for key, value in (extra or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
