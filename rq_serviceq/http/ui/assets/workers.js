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
