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

from rq_serviceq.http.routes import common, control, events, read, tasks, workers

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
const base = document.body.dataset.api, feed = document.body.dataset.events;
const pageSize = Number(document.body.dataset.limit);
const SVG = "http://www.w3.org/2000/svg";
const OVER = ["FINISHED", "STOPPED"];
let batchId = null, lastId = "0", stream = null, feedless = false, over = false;
const points = [], marks = [];  // progress samples {t, passed, failed, pending, submitted, retried}; other events

// --- live: the feed's history from events/recent, then EventSource, else polling --------------------------
function setMode(mode) {
  document.body.dataset.live = mode;
  $("live").textContent = {stream: "live: server-sent events", polling: "live: polling",
                           done: "batch ended", starting: "connecting"}[mode];
}
function newer(a, b) {  // stream ids "ms-seq": is a after b
  const [am, as] = a.split("-").map(Number), [bm, bs] = b.split("-").map(Number);
  return am > bm || (am === bm && as > bs);
}
function take(e) {
  if (!newer(e.id, lastId)) return false;
  lastId = e.id;
  if (e.batch_id !== batchId) return false;
  if (e.passed !== null && e.passed !== undefined)
    points.push({t: e.time, passed: e.passed, failed: e.failed, pending: e.pending,
                 submitted: e.submitted, retried: e.retried || 0});
  else if (e.type !== "opened" && e.type !== "ended") marks.push({t: e.time, type: e.type});
  return true;
}
async function readFeed() {  // every event of this batch after lastId, a page at a time
  for (;;) {
    const q = new URLSearchParams({since: lastId, batch: batchId, limit: 1000});
    const page = await getJSON(feed + "/recent?" + q);
    for (const e of page.events) take(e);
    if (newer(page.last_id, lastId)) lastId = page.last_id;
    if (page.events.length < 1000) return;
  }
}
function openStream() {
  if (over || typeof EventSource === "undefined") { if (!over) setMode("polling"); return; }
  const es = stream = new EventSource(feed + "?" + new URLSearchParams({batch: batchId, since: lastId}));
  const onEvent = (msg) => {
    try { if (take(JSON.parse(msg.data))) { draw(); soon(); } } catch (e) { $("error").textContent = String(e); }
  };
  for (const type of ["opened", "progress", "paused", "resumed", "stopped", "throttled", "breaker", "ended",
                      "finished"]) es.addEventListener(type, onEvent);
  es.onmessage = onEvent;
  es.onopen = () => { if (!over) setMode("stream"); };
  es.onerror = () => {  // closed by the server, refused, or cut: poll, and try the stream again later
    es.close(); stream = null;
    if (over) return;
    setMode("polling"); schedule(0); setTimeout(() => { if (!over && !stream) openStream(); }, 15000);
  };
}

// --- counters: the progress endpoint, read on each event (at most ~6 a second) and on a timer ----------------
let timer = null, quick = false, running = false, again = false, lastDone = -1, tasksAt = 0;
function schedule(ms) { if (timer) clearTimeout(timer); timer = setTimeout(tick, ms); }
function soon() { if (!quick) { quick = true; schedule(150); } }
async function refresh() {
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
  if (feedless) {  // no feed to draw from: the chart samples the counters instead
    points.push({t: Date.now() / 1000, passed: p.total_success, failed: p.total_failed, pending: p.total_pending,
                 submitted: p.total_submitted, retried: 0});
    draw();
  }
  const done = p.total_success + p.total_failed;
  if (done !== lastDone && Date.now() - tasksAt > 1000) { lastDone = done; loadTasks(); }
  return p;
}
async function tick() {
  timer = null; quick = false;
  if (running) { again = true; return; }
  running = true;
  try {
    if (document.body.dataset.live === "polling" && !feedless) { await readFeed(); draw(); }
    const p = await refresh();
    $("error").textContent = "";
    if (OVER.includes(p.status)) { await finish(); return; }
    schedule(document.body.dataset.live === "stream" ? 5000 : 1000);
  } catch (e) { $("error").textContent = String(e); schedule(3000); }
  finally { running = false; if (again) { again = false; soon(); } }
}
async function finish() {
  over = true; if (stream) { stream.close(); stream = null; }
  if (timer) clearTimeout(timer);
  if (!feedless) { try { await readFeed(); } catch (e) { /* the counters are final anyway */ } }
  setMode("done"); draw(); lastDone = -1; tasksAt = 0; loadTasks();
}
async function start() {
  setMode("starting");
  try {
    const p = await refresh(); batchId = p.batch_id;
    try { await readFeed(); } catch (e) { feedless = true; }
    draw();
    if (OVER.includes(p.status)) { await finish(); return; }
    if (feedless) setMode("polling"); else openStream();
    schedule(1000);
  } catch (e) { $("error").textContent = String(e); schedule(3000); }
}

// --- the chart: inline SVG, passed/failed/pending over time with retry waves, and the rate ---------------------
function el(parent, name, attrs, text) {
  const node = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  if (text !== undefined) node.textContent = text;
  parent.appendChild(node); return node;
}
const W = 720, H = 200, L = 52, R = 12, T = 10, B = 22;
function frame(svg, t0, t1, ymax, unit) {
  svg.replaceChildren(); svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
  const x = (t) => L + (t - t0) / (t1 - t0) * (W - L - R), y = (v) => H - B - v / ymax * (H - T - B);
  el(svg, "path", {d: `M${L} ${T}V${H - B}H${W - R}`, class: "axis"});
  el(svg, "text", {x: L - 4, y: T + 8, "text-anchor": "end"}, fmt(ymax) + unit);
  el(svg, "text", {x: L - 4, y: H - B, "text-anchor": "end"}, "0");
  el(svg, "text", {x: L, y: H - 6}, "0 s");
  el(svg, "text", {x: W - R, y: H - 6, "text-anchor": "end"}, fmt(t1 - t0) + " s");
  for (const m of marks) {
    if (m.t < t0 || m.t > t1) continue;
    el(svg, "path", {d: `M${x(m.t).toFixed(1)} ${T}V${H - B}`, class: "mark " + m.type});
    el(svg, "text", {x: x(m.t) + 2, y: T + 18, class: "mark-label"}, m.type);
  }
  return [x, y];
}
function fmt(v) { return v >= 100 ? String(Math.round(v)) : String(Math.round(v * 10) / 10); }
function steps(x, y, key) {
  let d = "";
  for (const p of points) {
    const px = x(p.t).toFixed(1), py = y(p[key]).toFixed(1);
    d += d ? `H${px}V${py}` : `M${px} ${py}`;
  }
  return d;
}
function buckets(t0, t1) {  // 2-60 of them, none shorter than 20 ms (a rate over less is noise)
  const BUCKETS = Math.max(2, Math.min(60, Math.floor((t1 - t0) / 0.02)));
  const width = (t1 - t0) / BUCKETS, done = new Array(BUCKETS).fill(0), retried = new Array(BUCKETS).fill(0);
  let prev = null;
  for (const p of points) {
    const i = Math.min(BUCKETS - 1, Math.floor((p.t - t0) / width));
    retried[i] += p.retried;
    if (prev) done[i] += (p.passed + p.failed) - (prev.passed + prev.failed);
    prev = p;
  }
  return {width, done, retried};
}
function draw() {
  const counts = $("chart-counts"), rate = $("chart-rate");
  $("chart-empty").hidden = points.length > 0;
  if (!points.length) { counts.replaceChildren(); rate.replaceChildren(); return; }
  const t0 = points[0].t, t1 = Math.max(points[points.length - 1].t, ...marks.map((m) => m.t), t0 + 0.5);
  const ymax = Math.max(1, ...points.map((p) => Math.max(p.submitted ?? 0, p.passed + p.failed)));
  const [x, y] = frame(counts, t0, t1, ymax, "");
  const b = buckets(t0, t1), most = Math.max(1, ...b.retried), bw = Math.max(1, (W - L - R) / b.done.length - 1);
  b.retried.forEach((n, i) => {
    if (!n) return;
    const h = n / most * (H - T - B) * 0.4;
    const bar = el(counts, "rect", {x: (x(t0 + i * b.width) + 0.5).toFixed(1), y: (H - B - h).toFixed(1),
                                    width: bw.toFixed(1), height: h.toFixed(1), class: "retried"});
    el(bar, "title", {}, n + " retries scheduled");
  });
  for (const key of ["pending", "failed", "passed"]) el(counts, "path", {d: steps(x, y, key), class: "line " + key});
  const last = points[points.length - 1];
  for (const key of ["passed", "failed"])
    el(counts, "circle", {cx: x(last.t).toFixed(1), cy: y(last[key]).toFixed(1), r: 3, class: "dot " + key});
  const perSecond = b.done.map((n) => n / b.width), top = Math.max(1, ...perSecond);
  const [rx, ry] = frame(rate, t0, t1, top, "/s");
  let d = "";
  perSecond.forEach((v, i) => {
    const px = rx(t0 + (i + 0.5) * b.width).toFixed(1), py = ry(v).toFixed(1);
    d += d ? `L${px} ${py}` : `M${px} ${py}`;
  });
  el(rate, "path", {d, class: "line rate"});
  $("chart-counts").dataset.points = String(points.length);
}

// --- the tasks table: failed first, paged and filtered by the API, downloads that carry the filter ---------------
const view = {outcome: "", directive: "", remark: ""};
let cursor = {which: "failed", offset: 0, position: 0}, back = [], next = null, asked = 0;
function query(extra) {
  const q = new URLSearchParams({directive: view.directive, remark: view.remark});
  for (const [k, v] of Object.entries(extra)) q.set(k, v);
  return q;
}
function taskRows(body, tasks, outcome) {
  for (const t of tasks) {
    const row = body.insertRow(); row.className = "row-" + outcome;
    cell(row, outcome); cell(row, t.remark); cell(row, t.total_retry_attempts, "num");
    cell(row, when(t.last_retry_timestamp)); cell(row, t.task_id);
    const pre = document.createElement("pre"); pre.textContent = JSON.stringify(t.task);
    row.insertCell().appendChild(pre);
  }
}
async function loadTasks() {
  const mine = ++asked, c = cursor; tasksAt = Date.now();
  const list = (which, offset, limit) => getJSON(base + "/tasks?" + query({outcome: which, offset, limit}));
  try {
    const first = await list(c.which, c.offset, pageSize), parts = [[c.which, first.tasks]];
    let after = first.next_offset === null ? null : {which: c.which, offset: first.next_offset};
    if (after === null && view.outcome === "" && c.which === "failed") {  // failed ran out: passed follow
      const room = pageSize - first.tasks.length;
      const second = await list("passed", 0, Math.max(room, 1));
      if (room > 0) {
        parts.push(["passed", second.tasks]);
        if (second.next_offset !== null) after = {which: "passed", offset: second.next_offset};
      } else if (second.tasks.length) after = {which: "passed", offset: 0};
    }
    if (mine !== asked) return;  // a newer page was asked for meanwhile
    const body = $("tasks").tBodies[0]; body.replaceChildren();
    let shown = 0;
    for (const [which, tasks] of parts) { taskRows(body, tasks, which); shown += tasks.length; }
    next = after === null ? null : {...after, position: c.position + shown};
    $("page-info").textContent = shown ? `tasks ${c.position + 1}-${c.position + shown}` : "no task matches";
    $("prev").disabled = back.length === 0; $("next").disabled = next === null;
  } catch (e) { $("error").textContent = String(e); }
}
function restart() {
  view.outcome = $("f-outcome").value; view.directive = $("f-directive").value; view.remark = $("f-remark").value;
  cursor = {which: view.outcome === "passed" ? "passed" : "failed", offset: 0, position: 0}; back = [];
  for (const format of ["csv", "jsonl"])
    $("export-" + format).href = base + "/tasks/export?" + query({format, outcome: view.outcome});
  loadTasks();
}
let typing = null;
$("f-outcome").onchange = restart; $("f-directive").onchange = restart;
$("f-remark").oninput = () => { clearTimeout(typing); typing = setTimeout(restart, 300); };
$("next").onclick = () => { if (next) { back.push(cursor); cursor = next; loadTasks(); } };
$("prev").onclick = () => { if (back.length) { cursor = back.pop(); loadTasks(); } };
restart(); start();
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


CHART = (
    "<style>svg.chart{width:45rem;max-width:100%;height:auto;display:block;margin:.25rem 0 .75rem}"
    "svg.chart text{font-size:11px;fill:#666}.axis{stroke:#999;fill:none}.line{fill:none;stroke-width:2}"
    ".line.passed{stroke:#3a3}.line.failed{stroke:#c33}.line.pending{stroke:#999;stroke-dasharray:4 3}"
    ".line.rate{stroke:#36c}.dot.passed{fill:#3a3}.dot.failed{fill:#c33}rect.retried{fill:#e90;opacity:.7}"
    ".mark{stroke:#888;stroke-dasharray:2 3}.legend span{margin-right:1rem}.swatch{display:inline-block;"
    "width:.8rem;height:.8rem;margin-right:.25rem;vertical-align:middle}</style>"
    "<h2>Over time</h2><p class='legend muted'><span><i class='swatch passed'></i>passed</span>"
    "<span><i class='swatch failed'></i>failed</span><span><i class='swatch' style='background:#999'></i>pending</span>"
    "<span><i class='swatch waiting'></i>retries scheduled</span></p>"
    "<p id='chart-empty' class='muted' hidden>No progress events of this batch are kept in the feed.</p>"
    "<svg id='chart-counts' class='chart' role='img' aria-label='passed and failed over time'></svg>"
    "<p class='legend muted'><span><i class='swatch' style='background:#36c'></i>tasks ended per second</span></p>"
    "<svg id='chart-rate' class='chart' role='img' aria-label='rate over time'></svg>"
)

TASKS = (
    "<h2>Report (failed first)</h2><p><label>outcome <select id='f-outcome'><option value=''>failed, then passed"
    "</option><option value='failed'>failed</option><option value='passed'>passed</option></select></label> "
    "<label>directive <select id='f-directive'><option value=''>any</option>"
    + "".join(f"<option value='{d}'>{d}</option>" for d in tasks.DIRECTIVES)
    + "</select></label> <label>remark contains <input id='f-remark' type='search' size='24'></label> "
    "<button id='prev' type='button' disabled>previous</button> <button id='next' type='button' disabled>next"
    "</button> <span id='page-info' class='muted'></span> download: <a id='export-csv' download>CSV</a> "
    "<a id='export-jsonl' download>JSON lines</a></p>"
    "<table id='tasks'><thead><tr><th>outcome</th><th>remark</th><th>retries</th><th>last attempt</th>"
    "<th>task id</th><th>task</th></tr></thead><tbody></tbody></table>"
)


# --- the JSON the pages poll: the API's own handlers, under the pages' login ---------------------------
for path, endpoint in (
    ("/api/serviceqs", read.list_serviceqs),
    ("/api/serviceqs/{name}/batches/{batch_id}/progress", read.get_progress),
    ("/api/serviceqs/{name}/batches/{batch_id}", read.get_batch),
    ("/api/serviceqs/{name}/batches/{batch_id}/tasks", tasks.list_tasks),
    ("/api/serviceqs/{name}/batches/{batch_id}/tasks/export", tasks.export_tasks),
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
