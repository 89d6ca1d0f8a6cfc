"""One attempt of one task: find the task function, call it under its time limit, read its verdict.

A task function's ``SystemExit``/``KeyboardInterrupt`` is its own failure, not the worker's end,
except while the worker itself is exiting (``_outcome_of``).
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
from collections.abc import Callable
from typing import Any

from rq_serviceq.job import ServiceQJob
from rq_serviceq.models import Settings
from rq_serviceq.task.imports import resolve
from rq_serviceq.task.remarks import Outcome, Verdict, outcome_of_exception, outcome_of_return
from rq_serviceq.task.timeouts import TaskTimeout, time_limit


class _Attempt:
    """The task an attempt runs; its Qtask is built when first asked for (most task functions never ask,
    and building it for every attempt was a fiftieth of a no-op task's cost)."""

    __slots__ = ("job", "qtask", "serviceq_id")

    def __init__(self, job: ServiceQJob, serviceq_id: str) -> None:
        self.job, self.serviceq_id = job, serviceq_id
        self.qtask: dict[str, Any] | None = None


_current: contextvars.ContextVar[_Attempt | None] = contextvars.ContextVar("rq_serviceq_qtask", default=None)


def current_qtask() -> dict[str, Any] | None:
    """The Qtask being worked on, for a task function that wants its attempt number or ids.

    ``current_qtask()["total_retry_attempts"]`` is 0 on the first try, 1 on the first retry.
    The same dict all through one attempt.
    """
    attempt = _current.get()
    if attempt is None:
        return None
    if attempt.qtask is None:
        attempt.qtask = attempt.job.qtask(attempt.serviceq_id)
    return attempt.qtask


class TaskFunctionUnavailable(Exception):
    """The task function cannot be had in this process: none is set, or it does not import here.

    A fault of this worker's machine or of the configuration, not of the tasks: a worker
    gives such tasks back rather than burn their retries (``ServiceQWorker``).
    """


def no_task_function(name: str) -> str:
    """Why a queue's tasks wait, and the command that ends the wait (the supervisor and workers say it)."""
    return (
        f"no task function set for service queue {name!r}: set one with "
        f"`rq-serviceq config {name} --task-function package.module.function` (or set_task_function() in Python)"
    )


def task_function(settings: Settings) -> Callable[..., Any] | Outcome:
    """The task function, or the outcome every task gets when the security policy refuses it.

    Raises ``TaskFunctionUnavailable`` when there is none to run here.
    """
    path = settings.task_function
    if not path:
        raise TaskFunctionUnavailable(no_task_function(settings.name))
    try:
        return resolve(path)
    except PermissionError as exc:  # refused by the operator's policy: no retry will change that
        return Outcome(Verdict.FAIL, f"NO_RETRY | cannot import task function {path!r}: {exc}")
    except Exception as exc:
        raise TaskFunctionUnavailable(f"{path}: {type(exc).__name__}: {exc}") from exc


def unreadable_outcome(job: ServiceQJob) -> Outcome:
    return Outcome(Verdict.FAIL, f"NO_RETRY | task data cannot be read: {job.unreadable}")


def unavailable_outcome(settings: Settings, exc: TaskFunctionUnavailable) -> Outcome:
    """The outcome of a task whose function cannot be had, where nobody can take it back (``work_once``)."""
    path = settings.task_function
    if not path:
        return Outcome(Verdict.RETRY, f"RETRY | {exc}")
    return Outcome(Verdict.FAIL, f"NO_RETRY | cannot import task function {path!r}: {exc.__cause__}")


def always() -> bool:
    """A ``Gate.exiting`` for a caller's own process (``work_once``): its SystemExit is never a task's."""
    return True


class Escaped(Exception):
    """A coroutine's SystemExit or KeyboardInterrupt, carried out of the asyncio task that ran it.

    asyncio re-raises those two out of the event loop, which would end every task sharing it (and, on the
    runner's loop thread, leave the group's waiter waiting): the runner raises ``exc`` where it waits.
    """

    def __init__(self, exc: BaseException) -> None:
        super().__init__(repr(exc))
        self.exc = exc


def _outcome_of(exc: BaseException, exiting: Callable[[], bool]) -> Outcome:
    """The outcome of an attempt that raised ``exc``; re-raises the worker's own way out.

    A task function's SystemExit or KeyboardInterrupt (``sys.exit()`` in code written as
    a script, a stray ``raise KeyboardInterrupt``) is that task's failure, not the end of
    the worker; but while the worker is exiting (a cold shutdown raises SystemExit from
    its signal handler) they are the worker's, and go on up.
    """
    if isinstance(exc, Escaped):
        exc = exc.exc
    if isinstance(exc, Exception) or (isinstance(exc, SystemExit | KeyboardInterrupt) and not exiting()):
        return outcome_of_exception(exc)
    raise exc


def call(func: Callable[..., Any], settings: Settings, job: ServiceQJob, exiting: Callable[[], bool]) -> Outcome:
    token = _current.set(_Attempt(job, settings.id))
    try:
        with time_limit(settings.task_timeout):
            value = func(job.task)
            if value is not None and inspect.isawaitable(value):  # None: what most task functions return
                value = asyncio.run(_awaited(value, settings.task_timeout))
        return outcome_of_return(value)
    except BaseException as exc:
        return _outcome_of(exc, exiting)
    finally:
        _current.reset(token)


async def _contained(value: Any) -> Any:
    try:
        return await value
    except (SystemExit, KeyboardInterrupt) as exc:
        raise Escaped(exc) from exc


async def _awaited(value: Any, timeout: float | None) -> Any:
    try:
        return await asyncio.wait_for(_contained(value), timeout)
    except TimeoutError:
        raise TaskTimeout(f"timed out after {timeout:g} s") from None


async def call_async(
    func: Callable[..., Any], settings: Settings, job: ServiceQJob, exiting: Callable[[], bool]
) -> Outcome:
    """``call`` for an ``async def`` task function, on the runner's event loop (admitted already)."""
    token = _current.set(_Attempt(job, settings.id))
    try:
        return outcome_of_return(await _awaited(func(job.task), settings.task_timeout))
    except BaseException as exc:
        return _outcome_of(exc, exiting)
    finally:
        _current.reset(token)
