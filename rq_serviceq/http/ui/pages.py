"""The pages' routes: ``/ui/`` (the service queues), a queue's page, a batch's page, and the JSON they read.

Server-rendered shells whose scripts read JSON under ``/ui/api``: the API's own handlers re-routed
there (same paths, bodies and errors), so a browser's Basic login covers them.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.routing import APIRoute

from rq_serviceq.http.routes import common, control, events, read, tasks, workers
from rq_serviceq.http.ui.history import history_svg
from rq_serviceq.http.ui.markup import (
    BATCH_SCRIPT,
    CHART,
    CONTROLS_SCRIPT,
    QUEUE_SCRIPT,
    QUEUES_SCRIPT,
    TASKS,
    WORKERS_PANEL,
    WORKERS_SCRIPT,
    controls_html,
    num,
    page,
)
from rq_serviceq.models import StatusInfo

router = APIRouter(prefix="/ui", include_in_schema=False)


@router.get("", include_in_schema=False)
async def ui_root() -> RedirectResponse:
    return RedirectResponse("/ui/")


@router.get("/")
async def queues_page() -> HTMLResponse:
    body = (
        "<table id='queues'><thead><tr><th>service queue</th><th>status</th></tr></thead><tbody></tbody></table>"
        "<p id='empty' class='muted' hidden>No service queue yet: push a task to create one.</p>"
    )
    return page("Service queues", body, QUEUES_SCRIPT)


@router.get("/serviceqs/{name}")
async def queue_page(name: common.Name, request: Request) -> HTMLResponse:
    """The queue's status line, controls, batch history and table, workers and settings (queue.js keeps the
    status line and the table live)."""
    svc = common.service(request)
    detail = await read.get_serviceq(name, request)
    batches = await svc.run(common.with_queue, svc, name, lambda sq: sq.batches(0, 50))
    settings = "".join(
        f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>" for k, v in detail.settings.items()
    )
    budget = detail.status_info.start_budget()
    body = (
        status_line(detail.status_info)
        + (f"<p id='budget'>start budget: {html.escape(budget)}</p>" if budget else "")
        + controls_html(f"../api/serviceqs/{name}", detail.settings)
        + f"<h2>Batch history (last {len(batches)}, oldest left)</h2>{history_svg(name, batches)}"
        + batch_table(name, batches)
        + WORKERS_PANEL
        + f"<h2>Settings</h2><table>{settings}</table>"
    )
    api = f"../api/serviceqs/{name}"
    data = {"name": name, "queue": api, "events": f"{api}/events", "workers": f"{api}/workers"}
    return page(f"Service queue {name}", body, CONTROLS_SCRIPT + WORKERS_SCRIPT + QUEUE_SCRIPT, data, depth=1)


def status_line(info: StatusInfo) -> str:
    """Status (and why paused: by hand, or the breaker's reason), workers, pending; each part has the id
    queue.js refreshes."""
    why = f" ({html.escape(info.pause_reason)})" if info.pause_reason else ""
    return (
        f"<p id='q-status'>status <b id='q-state'>{html.escape(info.status)}</b><span id='q-why'>{why}</span>, "
        f"<span id='q-workers'>{len(info.worker_reports)}</span> worker(s), "
        f"<span id='q-pending'>{info.pending_q_length}</span> pending "
        f"(<span id='q-waiting'>{info.waiting_retries}</span> waiting to retry) "
        "<span id='q-live' class='muted'></span></p>"
    )


def batch_table(name: str, batches: list[dict[str, Any]]) -> str:
    rows = "".join(
        f"<tr><td><a href='{html.escape(name)}/batches/{html.escape(b['batch_id'])}'>{html.escape(b['batch_id'])}</a>"
        f"</td><td>{html.escape(b['status'])}</td><td class='num'>{b['total_submitted']}</td>"
        f"<td class='num'>{b['total_success']}</td><td class='num'>{b['total_failed']}</td>"
        f"<td class='num'>{b['total_pending']}</td><td class='num'>{num(b['batch_duration'])}</td></tr>"
        for b in batches
    )
    head = "".join(f"<th>{h}</th>" for h in ("batch", "status", "submitted", "passed", "failed", "pending"))
    return (
        f"<h2>Batches</h2><table id='batches'><thead><tr>{head}<th>duration (s)</th></tr></thead>"
        f"<tbody>{rows}</tbody></table>"
    )


@router.get("/serviceqs/{name}/batches/{batch_id}")
async def batch_page(
    name: common.Name, batch_id: common.BatchId, request: Request, limit: Annotated[int, Query(ge=1, le=1000)] = 50
) -> HTMLResponse:
    """The batch's counters, its chart (drawn by the script from the progress feed) and its tasks, ``limit`` a page."""
    await read.get_progress(name, batch_id, request)  # 404 now rather than an empty page
    settings = (await read.get_serviceq(name, request)).settings
    counters = "".join(
        f"<tr><th>{label}</th><td id='{key}' class='num'></td></tr>"
        for key, label in (
            ("status", "status"),
            ("total_submitted", "submitted"),
            ("total_success", "passed"),
            ("total_failed", "failed"),
            ("total_pending", "pending"),
            ("waiting_retries", "waiting retries"),
            ("rate", "rate"),
            ("rate_limit", "rate limit"),
            ("eta", "ETA"),
            ("duration", "duration"),
            ("start_time", "started"),
            ("end_time", "ended"),
            ("end_callback", "batch-end callback"),
        )
    )
    body = (
        f"<p class='muted'>service queue <a href='../../{html.escape(name)}'>{html.escape(name)}</a>, "
        f"batch {html.escape(batch_id)} · <span id='live'></span></p>"
        "<div class='bar'><div id='bar-passed' class='passed'></div><div id='bar-failed' class='failed'></div>"
        f"<div id='bar-waiting' class='waiting'></div></div><table>{counters}</table>{CHART}{TASKS}"
    )
    body += controls_html(f"../../../api/serviceqs/{name}", {"worker_count": settings.get("worker_count")}, batch_id)
    data = {
        "api": f"../../../api/serviceqs/{name}/batches/{batch_id}",
        "events": f"../../../api/serviceqs/{name}/events",
        "limit": str(limit),
    }
    return page(f"Batch {batch_id[:12]}", body, BATCH_SCRIPT + CONTROLS_SCRIPT, data, depth=3)


# --- the API's own handlers under /ui/api, the pages' login: what the pages read, and what their buttons call
# (auth.cross_site refuses a state-changing one from another site, and in any body but JSON).  Paths and
# methods are the API's, read off its routes, so the two cannot drift apart.
PAGE_ENDPOINTS: frozenset[Callable[..., Any]] = frozenset(
    {
        read.list_serviceqs,
        read.get_serviceq,
        read.list_batches,
        read.get_progress,
        read.get_batch,
        tasks.list_tasks,
        tasks.export_tasks,
        events.stream_events,
        events.recent_events,
        workers.list_workers,
        control.pause,
        control.resume,
        control.stop,
        control.scale,
        control.requeue_failed,
        control.put_worker_config,
        control.put_breaker,
    }
)
for api in (read.router, tasks.router, events.router, workers.router, control.router):
    for route in api.routes:
        if isinstance(route, APIRoute) and route.endpoint in PAGE_ENDPOINTS:
            router.add_api_route("/api" + route.path, route.endpoint, methods=sorted(route.methods or ()))
