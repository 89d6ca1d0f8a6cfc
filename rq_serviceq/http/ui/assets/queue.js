// The queue page, live: its status line and batch table re-read when the progress feed says something
// happened (EventSource on events), else polled; a slow timer also catches what the feed does not carry
// (workers coming and going).  Everything is set as text.
(function () {
  const d = document.body.dataset;
  let stream = null, timer = null, busy = false, again = false;
  function setMode(mode) { d.live = mode; $("q-live").textContent = mode === "stream" ? "live" : "live: polling"; }
  function seconds(v) { return v === null ? "" : v.toFixed(v < 10 ? 3 : 1); }  // as markup.num
  function batchRow(body, b) {
    const row = body.insertRow(), a = document.createElement("a");
    a.href = encodeURIComponent(d.name) + "/batches/" + encodeURIComponent(b.batch_id); a.textContent = b.batch_id;
    row.insertCell().appendChild(a); cell(row, b.status);
    for (const k of ["total_submitted", "total_success", "total_failed", "total_pending"]) cell(row, b[k], "num");
    cell(row, seconds(b.batch_duration), "num");
  }
  async function refreshQueue() {
    if (busy) { again = true; return; }
    busy = true;
    try {
      const [q, list] = await Promise.all([getJSON(d.queue), getJSON(d.queue + "/batches?limit=50")]);
      const info = q.status_info;
      $("q-state").textContent = info.status;
      $("q-why").textContent = info.pause_reason ? " (" + info.pause_reason + ")" : "";
      $("q-workers").textContent = String(Object.keys(info.worker_reports).length);
      $("q-pending").textContent = String(info.pending_q_length);
      $("q-waiting").textContent = String(info.waiting_retries);
      const body = $("batches").tBodies[0]; body.replaceChildren();
      for (const b of list.batches) batchRow(body, b);
      $("error").textContent = "";
    } catch (e) { $("error").textContent = String(e); }
    busy = false;
    if (again) { again = false; soon(); }
  }
  function soon() { if (!timer) timer = setTimeout(() => { timer = null; refreshQueue(); }, 300); }
  function poll() { if (!stream) { refreshQueue(); setTimeout(poll, 3000); } }
  function openStream() {
    if (typeof EventSource === "undefined") { setMode("polling"); poll(); return; }
    const es = stream = new EventSource(d.events);
    es.onopen = () => setMode("stream");
    for (const type of FEED_EVENTS) es.addEventListener(type, soon);
    es.onerror = () => {  // refused, cut or closed: poll, and try the stream again later
      es.close(); stream = null; setMode("polling"); poll();
      setTimeout(() => { if (!stream) openStream(); }, 15000);
    };
  }
  openStream(); setInterval(refreshQueue, 10000);
})();
