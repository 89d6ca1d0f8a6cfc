"""Reading and steering service queues: list, status, batches, report, config and the controls."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from typing import Any

import click
import redis

from rq_serviceq import configure
from rq_serviceq.cli._common import (
    CliError,
    connection,
    duration,
    emit_json,
    json_option,
    name_argument,
    open_queue,
    table,
    unreachable,
    url_option,
    when,
)
from rq_serviceq.models import BatchSummary, BreakerConfig, QueueFigures, StatusInfo
from rq_serviceq.serviceq import ServiceQ


@click.command("list")
@url_option
@json_option
def list_queues(url: str | None, as_json: bool) -> None:
    """Every service queue on the Redis (and on each server RQ_SERVICEQ_ROUTES names), with its status and
    current batch."""
    routed = {} if url else ServiceQ.routed_servers()  # --url: that one server alone
    conn = connection(url)
    try:
        rows = [_queue_row(figures) for figures in ServiceQ.figures(conn, routed)]
    except redis.exceptions.ConnectionError as exc:
        if routed:  # any of several servers may be the one down: redis-py's own text names it
            raise
        raise unreachable(conn, exc) from None
    if as_json:
        emit_json(rows)
        return
    if not rows:
        click.echo("no service queues on this Redis")
        return
    headers = ("NAME", "STATUS", "BATCH", "PASSED", "FAILED", "PENDING", "QUEUED", "RETRYING", "WORKERS")
    keys = ("name", "status", "batch_id", "passed", "failed", "pending", "queued", "waiting_retries", "workers")
    table(headers, [[row[key] for key in keys] for row in rows])


def _queue_row(f: QueueFigures) -> dict[str, Any]:
    return {
        "name": f.name,
        "status": f.status,
        "batch_id": f.batch_id,
        **{field: f.batch.get(field, 0) for field in ("passed", "failed", "pending")},
        "queued": f.queue_depth,
        "waiting_retries": f.waiting_retries,
        "workers": f.live_workers,
    }


@click.command()
@name_argument
@url_option
@json_option
def status(name: str, url: str | None, as_json: bool) -> None:
    """The current batch's progress, the queues' lengths and the workers."""
    sq = open_queue(name, url)
    info = sq.get_status_info() | {"worker_count": sq.settings.worker_count}
    if as_json:
        emit_json(info)
        return
    click.echo(f"service queue  {name}  ({info['status']})")
    if info["pause_reason"]:
        click.echo(f"paused         {info['pause_reason']}")
    click.echo(f"batch          {info['batch_id'] or '-'}  started {when(info['start_time'])}", nl=False)
    ended = info["end_time"]
    click.echo(f"  ended {when(ended)}" if ended else f"  running {duration(info['batch_duration'])}")
    click.echo(
        f"tasks          submitted {info['total_submitted']}  passed {info['total_success']}  "
        f"failed {info['total_failed']}  pending {info['total_pending']}"
    )
    click.echo(
        f"queues         queued {info['pending_q_length'] - info['waiting_retries']}  "
        f"waiting retries {info['waiting_retries']}  eta {duration(info['eta_seconds'])}"
    )
    budget = StatusInfo.model_validate(info).start_budget()
    if budget:
        click.echo(f"start budget   {budget}")
    workers = info["worker_reports"]
    click.echo(f"workers        {len(workers)} live (worker_count {info['worker_count']})")
    if workers:
        rows = [
            (w["id"], w["status"], w["success_count"], w["failed_count"], duration(w["uptime"]))
            for w in workers.values()
        ]
        table(("WORKER", "STATUS", "PASSED", "FAILED", "UPTIME"), rows, indent="  ")


@click.command()
@name_argument
@click.option("--limit", default=20, show_default=True, type=click.IntRange(min=1), help="newest batches to show")
@url_option
@json_option
def batches(name: str, limit: int, url: str | None, as_json: bool) -> None:
    """The batch history, newest first (reports are kept for the queue's report_ttl)."""
    sq = open_queue(name, url)
    summaries = sq.batch_history(0, limit)  # expired batches, not yet dropped from the history, are left out
    if as_json:
        emit_json([s.model_dump(exclude={"passed_tasks", "failed_tasks", "pending_tasks"}) for s in summaries])
        return
    if not summaries:
        click.echo(f"service queue {name!r} has had no batch yet")
        return
    rows = [
        (s.batch_id, s.status, when(s.start_time), duration(s.batch_duration), s.total_submitted, s.total_success,
         s.total_failed, s.total_pending)
        for s in summaries
    ]  # fmt: skip
    table(("BATCH", "STATUS", "STARTED", "DURATION", "SUBMITTED", "PASSED", "FAILED", "PENDING"), rows)


@click.command("report")
@name_argument
@click.argument("batch_id", required=False)
@click.option("--failed-only", is_flag=True, help="list failed tasks only")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(min=0),
              help="tasks listed per kind in text (0: all); --json always lists all")  # fmt: skip
@url_option
@json_option
def report_command(
    name: str, batch_id: str | None, failed_only: bool, limit: int, url: str | None, as_json: bool
) -> None:
    """A batch's report: the current (or last) batch, or BATCH_ID (see `batches`)."""
    sq = open_queue(name, url)
    batch_id = batch_id or sq.current_batch_id()
    if batch_id is None:
        raise CliError(f"service queue {name!r} has had no batch yet")
    summary = sq.batch_summary(batch_id)
    kinds = ("failed",) if failed_only else ("passed", "failed")
    if as_json:
        _stream_json_report(sq, summary, kinds)
        return
    _text_report(sq, summary, kinds, limit)


def _stream_json_report(sq: ServiceQ, summary: BatchSummary, kinds: tuple[str, ...]) -> None:
    """The report as ``get_batch_report`` returns it, task lists streamed a page at a time, so a
    million-task batch is printed whole without being held in memory."""
    head = summary.model_dump(exclude={"passed_tasks", "failed_tasks", "pending_tasks"}) | {"tasks_inline": True}
    out = sys.stdout
    out.write(json.dumps(head, default=str)[:-1])
    for which in ("passed", "failed"):
        out.write(f', "{which}_tasks": [')
        tasks = sq.iter_tasks(summary.batch_id, which) if which in kinds else iter(())
        for i, task in enumerate(tasks):
            out.write(("," if i else "") + task.model_dump_json())
        out.write("]")
    out.write(', "pending_tasks": []}\n')


def _text_report(sq: ServiceQ, s: BatchSummary, kinds: tuple[str, ...], limit: int) -> None:
    click.echo(f"batch     {s.batch_id}  ({s.status})  of {s.serviceq_name}")
    click.echo(f"time      {when(s.start_time)} -> {when(s.end_time)}  ({duration(s.batch_duration)})")
    click.echo(
        f"tasks     submitted {s.total_submitted}  passed {s.total_success}  failed {s.total_failed}  "
        f"pending {s.total_pending}"
    )
    if s.end_callback:
        click.echo(f"callback  {s.end_callback}")
    for which in reversed(kinds):  # failed first: what an operator looks for
        total = s.total_failed if which == "failed" else s.total_success
        click.echo(f"\n{which} tasks ({total})")
        rows = list(_first(sq.iter_tasks(s.batch_id, which), limit))
        if rows:
            table(("TASK", "RETRIES", "REMARK", "TASK DATA"), [_task_row(t) for t in rows], indent="  ")
        if limit and total > len(rows):
            click.echo(f"  ... and {total - len(rows)} more (--limit 0 lists all, --json prints all)")


def _first(items: Iterator[Any], limit: int) -> Iterator[Any]:
    for i, item in enumerate(items):
        if limit and i >= limit:
            return
        yield item


def _task_row(task: Any) -> tuple[Any, ...]:
    data = json.dumps(task.task)
    return task.task_id, task.total_retry_attempts, task.remark, data if len(data) <= 60 else data[:57] + "..."


# --- config -------------------------------------------------------------------------------------
_SECONDS = click.FloatRange(min=0)
# Options that take 'none' for None, each read as its kind: (option, kind, what a value must be).
_NONE_OR = (("task_timeout", float, "a number of seconds"), ("rate_limit", float, "a number"),
            ("rate_burst", int, "a number"))  # fmt: skip


@click.command()
@name_argument
@click.option("--worker-count", type=int, help="workers across all machines (0-1000)")
@click.option("--waiting-period", type=float, help="seconds a worker waits before its first task")
@click.option("--resting-period", type=float, help="seconds between tasks, and before a first retry")
@click.option("--auto-start/--no-auto-start", default=None, help="a push starts workers on the pushing machine")
@click.option("--concurrency", type=int, help="tasks one worker process runs at once (1-1024)")
@click.option(
    "--rate-limit", metavar="PER_SECOND|none", help="task starts a second across all workers ('none': no limit)"
)
@click.option(
    "--rate-burst", metavar="N|none", help="starts allowed at once after an idle spell ('none': a second's worth)"
)
@click.option("--durable-replicas", type=int, help="replicas a push and a settle wait for (WAIT; 0: none)")
@click.option("--durable-timeout", type=float, help="seconds a push or a settle waits for them at most")
@click.option("--retry-limit", type=int, help="retries after the first try (0-1000)")
@click.option("--loop-backoff", type=float, help="seconds added to each further retry's wait")
@click.option("--report-ttl", type=int, help="seconds a finished batch's report is kept")
@click.option("--report-inline-limit", type=int, help="most tasks a report lists inline")
@click.option("--result-ttl", type=int, help="seconds an attempt's RQ Result entry is kept (0: none)")
@click.option("--task-timeout", metavar="SECONDS|none", help="time limit of one attempt ('none': no limit)")
@click.option("--callback-timeout", type=float, help="time limit of a batch callback")
@click.option("--max-task-bytes", type=int, help="largest task accepted, in bytes of JSON")
@click.option("--task-function", metavar="PATH", help="import path of the task function (module.function)")
@click.option("--batch-begin-callback", metavar="PATH", help="import path of the batch-begin callback")
@click.option("--batch-end-callback", metavar="PATH", help="import path of the batch-end callback")
@click.option("--worker-push-update-callback", metavar="PATH", help="import path of the per-attempt callback")
@click.option("--schedule", metavar="CRON|none", help="work the queue on a cron schedule ('none': always)")
@click.option("--verbose/--silent", "verbose", default=None, help="workers print the seed's log lines")
@click.option("--create", is_flag=True, help="create the service queue if it does not exist")
@url_option
@json_option
def config(name: str, url: str | None, as_json: bool, create: bool, **options: Any) -> None:
    """Show a service queue's settings, changing those given first (all or none: each is checked first)."""
    sq = open_queue(name, url, create=create)
    values = {key: value for key, value in options.items() if value is not None}
    for option, kind, what in _NONE_OR:
        if option in values:
            values[option] = _none_or(f"--{option.replace('_', '-')}", values[option], kind, what)
    if "schedule" in values and values["schedule"].lower() == "none":
        values["schedule"] = None
    if values:
        _import_from_cwd()
        configure.apply(sq, values)
    described = sq.describe()
    if as_json:
        emit_json(described)
        return
    table(("SETTING", "VALUE"), sorted(described.items()))


def _none_or(option: str, value: str, kind: type[float] | type[int], what: str) -> float | int | None:
    if value.lower() == "none":
        return None
    try:
        return kind(value)
    except ValueError:
        raise CliError(f"{option}: {value!r} is neither {what} nor 'none'") from None


def _import_from_cwd() -> None:
    """Paths are checked by importing them; like `rq worker`, look in the working directory too."""
    import os
    import sys

    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())


# --- controls -------------------------------------------------------------------------------------
@click.command()
@name_argument
@click.option("--wait", is_flag=True, help="wait for the workers to finish the batch and exit")
@click.option("--timeout", type=_SECONDS, default=None, help="with --wait: seconds to wait at most")
@url_option
@json_option
def start(name: str, wait: bool, timeout: float | None, url: str | None, as_json: bool) -> None:
    """Start missing worker processes on this machine, up to worker_count (they exit when the batch is done)."""
    sq = open_queue(name, url)
    started = sq.start()
    if wait:
        sq.join(timeout)
    _said(as_json, {"queue": name, "started": started}, f"started {started} worker process(es) for {name}")


@click.command()
@name_argument
@click.option("--timeout", type=_SECONDS, default=5.0, show_default=True,
              help="seconds to wait for busy workers to acknowledge")  # fmt: skip
@url_option
@json_option
def pause(name: str, timeout: float, url: str | None, as_json: bool) -> None:
    """No task starts anywhere until `resume`; running ones finish, waiting retries wait."""
    open_queue(name, url).pause(timeout)
    _said(as_json, {"queue": name, "status": "PAUSED"}, f"{name} paused")


@click.command()
@name_argument
@url_option
@json_option
def resume(name: str, url: str | None, as_json: bool) -> None:
    """Let workers take tasks again, where they left off."""
    sq = open_queue(name, url)
    sq.resume()
    _said(as_json, {"queue": name, "status": sq.get_status()}, f"{name} resumed ({sq.get_status()})")


@click.command()
@name_argument
@click.option("--timeout", type=_SECONDS, default=30.0, show_default=True,
              help="seconds to wait for running tasks to finish")  # fmt: skip
@url_option
@json_option
def stop(name: str, timeout: float, url: str | None, as_json: bool) -> None:
    """End the active batch: queued and waiting tasks fail with STOPPED, running ones finish."""
    batch_id = open_queue(name, url).stop(timeout)
    text = f"stopped batch {batch_id} of {name}" if batch_id else f"{name} has no active batch"
    _said(as_json, {"queue": name, "stopped_batch": batch_id}, text)


@click.command()
@name_argument
@click.option("--failure-ratio", type=float, help="pause once failed/ended tasks of the batch reach this (0-1]")
@click.option("--min-tasks", type=int, help="with --failure-ratio: tasks ended before it counts (default 20)")
@click.option("--consecutive-failures", type=int, help="pause once this many attempts in a row failed")
@click.option("--off", is_flag=True, help="turn the breaker off")
@url_option
@json_option
def breaker(
    name: str,
    failure_ratio: float | None,
    min_tasks: int | None,
    consecutive_failures: int | None,
    off: bool,
    url: str | None,
    as_json: bool,
) -> None:
    """Show the breaker, or set it: the queue pauses itself when its batch fails too much (`resume` goes on).

    The options given replace the whole breaker (one left out is off)."""
    sq = open_queue(name, url)
    given = (failure_ratio, min_tasks, consecutive_failures)
    if off and any(value is not None for value in given):
        raise CliError("--off turns the breaker off: give it alone")
    if off or any(value is not None for value in given):
        sq.set_breaker(failure_ratio=failure_ratio, min_tasks=min_tasks, consecutive_failures=consecutive_failures)
    config = sq.breaker()
    _said(as_json, {"queue": name, **config.model_dump()}, f"breaker of {name}: {_breaker_text(config)}")


def _breaker_text(config: BreakerConfig) -> str:
    if not config.is_on():
        return "off"
    parts = []
    if config.failure_ratio is not None:
        parts.append(f"{config.failure_ratio:g} of at least {config.min_tasks} ended tasks failed")
    if config.consecutive_failures is not None:
        parts.append(f"{config.consecutive_failures} attempts in a row failed")
    return "pauses when " + " or ".join(parts)


def _not_negative(ctx: click.Context, param: click.Parameter, count: int) -> int:
    """Checked before the queue is opened, as a typo in the name would be; the upper bound is the setting's."""
    if count < 0:
        raise CliError(f"worker_count must be 0 or more (got {count}); 0 stops every worker")
    return count


@click.command(context_settings={"ignore_unknown_options": True})  # so `scale q -3` reaches the check
@name_argument
@click.argument("worker_count", type=int, callback=_not_negative)
@url_option
@json_option
def scale(name: str, worker_count: int, url: str | None, as_json: bool) -> None:
    """Set worker_count (the total across machines); supervisors follow within a second."""
    open_queue(name, url).scale(worker_count)
    _said(as_json, {"queue": name, "worker_count": worker_count}, f"{name} scaled to {worker_count} worker(s)")


@click.command("requeue-failed")
@name_argument
@click.argument("batch_id", required=False)
@url_option
@json_option
def requeue_failed(name: str, batch_id: str | None, url: str | None, as_json: bool) -> None:
    """Push a batch's failed tasks again as new tasks (the current or last batch, or BATCH_ID)."""
    count = open_queue(name, url).requeue_failed(batch_id)
    _said(as_json, {"queue": name, "requeued": count}, f"requeued {count} failed task(s) of {name}")


@click.command()
@name_argument
@click.option("--yes", is_flag=True, help="do not ask for confirmation")
@url_option
@json_option
def delete(name: str, yes: bool, url: str | None, as_json: bool) -> None:
    """Remove the service queue from Redis: tasks, batches, reports and settings."""
    sq = open_queue(name, url)
    if not yes and not click.confirm(f"delete service queue {name!r} and all its tasks and reports?", default=False):
        raise CliError("not deleted (pass --yes to skip the question)")
    sq.delete()
    _said(as_json, {"queue": name, "deleted": True}, f"deleted {name}")


def _said(as_json: bool, data: dict[str, Any], text: str) -> None:
    if as_json:
        emit_json(data)
    else:
        click.echo(text)


COMMANDS = [list_queues, status, batches, report_command, config, start, pause, resume, stop, scale, requeue_failed,
            delete, breaker]  # fmt: skip
