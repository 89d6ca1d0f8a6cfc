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
