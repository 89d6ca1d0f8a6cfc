"""What the service answers to each error, in one place: FastAPI's exception handlers and the fast path both ask here.

Errors are JSON that name the problem; a Redis that cannot be reached or
refuses a write is a 503 naming that Redis (password hidden), and nothing a
client sees carries a stack trace.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import redis
from fastapi import HTTPException

from rq_serviceq.http.service import PartialBatch, TaskRejected, TooManyServiceQs
from rq_serviceq.serviceq import NotReplicated, RedisFull, RedisUnavailable, written

INTERNAL = "internal error; the server log has the details"


def problem(exc: Exception, where: str) -> tuple[int, dict[str, Any], Mapping[str, str] | None]:
    """Status, JSON body and extra headers of the answer to ``exc`` (500 for anything unforeseen)."""
    if isinstance(exc, HTTPException):
        return exc.status_code, {"detail": exc.detail}, exc.headers
    if isinstance(exc, TaskRejected):
        return exc.status, {"detail": str(exc)}, None
    if isinstance(exc, PartialBatch):
        ids = written(exc.written)[0]
        what = f"the first {len(ids)} tasks were written (whole chunks of 1,000), the rest not"
        return (
            503,
            {"detail": f"{redis_problem(exc.cause, where)}; {what}", "task_ids": ids, "total_enqueued": len(ids)},
            None,
        )
    if isinstance(exc, NotReplicated):  # written on the primary, not confirmed by enough replicas
        body = {"detail": str(exc), "task_ids": exc.task_ids, "total_enqueued": len(exc.task_ids)}
        return 503, body, None
    if isinstance(exc, TooManyServiceQs):
        return 409, {"detail": str(exc)}, None
    if isinstance(exc, LookupError):
        return 404, {"detail": str(exc).strip("'\"")}, None
    if isinstance(exc, redis.exceptions.RedisError):
        return 503, {"detail": redis_problem(exc, where)}, {"Retry-After": "1"}
    return 500, {"detail": INTERNAL}, None


def redis_problem(exc: BaseException, where: str) -> str:
    if isinstance(exc, RedisUnavailable | RedisFull):
        return str(exc)  # the facade's: already names the Redis, password hidden
    if isinstance(exc, redis.exceptions.ConnectionError | redis.exceptions.TimeoutError):
        return f"cannot reach Redis at {where}: {exc}"
    return f"Redis at {where} refused the request: {exc}"
