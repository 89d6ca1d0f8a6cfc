"""worker: running a task function and reading its verdict.

Kept apart from the worker loop so the same code serves a worker process,
``work_once`` in the caller's process, and tests that drain a queue
synchronously.
"""

from __future__ import annotations

import contextvars
from typing import Any

from .callbacks import resolve
from .job import ServiceQJob
from .models import Settings
from .remarks import Outcome, Verdict, outcome_of_exception, outcome_of_return

_current: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar("rq_serviceq_qtask", default=None)


def current_qtask() -> dict[str, Any] | None:
    """The Qtask being worked on, for a task function that wants its attempt number or ids.

    ``current_qtask()["total_retry_attempts"]`` is 0 on the first try, 1 on the first retry.
    """
    return _current.get()


def perform(settings: Settings, job: ServiceQJob) -> Outcome:
    """Run the service queue's task function on one task; never raises for the task's faults."""
    if not settings.task_function:
        return Outcome(Verdict.RETRY, f"RETRY | no task function set for service queue {settings.name!r}")
    try:
        func = resolve(settings.task_function)
    except Exception as exc:  # an operator's mistake, not the task's: say so and fail the task
        return Outcome(Verdict.FAIL, f"NO_RETRY | cannot import task function {settings.task_function!r}: {exc}")
    token = _current.set(job.qtask(settings.id))
    try:
        return outcome_of_return(func(job.task))
    except Exception as exc:
        return outcome_of_exception(exc)
    finally:
        _current.reset(token)
