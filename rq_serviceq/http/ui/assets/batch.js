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
  for (const type of FEED_EVENTS) es.addEventListener(type, onEvent);
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
