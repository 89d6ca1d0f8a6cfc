"""The progress feed over HTTP (tag ``events``): server-sent events, and a JSON page of it for pollers.

``GET /serviceqs/{name}/events`` follows the service queue's feed
(``ServiceQ.events``, blocking XREADs) and writes each event as
an SSE entry whose ``id`` is the stream id, so a browser's EventSource
resumes where it left off (``Last-Event-ID``) after a reconnect.

A blocking XREAD holds a thread and a Redis connection while it waits, so the
streams get their own: a pool of ``SERVICEQ_MAX_STREAMS`` threads and, per
Redis server, as many connections (a ServiceQ handle on them reads the feed).
Requests never wait behind a stream, and a client opening more streams than
that is told 503 rather than left to pile up threads.  Each XREAD blocks at
most ``BLOCK_SECONDS``, so a stream whose client went away gives its thread
back within that.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Annotated, Any

import redis
from fastapi import APIRouter, Header, HTTPException, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel
from redis import Redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from rq_serviceq.http.config import HttpConfig
from rq_serviceq.http.routes.common import ERRORS, Name, checked, service, with_queue
from rq_serviceq.http.schemas import ErrorBody
from rq_serviceq.models import BatchEvent
from rq_serviceq.serviceq import ServiceQ
from rq_serviceq.store.connection import connection_pool, routes
from rq_serviceq.store.outage import Outage

BLOCK_SECONDS = 1.0  # one XREAD's wait: how soon a stream notices its client has gone
HEARTBEAT_SECONDS = 15.0  # a comment line this often, so proxies keep an idle stream open
RETRY_MS = 3000  # the reconnect delay an EventSource is told
MAX_ID_PART = 2**64 - 1

router = APIRouter(responses=ERRORS)
STREAM_DOC: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/event-stream": {}}, "description": "server-sent events: id, event (type), data (JSON)"},
    503: {"model": ErrorBody, "description": "SERVICEQ_MAX_STREAMS streams are open, or Redis cannot be reached"},
}
BatchFilter = Annotated[
    str | None, Query(pattern=r"^[A-Za-z0-9_-]{1,64}$", description="only this batch's events", alias="batch")
]


class EventPage(BaseModel):
    """Events after ``since``; pass ``last_id`` as the next ``since`` (it moves on past filtered-out events too)."""

    events: list[BatchEvent]
    last_id: str


class EventStreams:
    """The threads and Redis connections that the open streams' blocking XREADs use, and how many are open."""

    def __init__(self, config: HttpConfig, outage: Outage) -> None:
        self.bound = config.max_streams
        self.open = 0
        self.ending = False  # the server is stopping: every stream ends after its current read
        self.outage = outage
        self._default = config.redis_url
        self._routes = routes()
        self._conns: dict[str, Redis] = {}
        self._lock = threading.Lock()
        self.executor = ThreadPoolExecutor(max_workers=self.bound, thread_name_prefix="serviceq-events")

    def acquire(self) -> Callable[[], None]:
        """Take a stream's slot, or 503 when all are taken; returns the (idempotent) release."""
        if self.ending:
            raise HTTPException(503, "the server is stopping: reconnect", headers={"Retry-After": "1"})
        if self.open >= self.bound:
            raise HTTPException(
                503,
                f"{self.bound} event streams are open on this server (SERVICEQ_MAX_STREAMS): close one, "
                "poll /events/recent instead, or raise the bound",
                headers={"Retry-After": "5"},
            )
        self.open += 1
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                self.open -= 1

        return release

    def conn_for(self, name: str) -> Redis:
        """A connection of the streams' own pool to the Redis ``name`` lives on (its route, else the default)."""
        url = self._routes.get(name, self._default)
        with self._lock:
            conn = self._conns.get(url)
            if conn is None:
                pool = connection_pool(url, blocking=True, max_connections=self.bound, timeout=10,
                                       socket_connect_timeout=5, socket_timeout=BLOCK_SECONDS + 30,
                                       retry=Retry(NoBackoff(), 0))  # fmt: skip
                conn = self._conns[url] = Redis(connection_pool=pool)
            return conn

    def handle(self, name: str) -> ServiceQ:
        """The service queue on the streams' own connections (a blocking call: it checks the queue exists)."""
        return ServiceQ.open(name, connection=self.conn_for(name), role="producer")

    async def read(self, sq: ServiceQ, since: str) -> list[BatchEvent]:
        """The next events after ``since``, waiting up to BLOCK_SECONDS, on the streams' threads."""
        call = partial(self._noted, partial(sq.events, since=since, block=BLOCK_SECONDS))
        return await asyncio.get_running_loop().run_in_executor(self.executor, call)

    def _noted(self, call: Callable[[], list[BatchEvent]]) -> list[BatchEvent]:
        with self.outage.noting("an event stream"):
            return call()

    def close(self) -> None:
        self.executor.shutdown(wait=True, cancel_futures=True)
        for conn in self._conns.values():
            conn.close()
            conn.connection_pool.disconnect()


def streams(request: Request) -> EventStreams:
    """The app's streams, made on first use (a server nobody follows holds no threads for them)."""
    state = request.app.state
    found: EventStreams | None = getattr(state, "event_streams", None)
    if found is None:
        svc = service(request)
        found = state.event_streams = EventStreams(svc.config, svc.outage)
    return found


def end_streams(state: Any) -> None:
    """A stop signal came: end the open streams (within BLOCK_SECONDS), so the server's shutdown, which
    waits for open responses, does not wait for ever; their clients reconnect to the next server."""
    found: EventStreams | None = getattr(state, "event_streams", None)
    if found is not None:
        found.ending = True


def close_streams(state: Any) -> None:
    """At shutdown: the streams' threads and connections, if any stream was ever opened."""
    found: EventStreams | None = getattr(state, "event_streams", None)
    if found is not None:
        found.close()


def checked_id(value: str, where: str) -> str:
    """A stream id as Redis takes it (``ms`` or ``ms-seq``, each below 2**64), else 422 naming ``where``."""
    parts = value.strip().split("-")
    if len(parts) in (1, 2) and all(p.isdigit() and p.isascii() and int(p) <= MAX_ID_PART for p in parts):
        return value.strip()
    raise HTTPException(422, f"{where}: {value!r} is not an event id (like 1700000000000-0, or 0 for the oldest kept)")


class _EventStream(StreamingResponse):
    """A streaming response that gives its slot back however it ends: finished, failed, or client gone
    before the first event (when the generator never ran and its own ``finally`` would not)."""

    def __init__(self, content: AsyncIterator[str], release: Callable[[], None]) -> None:
        headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        super().__init__(content, media_type="text/event-stream", headers=headers)
        self._release = release

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._release()


def sse(event: BatchEvent) -> str:
    """One SSE entry.  The type comes from Redis, where anyone who can write may XADD: a type that is not one
    plain word goes out as ``message`` (a newline in it would start a forged field); data is JSON, one line."""
    kind = event.type if event.type.isascii() and event.type.replace("_", "").isalnum() else "message"
    return f"id: {event.id}\nevent: {kind}\ndata: {event.model_dump_json()}\n\n"


async def follow(pool: EventStreams, sq: ServiceQ, cursor: str, batch: str | None) -> AsyncIterator[str]:
    """The SSE text of every event after ``cursor`` (of ``batch`` only, if given), with a heartbeat while quiet."""
    yield f"retry: {RETRY_MS}\n: following the progress feed after {cursor}\n\n"
    quiet_since = time.monotonic()
    while not pool.ending:
        try:
            found = await pool.read(sq, cursor)
        except redis.exceptions.RedisError:  # noted and logged by the outage; the client reconnects from its id
            yield ": Redis cannot be reached; reconnect\n\n"
            return
        if found:
            cursor = found[-1].id
        chunk = "".join(sse(e) for e in found if batch in (None, e.batch_id))
        now = time.monotonic()
        if chunk:
            yield chunk
            quiet_since = now
        elif now - quiet_since >= HEARTBEAT_SECONDS:
            yield ": heartbeat\n\n"
            quiet_since = now


@router.get("/serviceqs/{name}/events", tags=["events"], response_class=StreamingResponse, responses=STREAM_DOC)
async def stream_events(
    name: Name,
    request: Request,
    since: Annotated[str | None, Query(description="resume after this event id; 0: the oldest kept")] = None,
    batch_id: BatchFilter = None,
    last_event_id: Annotated[str | None, Header(description="EventSource's resume point; wins over since")] = None,
) -> StreamingResponse:
    """The progress feed as server-sent events (``text/event-stream``), from now on unless told where to resume.

    Each entry is ``id: <event id>``, ``event: <type>``, ``data: <BatchEvent JSON>``;
    a ``: heartbeat`` comment comes every 15 s while nothing happens.
    """
    name = checked(name)
    svc = service(request)
    start = None
    if last_event_id:
        start = checked_id(last_event_id, "Last-Event-ID")
    elif since is not None:
        start = checked_id(since, "since")
    pool = streams(request)
    sq: ServiceQ = await svc.run(with_queue, svc, name, lambda known: pool.handle(known.name))
    if start is None:
        start = await svc.run(sq.newest_event_id)
    release = pool.acquire()
    return _EventStream(follow(pool, sq, start, batch_id), release)


@router.get("/serviceqs/{name}/events/recent", tags=["events"])
async def recent_events(
    name: Name,
    request: Request,
    since: Annotated[str, Query(description="events after this id; 0: the oldest kept")] = "0",
    batch_id: BatchFilter = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> EventPage:
    """The feed as JSON, oldest first, at most ``limit`` events: what a poller (or a page drawing history) reads."""
    name = checked(name)
    cursor = checked_id(since, "since")
    svc = service(request)

    def read(sq: ServiceQ) -> EventPage:
        return page(sq, cursor, batch_id, limit)

    found: EventPage = await svc.run(with_queue, svc, name, read)
    return found


def page(sq: ServiceQ, cursor: str, batch: str | None, limit: int) -> EventPage:
    """Up to ``limit`` matching events after ``cursor``; reads on past other batches' events (the feed holds
    about 10,000, so a filtered read ends)."""
    kept: list[BatchEvent] = []
    while len(kept) < limit:
        found = sq.events(since=cursor, count=limit)
        if not found:
            break
        for event in found:
            cursor = event.id
            if batch in (None, event.batch_id):
                kept.append(event)
                if len(kept) == limit:
                    break
    return EventPage(events=kept, last_id=cursor)
