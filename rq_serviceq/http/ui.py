"""``/ui``: the service queues, and for one batch its progress and its report.

Server-rendered shells with a little JavaScript that polls JSON under
``/ui/api`` (same paths and bodies as the API, under the pages' login, so a
browser's Basic login covers them).  Task data is user data: the script only
ever sets ``textContent``, never HTML, so a task cannot inject markup.
"""

from __future__ import annotations

import html
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from rq_serviceq.http.routes import common, events, read, workers

router = APIRouter(prefix="/ui", include_in_schema=False)

STYLE = """
body{font-family:system-ui,sans-serif;margin:1.5rem;color:#222}
h1{font-size:1.4rem}h2{font-size:1.1rem;margin-top:1.5rem}
table{border-collapse:collapse;margin:.5rem 0;font-size:.9rem}
td,th{border:1px solid #ccc;padding:.25rem .5rem;text-align:left;vertical-align:top}
th{background:#f3f3f3}.num{text-align:right}
.bar{width:32rem;max-width:100%;height:1.2rem;background:#eee;display:flex;border-radius:3px;overflow:hidden}
.bar div{height:100%}.passed{background:#3a3}.failed{background:#c33}.waiting{background:#e90}
tr.row-failed td{background:#fdecea}tr.row-passed td{background:#eef8ee}
code,pre{font-size:.8rem;white-space:pre-wrap;word-break:break-all;margin:0}
.muted{color:#777}nav a{margin-right:1rem}
"""

SCRIPT = """
const $ = (id) => document.getElementById(id);
function cell(row, value, cls) {
  const td = row.insertCell(); td.textContent = value === null || value === undefined ? "" : String(value);
  if (cls) td.className = cls; return td;
}
function when(t) { return t ? new Date(t * 1000).toLocaleString() : ""; }
async function getJSON(url) {
  const r = await fetch(url, {credentials: "same-origin", headers: {"Accept": "application/json"}});
  if (!r.ok) throw new Error(url + ": HTTP " + r.status);
  return r.json();
}
"""

QUEUES_SCRIPT = """
async function refresh() {
  try {
    const data = await getJSON("api/serviceqs");
    const body = $("queues").tBodies[0]; body.replaceChildren();
    for (const q of data.serviceqs) {
      const row = body.insertRow();
      const a = document.createElement("a"); a.href = "serviceqs/" + encodeURIComponent(q.name);
      a.textContent = q.name; row.insertCell().appendChild(a); cell(row, q.status);
    }
    $("empty").hidden = data.serviceqs.length > 0; $("error").textContent = "";
  } catch (e) { $("error").textContent = String(e); }
}
refresh(); setInterval(refresh, 2000);
"""

BATCH_SCRIPT = """
const base = document.body.dataset.api;
function taskRows(table, tasks, outcome) {
  for (const t of tasks) {
    const row = table.tBodies[0].insertRow(); row.className = "row-" + outcome;
    cell(row, outcome); cell(row, t.remark); cell(row, t.total_retry_attempts, "num");
    cell(row, when(t.last_retry_timestamp)); cell(row, t.task_id);
    const pre = document.createElement("pre"); pre.textContent = JSON.stringify(t.task);
    row.insertCell().appendChild(pre);
  }
}
let lastDone = -1;
async function refresh() {
  try {
    const p = await getJSON(base + "/progress");
    for (const k of ["status", "total_submitted", "total_success", "total_failed", "total_pending",
                     "waiting_retries"]) $(k).textContent = p[k] ?? "";
    $("end_callback").textContent = p.end_callback ?? (p.end_time === null ? "" : "none set, or not run yet");
    $("rate").textContent = p.rate_per_second === null ? "-" : p.rate_per_second.toFixed(2) + " tasks/s";
    $("rate_limit").textContent = p.rate_limit === null ? "none" : p.rate_limit + " starts/s";
    $("eta").textContent = p.eta_seconds === null ? "-" : p.eta_seconds.toFixed(1) + " s";
    $("duration").textContent = p.batch_duration === null ? "-" : p.batch_duration.toFixed(2) + " s";
    $("start_time").textContent = when(p.start_time); $("end_time").textContent = when(p.end_time);
    const n = Math.max(p.total_submitted, 1);
    $("bar-passed").style.width = (100 * p.total_success / n) + "%";
    $("bar-failed").style.width = (100 * p.total_failed / n) + "%";
    $("bar-waiting").style.width = (100 * p.waiting_retries / n) + "%";
    const done = p.total_success + p.total_failed;
    if (done !== lastDone) {
      lastDone = done;
      const report = await getJSON(base + "?limit=" + document.body.dataset.limit);
      const table = $("tasks"); table.tBodies[0].replaceChildren();
      taskRows(table, report.failed_tasks, "failed"); taskRows(table, report.passed_tasks, "passed");
      $("more").hidden = report.tasks_inline;
    }
    $("error").textContent = "";
    if (!["FINISHED", "STOPPED"].includes(p.status)) setTimeout(refresh, 1000);
  } catch (e) { $("error").textContent = String(e); setTimeout(refresh, 3000); }
}
refresh();
"""

WORKERS_SCRIPT = """
async function refreshWorkers() {
  try {
    const w = await getJSON(document.body.dataset.workers);
    const rows = $("workers").tBodies[0]; rows.replaceChildren();
    for (const x of w.workers) {
      const row = rows.insertRow(); row.className = "worker";
      cell(row, x.name); cell(row, x.machine); cell(row, x.process, "num"); cell(row, x.state);
      cell(row, x.current_task ?? ""); cell(row, x.passed, "num"); cell(row, x.failed, "num");
      cell(row, x.seconds_since_seen === null ? "" : x.seconds_since_seen.toFixed(1) + " s ago");
      cell(row, x.supervisor ?? "");
    }
    $("no-workers").hidden = w.workers.length > 0;
    const held = $("supervisors").tBodies[0]; held.replaceChildren();
    for (const s of w.supervisors) {
      const row = held.insertRow(); cell(row, s.id); cell(row, s.machine); cell(row, s.process, "num");
      cell(row, s.share, "num");
    }
    $("supervisors").hidden = w.supervisors.length === 0;
    $("workers-summary").textContent = "worker_count " + w.worker_count + ": " + w.workers.length +
      " worker(s) registered, " + w.supervisors.length + " supervisor(s)";
    $("error").textContent = "";
  } catch (e) { $("error").textContent = String(e); }
}
refreshWorkers(); setInterval(refreshWorkers, 2000);
"""

WORKERS_PANEL = (
    "<h2>Workers</h2><p id='workers-summary' class='muted'></p>"
    "<table id='workers'><thead><tr><th>worker</th><th>machine</th><th>pid</th><th>state</th><th>current task</th>"
    "<th>passed</th><th>failed</th><th>last seen</th><th>supervisor</th></tr></thead><tbody></tbody></table>"
    "<p id='no-workers' class='muted' hidden>No worker is registered on this service queue: run "
    "<code>rq-serviceq worker NAME</code> (a supervisor) or <code>rq worker</code> on its pending queue.</p>"
    "<table id='supervisors' hidden><thead><tr><th>supervisor</th><th>machine</th><th>pid</th>"
    "<th>share of worker_count</th></tr></thead><tbody></tbody></table>"
)


def page(title: str, body: str, script: str = "", data: dict[str, str] | None = None, depth: int = 0) -> HTMLResponse:
    attrs = "".join(f' data-{k}="{html.escape(v)}"' for k, v in (data or {}).items())
    home = "../" * depth or "./"
    return HTMLResponse(
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)} - rq-serviceq</title><style>{STYLE}</style></head>"
        f"<body{attrs}><nav><a href='{home}'>service queues</a><a href='{home}../rq/'>rq-dashboard</a>"
        f"<a href='{home}../docs'>API docs</a></nav><h1>{html.escape(title)}</h1>{body}"
        f"<p id='error' class='muted'></p><script>{SCRIPT}{script}</script></body></html>"
    )


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
    svc = common.service(request)
    detail = await read.get_serviceq(name, request)
    batches = await svc.run(common.with_queue, svc, name, lambda sq: sq.batches(0, 50))
    info = detail.status_info
    rows = "".join(
        f"<tr><td><a href='{html.escape(name)}/batches/{html.escape(b['batch_id'])}'>{html.escape(b['batch_id'])}</a>"
        f"</td><td>{html.escape(b['status'])}</td><td class='num'>{b['total_submitted']}</td>"
        f"<td class='num'>{b['total_success']}</td><td class='num'>{b['total_failed']}</td>"
        f"<td class='num'>{b['total_pending']}</td><td class='num'>{_num(b['batch_duration'])}</td></tr>"
        for b in batches
    )
    settings = "".join(
        f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>" for k, v in detail.settings.items()
    )
    workers = len(info.worker_reports)
    budget = info.start_budget()
    why = f" ({html.escape(info.pause_reason)})" if info.pause_reason else ""  # the breaker's reason, say
    body = (
        f"<p>status <b>{html.escape(info.status)}</b>{why}, {workers} worker(s), "
        f"{info.pending_q_length} pending ({info.waiting_retries} waiting to retry)</p>"
        + (f"<p id='budget'>start budget: {html.escape(budget)}</p>" if budget else "")
        + "<h2>Batches</h2><table><thead><tr><th>batch</th><th>status</th><th>submitted</th><th>passed</th>"
        f"<th>failed</th><th>pending</th><th>duration (s)</th></tr></thead><tbody>{rows}</tbody></table>"
        + WORKERS_PANEL
        + f"<h2>Settings</h2><table>{settings}</table>"
    )
    workers_api = {"workers": f"../api/serviceqs/{name}/workers"}
    return page(f"Service queue {name}", body, WORKERS_SCRIPT, workers_api, depth=1)


def _num(value: Any) -> str:
    return "" if value is None else f"{value:.1f}"


@router.get("/serviceqs/{name}/batches/{batch_id}")
async def batch_page(
    name: common.Name, batch_id: common.BatchId, request: Request, limit: Annotated[int, Query(ge=1, le=1000)] = 200
) -> HTMLResponse:
    await read.get_progress(name, batch_id, request)  # 404 now rather than an empty page
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
        f"batch {html.escape(batch_id)}</p>"
        "<div class='bar'><div id='bar-passed' class='passed'></div><div id='bar-failed' class='failed'></div>"
        f"<div id='bar-waiting' class='waiting'></div></div><table>{counters}</table>"
        "<h2>Report (failed first)</h2><table id='tasks'><thead><tr><th>outcome</th><th>remark</th>"
        "<th>retries</th><th>last attempt</th><th>task id</th><th>task</th></tr></thead><tbody></tbody></table>"
        f"<p id='more' class='muted' hidden>Showing the first {limit} of each: page through the rest with "
        "<code>?outcome=passed|failed&amp;offset=&amp;limit=</code> on the API.</p>"
    )
    data = {"api": f"../../../api/serviceqs/{name}/batches/{batch_id}", "limit": str(limit)}
    return page(f"Batch {batch_id[:12]}", body, BATCH_SCRIPT, data, depth=3)


# --- the JSON the pages poll: the API's own handlers, under the pages' login ---------------------------
for path, endpoint in (
    ("/api/serviceqs", read.list_serviceqs),
    ("/api/serviceqs/{name}/batches/{batch_id}/progress", read.get_progress),
    ("/api/serviceqs/{name}/batches/{batch_id}", read.get_batch),
    ("/api/serviceqs/{name}/events", events.stream_events),
    ("/api/serviceqs/{name}/events/recent", events.recent_events),
    ("/api/serviceqs/{name}/workers", workers.list_workers),
):
    router.add_api_route(path, endpoint, methods=["GET"])
