"""The pieces of the pages' HTML: the frame every page shares, the controls, the panels.

The scripts and the style sheet live beside this module in ``assets/`` and are inlined in each
page: the pages load nothing but themselves and the JSON under ``/ui/api`` (no CDN, no second
request to authorise).  Task data is user data: the scripts only ever set ``textContent``.
"""

from __future__ import annotations

import html
from importlib import resources
from typing import Any

from fastapi.responses import HTMLResponse

from rq_serviceq.http.routes import tasks


def asset(name: str) -> str:
    """One file of ``assets/``, read once at import (they are part of the package, like the Lua scripts)."""
    return resources.files(__package__).joinpath("assets", name).read_text(encoding="utf-8")


STYLE = asset("base.css")
SCRIPT = asset("base.js")  # $, cell, when, getJSON: what every page's script uses
QUEUES_SCRIPT = asset("queues.js")
QUEUE_SCRIPT = asset("queue.js")  # a queue's page follows the feed
BATCH_SCRIPT = asset("batch.js")
# The controls of the queue and batch pages: the API's control routes under /ui/api (the pages' login), each a
# same-origin fetch() with a JSON body (auth.cross_site refuses any other kind there).  The result is kept
# across the reload that shows its effect, and shown as text only.
CONTROLS_SCRIPT = asset("controls.js")
WORKERS_SCRIPT = asset("workers.js")


def page(title: str, body: str, script: str = "", data: dict[str, str] | None = None, depth: int = 0) -> HTMLResponse:
    """A page: ``data`` becomes the body's data- attributes (where its script finds its API), ``depth``
    how many path segments below /ui/ it is (its links are relative, so a proxy prefix keeps working)."""
    attrs = "".join(f' data-{k}="{html.escape(v)}"' for k, v in (data or {}).items())
    home = "../" * depth or "./"
    return HTMLResponse(
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)} - rq-serviceq</title><style>{STYLE}</style></head>"
        f"<body{attrs}><nav><a href='{home}'>service queues</a><a href='{home}../rq/'>rq-dashboard</a>"
        f"<a href='{home}../docs'>API docs</a></nav><h1>{html.escape(title)}</h1>{body}"
        f"<p id='error' class='muted'></p><script>{SCRIPT}{script}</script></body></html>"
    )


def num(value: Any) -> str:
    """A duration in seconds as the pages show it: milliseconds still visible under 10 s (queue.js: seconds())."""
    if value is None:
        return ""
    return f"{value:.3f}" if value < 10 else f"{value:.1f}"


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


WORKERS_PANEL = (
    "<h2>Workers</h2><p id='workers-summary' class='muted'></p>"
    "<table id='workers'><thead><tr><th>worker</th><th>machine</th><th>pid</th><th>state</th><th>current task</th>"
    "<th>passed</th><th>failed</th><th>last seen</th><th>supervisor</th></tr></thead><tbody></tbody></table>"
    "<p id='no-workers' class='muted' hidden>No worker is registered on this service queue: run "
    "<code>rq-serviceq worker NAME</code> (a supervisor) or <code>rq worker</code> on its pending queue.</p>"
    "<table id='supervisors' hidden><thead><tr><th>supervisor</th><th>machine</th><th>pid</th>"
    "<th>share of worker_count</th></tr></thead><tbody></tbody></table>"
)


CHART = (
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
