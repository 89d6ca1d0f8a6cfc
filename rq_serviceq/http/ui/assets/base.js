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
// Every type the progress feed's events have (BatchEvent.type), and "message": what the stream sends for a type
// that is not one word (routes/events.py).  A page listens for them all.
const FEED_EVENTS = ["opened", "progress", "paused", "resumed", "stopped", "throttled", "breaker", "ended", "finished",
                     "message"];
