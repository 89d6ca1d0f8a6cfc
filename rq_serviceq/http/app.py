"""``create_app()``: the ASGI app (``uvicorn --factory rq_serviceq.http:create_app``).

One app serves the API, the batch pages and rq-dashboard, so one port, one
token and one process to run.  Errors are JSON that name the problem; a
Redis that cannot be reached or refuses a write is a 503 naming that Redis
(password hidden), and nothing a client sees carries a stack trace.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from types import FrameType
from typing import Any

import redis
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError

from rq_serviceq import __version__
from rq_serviceq.http import ui
from rq_serviceq.http._fast import fastpath
from rq_serviceq.http.auth import (
    Receive,
    Scope,
    Send,
    TokenCheck,
    TokenMiddleware,
    add_bearer_to_openapi,
    cross_site,
    refuse_cross_site,
)
from rq_serviceq.http.batcher import AutoBatcher
from rq_serviceq.http.config import HttpConfig
from rq_serviceq.http.docs import serve_docs
from rq_serviceq.http.errors import problem
from rq_serviceq.http.routes import control, events, push, read, tasks, workers
from rq_serviceq.http.routes.common import describe_errors
from rq_serviceq.http.service import PartialBatch, Service, TaskRejected, TooManyServiceQs

logger = logging.getLogger("rq_serviceq.http")

DESCRIPTION = """Service queues over HTTP: push tasks (auto-batched), read batch reports, control workers.
See docs/http.md in the project. When SERVICEQ_API_TOKEN is set, send `Authorization: Bearer <token>`."""


class ServiceApp(FastAPI):
    """The service's app: FastAPI, with the single-task push answered by the fast path before FastAPI's routing.

    Browsers' cross-site state-changing requests are refused here, ahead of
    both, so the check covers every route (the mounted dashboard's too).
    """

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and (why := cross_site(scope)) is not None:
            await refuse_cross_site(send, why)
            return
        if not await fastpath.serve(self, scope, receive, send):
            await super().__call__(scope, receive, send)


def create_app(config: HttpConfig | None = None) -> FastAPI:
    """The service, configured from ``config`` or the environment (see ``HttpConfig.from_env``)."""
    config = config or HttpConfig.from_env()
    _ensure_logging()
    app = ServiceApp(
        title="rq-serviceq",
        version=__version__,
        description=DESCRIPTION,
        lifespan=_lifespan,
        docs_url=None,  # served from the package instead of a CDN (serve_docs)
        redoc_url=None,  # ReDoc's bundle loads a logo from a CDN: not served
    )
    app.state.config = config
    app.state.service = Service(config)
    app.state.batcher = None
    check = app.state.token_check = TokenCheck(config.api_token)
    for router in (
        read.open_router,
        push.router,
        read.router,
        tasks.router,
        workers.router,
        events.router,
        control.router,
    ):  # the order of /docs
        app.include_router(router)
    app.include_router(ui.router)
    serve_docs(app)
    _mount_dashboard(app, config)
    _mount_metrics(app, app.state.service)
    _add_error_handlers(app)
    if check.required:
        app.add_middleware(TokenMiddleware, check=check)  # type: ignore[arg-type,unused-ignore]
    _document_token(app)
    return app


def _document_token(app: FastAPI) -> None:
    plain = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = add_bearer_to_openapi(plain())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    config: HttpConfig = app.state.config
    service: Service = app.state.service
    logger.info(
        "Batch config: max_size=%d, max_delay=%gms, auto_batch=%s",
        config.batch_max_size,
        config.batch_max_delay_ms,
        str(config.batch_auto_enabled).lower(),
    )
    if config.batch_auto_enabled:
        app.state.batcher = AutoBatcher(_flusher(service), config.batch_max_size, config.batch_max_delay_ms)
        logger.info("Started batch flusher background task")
    restore = _on_stop_signal(lambda: _stopping(app))
    await _check_redis(service)
    probe = asyncio.create_task(_probe_redis(service))
    try:
        yield
    finally:
        probe.cancel()
        restore()
        if app.state.batcher is not None:
            await app.state.batcher.close()  # answers every request still waiting for a flush
        events.close_streams(app.state)
        service.close()
        logger.info("rq-serviceq HTTP service stopped")


def _stopping(app: FastAPI) -> None:
    """What a stop signal sets going ahead of the server's shutdown (``_on_stop_signal``)."""
    if app.state.batcher is not None:
        app.state.batcher.flush_now()
    events.end_streams(app.state)


def _on_stop_signal(stopping: Callable[[], None]) -> Callable[[], None]:
    """On SIGTERM/SIGINT call ``stopping`` (flush at once, end the event streams), then let the server's own
    handler shut it down.

    The server waits for in-flight requests before the lifespan ends: requests
    waiting for their flush (without this, shutdown would first sit out
    BATCH_MAX_DELAY_MS) and event streams, which would otherwise never end.
    Chained onto whatever handler the server (uvicorn, gunicorn's worker)
    installed; skipped off the main thread (in-process tests).
    """
    loop = asyncio.get_running_loop()
    previous: dict[int, Any] = {}

    def handler(signum: int, frame: FrameType | None) -> None:
        loop.call_soon_threadsafe(stopping)
        chained = previous.get(signum)
        if callable(chained):
            chained(signum, frame)

    if threading.current_thread() is not threading.main_thread():
        return _nothing
    for sig in (signal.SIGTERM, signal.SIGINT):
        previous[sig] = signal.getsignal(sig)
        signal.signal(sig, handler)

    def restore() -> None:
        for sig, old in previous.items():
            if signal.getsignal(sig) is handler:
                signal.signal(sig, old)

    return restore


def _nothing() -> None:
    return None


def _flusher(service: Service) -> Any:
    async def flush(name: str, tasks: list[Any]) -> list[Any]:
        results: list[Any] = await service.run(service.push_each, name, tasks)
        return results

    return flush


async def _check_redis(service: Service) -> None:
    try:
        await service.run(service.conn.ping)
        logger.info("Redis at %s reachable", service.where)
    except redis.exceptions.RedisError as exc:  # serve anyway: requests get 503 until Redis is back
        logger.warning("Redis at %s not reachable yet (%s); requests get 503 until it is", service.where, exc)


async def _probe_redis(service: Service, every: float = 2.0) -> None:
    """PING Redis now and then, so that the log says when it goes away and when it is back (``outage.py``)
    even while no request comes."""
    while True:
        await asyncio.sleep(every)
        with contextlib.suppress(redis.exceptions.RedisError):
            await service.run(service.conn.ping)


def _mount_dashboard(app: FastAPI, config: HttpConfig) -> None:
    try:
        from a2wsgi import WSGIMiddleware

        from rq_serviceq.http.dashboard import dashboard_app
    except ImportError as exc:  # the page is optional; the API is not
        logger.warning("rq-dashboard not mounted at /rq (%s): pip install 'rq-serviceq[http]'", exc)
        return
    wsgi = WSGIMiddleware(dashboard_app(config.redis_url), workers=4)
    app.mount("/rq", wsgi)  # type: ignore[arg-type]


def _mount_metrics(app: FastAPI, service: Service) -> None:
    """``/metrics`` (behind the token like every route): the exporter of ``rq_serviceq.metrics`` on this Redis,
    written straight to Prometheus' text format (prometheus-client is not needed for it)."""
    from rq_serviceq.metrics import CONTENT_TYPE_LATEST, ServiceQCollector

    collector = ServiceQCollector(service.conn, outage=service.outage)

    @app.get("/metrics", include_in_schema=False)
    async def scrape() -> Response:
        body = await service.run(collector.exposition)
        return Response(body, media_type=CONTENT_TYPE_LATEST)


def _add_error_handlers(app: FastAPI) -> None:
    where = app.state.service.where

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": describe_errors(exc.errors())}, status_code=422)

    @app.exception_handler(ValidationError)
    async def invalid_setting(request: Request, exc: ValidationError) -> JSONResponse:
        return JSONResponse({"detail": describe_errors(exc.errors())}, status_code=422)

    async def answer(request: Request, exc: Exception) -> JSONResponse:
        status, body, headers = problem(exc, where)
        if status == 500:
            logger.exception("unexpected error on %s %s", request.method, request.url.path, exc_info=exc)
        return JSONResponse(body, status_code=status, headers=headers)

    for kind in (TaskRejected, TooManyServiceQs, LookupError, PartialBatch, redis.exceptions.RedisError, Exception):
        app.add_exception_handler(kind, answer)


def _ensure_logging() -> None:
    """The seed's batching lines are part of the service's contract: show them even without a logging setup."""
    ours = logging.getLogger("rq_serviceq.http")
    if ours.level == logging.NOTSET:
        ours.setLevel(logging.INFO)
    if not logging.getLogger().handlers and not ours.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        ours.addHandler(handler)
