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
