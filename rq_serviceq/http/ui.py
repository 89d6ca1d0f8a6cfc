"""``/ui``: the service queues, and for one batch its progress and its report.

Server-rendered shells with a little JavaScript that polls JSON under
``/ui/api`` (same paths and bodies as the API, under the pages' login, so a
browser's Basic login covers them).  Task data is user data: the script only
ever sets ``textContent``, never HTML, so a task cannot inject markup.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from rq_serviceq.http.routes import common, control, events, read, workers

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
#controls fieldset{display:inline-block;margin:.25rem .5rem .25rem 0;border:1px solid #ccc}
#controls input{width:5rem}#controls button{margin:.1rem}
#ctl-message{font-weight:bold}.hist rect{fill:#57a}.hist rect.hist-failed{fill:#c33}
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

# The controls of the queue and batch pages: the API's control routes under /ui/api (the pages' login), each a
# same-origin fetch() with a JSON body (auth.cross_site refuses any other kind there).  The result is kept
# across the reload that shows its effect, and shown as text only.
CONTROLS_SCRIPT = """
(function () {
  const ctl = document.getElementById("controls"), api = ctl.dataset.api, said = "serviceq-control-message";
  const show = (text) => { document.getElementById("ctl-message").textContent = text; };
  if (sessionStorage.getItem(said) !== null) { show(sessionStorage.getItem(said)); sessionStorage.removeItem(said); }
  function number(id) {  // empty: null; what is not a number is refused here rather than sent as null
    const field = document.getElementById(id), text = field.value.trim();
    if (field.validity.badInput) throw new Error(field.parentElement.textContent.trim() + ": not a number");
    return text === "" ? null : Number(text);
  }
  async function send(method, path, body) {
    try {
      const r = await fetch(api + path, {method, credentials: "same-origin", body: JSON.stringify(body ?? {}),
        headers: {"Content-Type": "application/json", "Accept": "application/json"}});
      const answer = await r.json().catch(() => ({}));
      if (!r.ok) { show("refused (HTTP " + r.status + "): " + (typeof answer.detail === "string" ? answer.detail
                                                                  : JSON.stringify(answer.detail ?? ""))); return; }
      const given = Object.entries(body ?? {}).map(([k, v]) => k + " " + (v ?? "none")).join(", ");
      sessionStorage.setItem(said, answer.message ?? "saved: " + (given || "all off"));  // a PUT returns settings
      location.reload();
    } catch (e) { show(String(e)); }
  }
  async function stop() {
    let text;
    try {
      const p = await getJSON(api + "/batches/latest/progress");
      text = ["FINISHED", "STOPPED", "ENDING"].includes(p.status)
        ? "There is no active batch (the last one is " + p.status + "): stop changes nothing. Send it anyway?"
        : "Stop batch " + p.batch_id + "? Its " + p.total_pending + " pending task(s) fail with STOPPED " +
          "(running ones finish and are counted).";
    } catch (e) { text = "No batch could be read (" + e + "): stop anyway?"; }
    if (confirm(text)) await send("POST", "/stop");
  }
  const on = (id, act) => {
    const b = document.getElementById(id);
    if (b) b.addEventListener("click", () => { try { act(); } catch (e) { show(e.message); } });
  };
  on("ctl-pause", () => send("POST", "/pause"));
  on("ctl-resume", () => send("POST", "/resume"));
  on("ctl-stop", stop);
  on("ctl-scale", () => send("POST", "/scale", {worker_count: number("ctl-worker-count")}));
  on("ctl-requeue", () => send("POST", "/requeue-failed" + (ctl.dataset.batch ? "?batch_id=" +
                                 encodeURIComponent(ctl.dataset.batch) : "")));
  on("ctl-rate", () => send("PUT", "/worker-config",
                            {rate_limit: number("ctl-rate-limit"), rate_burst: number("ctl-rate-burst")}));
  on("ctl-breaker", () => {
    const body = {};
    const fields = [["failure_ratio", "ctl-failure-ratio"], ["min_tasks", "ctl-min-tasks"],
                    ["consecutive_failures", "ctl-consecutive"]];
    for (const [key, id] of fields) if (number(id) !== null) body[key] = number(id);
    send("PUT", "/breaker", body);
  });
})();
"""


def _field(ident: str, label: str, value: Any, step: str = "any") -> str:
    shown = "" if value is None else html.escape(str(value))
    return (
        f"<label>{html.escape(label)} <input id='{ident}' type='number' min='0' step='{step}' value='{shown}'></label> "
    )


def _button(ident: str, label: str) -> str:
    return f"<button type='button' id='{ident}'>{html.escape(label)}</button>"


def controls_html(api: str, settings: dict[str, Any], batch_id: str | None = None) -> str:
    """The controls' markup (CONTROLS_SCRIPT wires them): the batch page passes its ``batch_id``, which
    requeue then takes, and gets no settings fields (they belong to the queue)."""
    data = f" data-batch='{html.escape(batch_id)}'" if batch_id else ""
    which = "this batch's" if batch_id else "the latest batch's"
    parts = [
        f"<section id='controls' data-api='{html.escape(api)}'{data}><h2>Controls</h2><fieldset><legend>run</legend>",
        _button("ctl-pause", "pause"),
        _button("ctl-resume", "resume"),
        _button("ctl-stop", "stop…"),
        _button("ctl-requeue", f"requeue {which} failed"),
        "</fieldset><fieldset><legend>workers</legend>",
        _field("ctl-worker-count", "worker count", settings.get("worker_count"), "1"),
        _button("ctl-scale", "scale"),
        "</fieldset>",
    ]
    if not batch_id:
        parts += [
            "<fieldset><legend>rate limit (empty: none)</legend>",
            _field("ctl-rate-limit", "starts/s", settings.get("rate_limit")),
            _field("ctl-rate-burst", "burst", settings.get("rate_burst"), "1"),
            _button("ctl-rate", "set"),
            "</fieldset><fieldset><legend>breaker (empty: off)</legend>",
            _field("ctl-failure-ratio", "failure ratio", settings.get("failure_ratio")),
            _field("ctl-min-tasks", "min tasks", settings.get("min_tasks"), "1"),
            _field("ctl-consecutive", "consecutive failures", settings.get("consecutive_failures"), "1"),
            _button("ctl-breaker", "set"),
            "</fieldset>",
        ]
    parts.append("<p id='ctl-message' role='status'></p></section>")
    return "".join(parts)


def _duration(batch: dict[str, Any]) -> float:
    return float(batch["batch_duration"] or 0.0)  # a running batch has none yet: a flat bar


def _size(batch: dict[str, Any]) -> float:
    return float(batch["total_submitted"])


def _failure_ratio(batch: dict[str, Any]) -> float:
    ended = batch["total_success"] + batch["total_failed"]
    return batch["total_failed"] / ended if ended else 0.0


HISTORY_ROWS: tuple[tuple[str, str, Callable[[dict[str, Any]], float], str], ...] = (
    ("hist-duration", "duration", _duration, " s"),  # (class, label, a batch's value, unit)
    ("hist-size", "size", _size, " tasks"),
    ("hist-failed", "failure ratio", _failure_ratio, ""),
)


def history_svg(name: str, batches: list[dict[str, Any]]) -> str:
    """The batch history (newest first, as ``sq.batches`` gives it) as an inline SVG, oldest on the left:
    one bar per batch in each of three rows (duration, size, failure ratio), each a link to its batch page
    with a tooltip.  Drawn here, every text escaped: no script, no library, nothing fetched."""
    if not batches:
        return "<p class='muted'>No batch yet.</p>"
    ordered = list(reversed(batches))
    step, row_h, left = min(24.0, 640.0 / len(ordered)), 50, 170
    width, height = left + step * len(ordered), 3 * (row_h + 14)
    parts = [
        f"<svg id='history' class='hist' role='img' width='{width:.0f}' height='{height}' "
        f"viewBox='0 0 {width:.0f} {height}' xmlns='http://www.w3.org/2000/svg'>"
    ]
    for row, (cls, label, value, unit) in enumerate(HISTORY_ROWS):
        top = row * (row_h + 14)
        values = [value(b) for b in ordered]
        peak = 1.0 if cls == "hist-failed" else max(max(values), 1e-9)
        shown = "0-100%" if cls == "hist-failed" else f"max {peak:g}{unit}"
        parts.append(f"<text x='0' y='{top + row_h - 4}' font-size='12'>{label} ({html.escape(shown)})</text>")
        parts.append(f"<line x1='{left}' y1='{top + row_h}' x2='{width:.0f}' y2='{top + row_h}' stroke='#999'/>")
        for i, (b, v) in enumerate(zip(ordered, values, strict=True)):
            h = max(1.0, row_h * v / peak)
            tip = (
                f"{b['batch_id']} ({b['status']}): {_num(b['batch_duration']) or '-'} s, {b['total_submitted']} tasks, "
            )
            tip += f"{b['total_failed']} failed ({100 * _failure_ratio(b):.0f}%)"
            href = f"{html.escape(name)}/batches/{html.escape(b['batch_id'])}"
            parts.append(
                f"<a href='{href}'><rect class='{cls}' data-batch='{html.escape(b['batch_id'])}' "
                f"x='{left + i * step + 1:.1f}' y='{top + row_h - h:.1f}' width='{max(step - 2, 1):.1f}' "
                f"height='{h:.1f}'><title>{html.escape(tip)}</title></rect></a>"
            )
    parts.append("</svg>")
    return "".join(parts)


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
        + controls_html(f"../api/serviceqs/{name}", detail.settings)
        + f"<h2>Batch history (last {len(batches)}, oldest left)</h2>{history_svg(name, batches)}"
        + "<h2>Batches</h2><table><thead><tr><th>batch</th><th>status</th><th>submitted</th><th>passed</th>"
        f"<th>failed</th><th>pending</th><th>duration (s)</th></tr></thead><tbody>{rows}</tbody></table>"
        + WORKERS_PANEL
        + f"<h2>Settings</h2><table>{settings}</table>"
    )
    workers_api = {"workers": f"../api/serviceqs/{name}/workers"}
    return page(f"Service queue {name}", body, CONTROLS_SCRIPT + WORKERS_SCRIPT, workers_api, depth=1)


def _num(value: Any) -> str:
    return "" if value is None else f"{value:.1f}"


@router.get("/serviceqs/{name}/batches/{batch_id}")
async def batch_page(
    name: common.Name, batch_id: common.BatchId, request: Request, limit: Annotated[int, Query(ge=1, le=1000)] = 200
) -> HTMLResponse:
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
        f"batch {html.escape(batch_id)}</p>"
        "<div class='bar'><div id='bar-passed' class='passed'></div><div id='bar-failed' class='failed'></div>"
        f"<div id='bar-waiting' class='waiting'></div></div><table>{counters}</table>"
        "<h2>Report (failed first)</h2><table id='tasks'><thead><tr><th>outcome</th><th>remark</th>"
        "<th>retries</th><th>last attempt</th><th>task id</th><th>task</th></tr></thead><tbody></tbody></table>"
        f"<p id='more' class='muted' hidden>Showing the first {limit} of each: page through the rest with "
        "<code>?outcome=passed|failed&amp;offset=&amp;limit=</code> on the API.</p>"
    )
    body += controls_html(f"../../../api/serviceqs/{name}", {"worker_count": settings.get("worker_count")}, batch_id)
    data = {"api": f"../../../api/serviceqs/{name}/batches/{batch_id}", "limit": str(limit)}
    return page(f"Batch {batch_id[:12]}", body, BATCH_SCRIPT + CONTROLS_SCRIPT, data, depth=3)


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

# --- the controls the pages' buttons call: the API's own handlers, under the pages' login; auth.cross_site
# refuses them from another site and in any body but JSON -------------------------------------------------
CONTROL_ROUTES: tuple[tuple[str, Callable[..., Any], str], ...] = (
    ("/api/serviceqs/{name}/pause", control.pause, "POST"),
    ("/api/serviceqs/{name}/resume", control.resume, "POST"),
    ("/api/serviceqs/{name}/stop", control.stop, "POST"),
    ("/api/serviceqs/{name}/scale", control.scale, "POST"),
    ("/api/serviceqs/{name}/requeue-failed", control.requeue_failed, "POST"),
    ("/api/serviceqs/{name}/worker-config", control.put_worker_config, "PUT"),
    ("/api/serviceqs/{name}/breaker", control.put_breaker, "PUT"),
)
for control_path, handler, method in CONTROL_ROUTES:
    router.add_api_route(control_path, handler, methods=[method])
