"""rq-dashboard 0.9 set up for rq-serviceq's tasks: ``deploy/dashboard.py`` and the HTTP service's ``/rq`` share it.

ServiceQ jobs are JSON (no pickle is ever read from Redis).  rq-dashboard has one
process-wide serializer setting, ``rq_dashboard.web.config.serializer``, which
:func:`install` sets to JSON; but some of its views ignore that setting, and its job page
writes text into the page as HTML.  :func:`install` replaces those views on the one app it
is given (``app.view_functions``: other apps in the process, and the shared blueprint, are
untouched), keeping what they show and answer:

- **The job page, Delete and Empty** fetch the job with pickle, which loads its ``meta``
  with ``pickle.loads``: whoever could write a job hash in Redis ran code in the dashboard's
  process (on ``/rq``, the HTTP service's) the moment an operator opened that task's page.
  Here they fetch JSON.
- **Requeue and Requeue All** call ``requeue_job(id, connection)``, which reads the job with
  pickle and saves it back: its JSON ``meta`` becomes a pickle of ``{"unserialized": ...}``,
  and that task's job page answers 500 from then on.  Here they requeue with the JSON
  serializer; a task someone else requeued first is skipped, not a 500.
- **The worker list** reads each worker's current job with pickle (``Worker.all(connection)``),
  so one busy worker makes the whole list answer 500.  Here it reads JSON, and the current
  job's line shows the task's description (``myapp.tasks.send({...})``) rather than RQ's call
  string, which names the placeholder function every ServiceQ job carries.
- **The data every page renders** (``/N/data/queues.json``, ``workers.json``, ``jobs/...json``,
  ``job/ID.json``): rq-dashboard's pages build their rows in the browser with underscore's
  ``<%= %>``, which writes a value into the page as raw HTML, some inside an attribute (a job
  row's ``data-job-id``, a worker's ``title``).  Queue and worker names, a worker's queue list,
  job ids, descriptions, origins, remarks and exception text all come from Redis: a remark
  ``NO_RETRY | got <html> back`` showed as ``NO_RETRY | got  back``, and a queue named
  ``<img src=x onerror=...>`` ran script in the operator's browser, with the operator's login
  to this origin (on ``/rq`` of the HTTP service, that is the whole API).  Here every string of
  those answers is HTML-escaped (quotes too), but the few the template escapes itself, so each
  page shows the text exactly; the JSON carries them escaped (the pages are its only reader).

Requeue is safe for the batch ledger: a failed task put back on ``NAME-pending`` is adopted
by the next claim as a new task ``<id>-r<n>`` of the active batch (or of a new one), counted
once; its old batch's report does not change, and a task is requeued once only
(``claim.lua``, ``adopt_requeued``).

Requeue (and delete, empty, compact) change state, and a browser sends its login for a site
(HTTP Basic, cached) with any request to it, also one that another site's page makes it send
(a link, an image, a form): cross-site request forgery.  rq-dashboard answers ``GET
/requeue/QUEUE`` too, so one link would have requeued every failed task.  So these views take
only POST with ``X-Requested-With: XMLHttpRequest``: rq-dashboard's own buttons send it
(jQuery adds it), and another site's page cannot make a browser send it to this one
(a custom header needs a CORS preflight, which nothing here answers).
"""

from __future__ import annotations

import html
import json
from collections.abc import Callable
from functools import wraps
from typing import Any

from flask import Flask, Response, abort, current_app, jsonify, make_response, render_template, request, url_for
from redis import Redis
from rq import Worker
from rq.exceptions import DeserializationError, InvalidJobOperation, NoSuchJobError
from rq.job import Job
from rq.queue import Queue
from rq.registry import (
    BaseRegistry,
    CanceledJobRegistry,
    DeferredJobRegistry,
    FailedJobRegistry,
    FinishedJobRegistry,
    ScheduledJobRegistry,
    StartedJobRegistry,
)
from rq.serializers import JSONSerializer
from rq.worker import BaseWorker

from rq_serviceq.job import DESCRIPTION_LIMIT, ServiceQJob, description_of
from rq_serviceq.serviceq import ServiceQ
from rq_serviceq.task.stored import PLACEHOLDER_FUNC

BLUEPRINT = "rq_dashboard"
EXTENSION = "rq_serviceq.dashboard"  # app.extensions key: installed on this app
REQUEUE_ENDPOINTS = frozenset({f"{BLUEPRINT}.requeue_job_view", f"{BLUEPRINT}.requeue_all"})
WRITE_ENDPOINTS = REQUEUE_ENDPOINTS | {
    f"{BLUEPRINT}.delete_job_view",
    f"{BLUEPRINT}.empty_queue",
    f"{BLUEPRINT}.compact_queue",
}
# The JSON views whose answers rq-dashboard's pages write into HTML, and the keys whose values their templates
# escape themselves (a job row's description and exc_info through jQuery's text(), a current job's description
# through ``<%- %>``): every other string is escaped here, so that no value from Redis is markup.
RENDERED_JSON: dict[str, frozenset[str]] = {
    f"{BLUEPRINT}.list_queues": frozenset(),
    f"{BLUEPRINT}.list_workers": frozenset({"description"}),
    f"{BLUEPRINT}.list_jobs": frozenset({"description", "exc_info"}),
    f"{BLUEPRINT}.job_info": frozenset(),
}
NO_STORE = {"Cache-Control": "no-store"}
REGISTRIES: dict[str, type[BaseRegistry]] = {
    "failed": FailedJobRegistry,
    "deferred": DeferredJobRegistry,
    "started": StartedJobRegistry,
    "finished": FinishedJobRegistry,
    "canceled": CanceledJobRegistry,
    "scheduled": ScheduledJobRegistry,
}
View = Callable[..., Any]


def install(app: Flask) -> None:
    """Set rq-dashboard (registered on ``app`` as the blueprint ``rq_dashboard``) up for JSON jobs.

    Call it after ``app.register_blueprint(rq_dashboard.blueprint, ...)``; a second call on the same app does
    nothing (it would escape the job page's text twice).
    """
    import rq_dashboard.web  # type: ignore[import-untyped]

    if app.extensions.setdefault(EXTENSION, False):
        return
    app.extensions[EXTENSION] = True

    # Process-wide in rq-dashboard: do not mix pickle and JSON queues in one dashboard process.
    rq_dashboard.web.config.serializer = JSONSerializer
    views = app.view_functions
    views[f"{BLUEPRINT}.job_view"] = job_view
    views[f"{BLUEPRINT}.delete_job_view"] = delete_job_view
    views[f"{BLUEPRINT}.empty_queue"] = empty_queue
    views[f"{BLUEPRINT}.requeue_job_view"] = requeue_job_view
    views[f"{BLUEPRINT}.requeue_all"] = requeue_all
    views[f"{BLUEPRINT}.list_workers"] = list_workers
    views[f"{BLUEPRINT}.list_jobs"] = _described(views[f"{BLUEPRINT}.list_jobs"])
    views[f"{BLUEPRINT}.job_info"] = _described(views[f"{BLUEPRINT}.job_info"])
    for endpoint, escaped_by_page in RENDERED_JSON.items():
        views[endpoint] = _escaped(views[endpoint], escaped_by_page)
    app.before_request(_refuse_cross_site_writes)


def _refuse_cross_site_writes() -> Response | None:
    if request.endpoint not in WRITE_ENDPOINTS:
        return None
    if request.method == "POST" and request.headers.get("X-Requested-With") == "XMLHttpRequest":
        return None
    return Response(
        "Refused: the dashboard's actions take a POST from its own buttons (X-Requested-With: XMLHttpRequest), "
        "so that another site's page cannot make a logged-in browser send them.\n",
        403,
        {"Content-Type": "text/plain; charset=utf-8"},
    )


def _conn() -> Redis:
    conn: Redis = current_app.redis_conn  # type: ignore[attr-defined]  # set by rq-dashboard's before_request
    return conn


def _fetch(job_id: str) -> Job:
    return ServiceQJob.fetch(job_id, connection=_conn())


def job_view(instance_number: int, job_id: str) -> Any:
    """rq-dashboard's job page (the same template and context), the job fetched as JSON; 404 for no such job."""
    import rq_dashboard.web as web

    try:
        job = _fetch(job_id)
    except NoSuchJobError:
        abort(404)
    response = make_response(
        render_template(
            "rq_dashboard/job.html",
            current_instance=instance_number,
            instance_list=web.escape_format_instance_list(current_app.config.get("RQ_DASHBOARD_REDIS_URL")),
            id=job.id,
            rq_url_prefix=url_for(f"{BLUEPRINT}.queues_overview"),
            rq_dashboard_version=web.rq_dashboard_version,
            rq_version=web.rq_version,
            deprecation_options_usage=current_app.config.get("DEPRECATED_OPTIONS", False),
            enable_delete=not current_app.config.get("RQ_DASHBOARD_DISABLE_DELETE"),
        )
    )
    response.headers.set("Cache-Control", "no-store")
    return response


def _delete_disabled() -> bool:
    return bool(current_app.config.get("RQ_DASHBOARD_DISABLE_DELETE"))


def _delete(job_id: str, registry: BaseRegistry | None = None) -> bool:
    try:
        _fetch(job_id).delete()
    except NoSuchJobError:
        if registry is not None:
            registry.remove(job_id)
        return False
    return True


def delete_job_view(job_id: str) -> Any:
    """rq-dashboard's Delete (answers DISABLED when delete is off), the job fetched as JSON."""
    if _delete_disabled():
        return jsonify(status="DISABLED"), 200, NO_STORE
    return jsonify(status="OK" if _delete(job_id) else "ERROR"), 200, NO_STORE


def empty_queue(queue_name: str, registry_name: str) -> Any:
    """rq-dashboard's Empty (answers DISABLED when delete is off), the jobs fetched as JSON."""
    if _delete_disabled():
        return jsonify(status="DISABLED"), 200, NO_STORE
    if registry_name == "queued":
        Queue(queue_name, connection=_conn(), serializer=JSONSerializer).empty()
    elif registry_name in REGISTRIES:
        registry = REGISTRIES[registry_name](queue_name, connection=_conn(), serializer=JSONSerializer)
        for job_id in registry.get_job_ids(cleanup=False):
            _delete(job_id, registry)
    return jsonify(status="OK"), 200, NO_STORE


class Unrequeueable(Exception):
    """A task RQ's requeue would drop: its meta is not JSON, so saving it back fails after it left the registry."""


def _requeue(job_id: str) -> None:
    job = _fetch(job_id)
    try:
        JSONSerializer.dumps(job.meta)
    except (TypeError, ValueError) as exc:
        raise Unrequeueable(f"task {job_id}'s meta is not JSON; requeue it with rq-serviceq requeue-failed") from exc
    job.requeue()


def requeue_job_view(job_id: str) -> Any:
    """rq-dashboard's Requeue, reading and saving the job as JSON."""
    try:
        _requeue(job_id)
    except NoSuchJobError:
        return jsonify(status="ERROR", message=f"no task {job_id}"), 404, NO_STORE
    except InvalidJobOperation:  # not (or no longer) in the failed registry: requeued by someone else first
        return jsonify(status="ERROR", message=f"task {job_id} is not in the failed registry"), 409, NO_STORE
    except Unrequeueable as exc:
        return jsonify(status="ERROR", message=str(exc)), 422, NO_STORE
    return jsonify(status="OK"), 200, NO_STORE


def requeue_all(queue_name: str) -> Any:
    """rq-dashboard's Requeue All, reading and saving jobs as JSON; tasks requeued meanwhile, or not requeueable,
    are skipped."""
    registry = FailedJobRegistry(queue_name, connection=_conn(), serializer=JSONSerializer)
    count = 0
    for job_id in registry.get_job_ids(cleanup=False):
        try:
            _requeue(job_id)
        except (NoSuchJobError, InvalidJobOperation, Unrequeueable):
            continue
        count += 1
    return jsonify(status="OK", count=count), 200, NO_STORE


def list_workers(instance_number: int) -> Any:
    """rq-dashboard's worker list (the same fields), reading the current jobs as JSON."""
    labels: dict[str, str] = {}  # each service queue's task function, read once for the list
    workers = [
        {
            "name": worker.name,
            "pid": worker.pid,
            "queues": [queue.name for queue in worker.queues],
            "state": str(worker.get_state()),
            "current_job": _current_job(worker, labels),
            "last_heartbeat": worker.last_heartbeat,
            "birth_date": worker.birth_date,
            "successful_job_count": worker.successful_job_count,
            "failed_job_count": worker.failed_job_count,
            "total_working_time": worker.total_working_time,
            "version": getattr(worker, "version", ""),
            "python_version": getattr(worker, "python_version", ""),
        }
        for worker in Worker.all(connection=_conn(), serializer=JSONSerializer)
    ]
    workers.sort(key=lambda w: (w["state"], w["queues"], w["name"]))
    return jsonify(workers=workers), 200, NO_STORE


def _current_job(worker: BaseWorker, labels: dict[str, str]) -> dict[str, Any] | str:
    job_id = worker.get_current_job_id()
    if job_id is None:
        return "idle"
    try:
        job = _fetch(job_id)
    except (NoSuchJobError, ValueError):  # ValueError: not an id RQ fetches (letters, digits, _ and - only)
        return {"job_id": job_id, "description": "", "created_at": None, "call_string": job_id}
    try:
        description = description_of(job, _label(job.origin, labels), _description_limit())
    except DeserializationError:
        description = job_id
    return {
        "job_id": job.id,
        "description": description,  # the page escapes this one (the row's title), _escaped the others
        "created_at": job.created_at.isoformat() if job.created_at else None,
        "call_string": description or "",
    }


def _described(view: View) -> View:
    """rq-dashboard's job list or job data, with what a task keeps no copy of answered from its hash: a
    description (``myapp.tasks.send({...})``, from the service queue's task function now), and for a passed
    task its remark as the result and its ServiceQ meta (``ServiceQJob``, ``docs/rq.md``)."""

    def described(data: dict[str, Any]) -> dict[str, Any]:
        rows = data.get("jobs") if "jobs" in data else [data]
        if isinstance(rows, list):
            _fill(rows)
        return data

    return _rewritten(view, described)


def _fill(rows: list[Any]) -> None:
    wanted = [row for row in rows if isinstance(row, dict) and isinstance(row.get("id"), str)]
    jobs = ServiceQJob.fetch_many([row["id"] for row in wanted], connection=_conn())
    labels: dict[str, str] = {}
    limit = _description_limit()
    for row, job in zip(wanted, jobs, strict=True):
        if job is None:
            continue
        if _placeholder(row.get("description")):
            row["description"] = description_of(job, _label(job.origin, labels), limit)
        if "result" in row and row["result"] is None:
            row["result"] = job.return_value()
        if row.get("metadata") == "{}" and job.meta:
            row["metadata"] = json.dumps(job.meta)


def _description_limit() -> int | None:
    """How much of a task a description shows: all of it with rq-dashboard's ``RQ_DASHBOARD_SHOW_FULL_ARGS``."""
    return None if current_app.config.get("RQ_DASHBOARD_SHOW_FULL_ARGS") else DESCRIPTION_LIMIT


def _placeholder(description: Any) -> bool:
    """Whether rq-dashboard's description of a row is none of the task's: empty (a push stores none), or,
    with ``RQ_DASHBOARD_SHOW_FULL_ARGS``, RQ's call string, which names the placeholder every task carries."""
    return not description or (isinstance(description, str) and description.startswith(PLACEHOLDER_FUNC + "("))


def _label(origin: str, labels: dict[str, str]) -> str:
    """The task function of the service queue ``origin`` (``NAME-pending``) belongs to, read once per answer."""
    if origin not in labels:
        try:
            labels[origin] = ServiceQ.open(origin.removesuffix("-pending"), _conn()).settings.task_function or ""
        except (LookupError, ValueError):
            labels[origin] = ""
    return labels[origin] or "(no task function set)"


def _escaped(view: View, escaped_by_page: frozenset[str]) -> View:
    """rq-dashboard's JSON view, every string in its answer HTML-escaped but those under ``escaped_by_page``."""
    return _rewritten(view, lambda data: _escape(data, escaped_by_page))


def _rewritten(view: View, rewrite: Callable[[dict[str, Any]], Any]) -> View:
    """rq-dashboard's JSON view with its answer (an object, status 200) passed through ``rewrite``."""

    @wraps(view)
    def rewritten(**kwargs: Any) -> Any:
        response = current_app.make_response(view(**kwargs))
        data = response.get_json(silent=True)
        if response.status_code != 200 or not isinstance(data, dict):
            return response
        return jsonify(rewrite(data)), 200, NO_STORE

    return rewritten


def _escape(value: Any, keep: frozenset[str]) -> Any:
    """Escaped for HTML text and quoted attributes alike (the templates write values into both)."""
    if isinstance(value, str):
        return html.escape(value)
    if isinstance(value, list):
        return [_escape(v, keep) for v in value]
    if isinstance(value, dict):
        return {html.escape(str(k)): v if k in keep else _escape(v, keep) for k, v in value.items()}
    return value
