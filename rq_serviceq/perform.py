"""worker: running a task function and reading its verdict.

``perform`` runs one task; ``Runner`` runs the group of tasks one claim
handed a worker, one after another, on a thread pool (``concurrency`` > 1)
or on an event loop (``async def`` task functions).  Kept apart from the
worker loop so the same code serves worker processes, ``work_once`` and
tests that drain a queue synchronously.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import json
import os
import queue
import select
import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures import CancelledError, Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from typing import Any

from .callbacks import resolve
from .job import ServiceQJob
from .models import Settings
from .remarks import Outcome, Verdict, outcome_of_exception, outcome_of_return
from .timeouts import TaskTimeout, time_limit

_current: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar("rq_serviceq_qtask", default=None)


def current_qtask() -> dict[str, Any] | None:
    """The Qtask being worked on, for a task function that wants its attempt number or ids.

    ``current_qtask()["total_retry_attempts"]`` is 0 on the first try, 1 on the first retry.
    """
    return _current.get()


def task_function(settings: Settings) -> Callable[..., Any] | Outcome:
    """The task function, or the outcome every task gets when there is none to run."""
    if not settings.task_function:
        return Outcome(Verdict.RETRY, f"RETRY | no task function set for service queue {settings.name!r}")
    try:
        return resolve(settings.task_function)
    except Exception as exc:  # an operator's mistake, not the task's: say so and fail the task
        return Outcome(Verdict.FAIL, f"NO_RETRY | cannot import task function {settings.task_function!r}: {exc}")


def perform(settings: Settings, job: ServiceQJob) -> Outcome:
    """Run the task function on one task; never raises for the task's faults."""
    func = task_function(settings)
    if isinstance(func, Outcome):
        return func
    return _call(func, settings, job)


def _call(func: Callable[..., Any], settings: Settings, job: ServiceQJob) -> Outcome:
    token = _current.set(job.qtask(settings.id))
    try:
        with time_limit(settings.task_timeout):
            value = func(job.task)
            if inspect.isawaitable(value):
                value = asyncio.run(_awaited(value, settings.task_timeout))
        return outcome_of_return(value)
    except Exception as exc:
        return outcome_of_exception(exc)
    finally:
        _current.reset(token)


async def _awaited(value: Any, timeout: float | None) -> Any:
    try:
        return await asyncio.wait_for(value, timeout)
    except TimeoutError:
        raise TaskTimeout(f"timed out after {timeout:g} s") from None


async def _call_async(
    func: Callable[..., Any],
    settings: Settings,
    job: ServiceQJob,
    gate: asyncio.Semaphore,
    give_back: Callable[[], bool],
) -> Outcome | None:
    async with gate:
        if give_back():
            return None
        token = _current.set(job.qtask(settings.id))
        try:
            return outcome_of_return(await _awaited(func(job.task), settings.task_timeout))
        except Exception as exc:
            return outcome_of_exception(exc)
        finally:
            _current.reset(token)


@dataclass
class GroupResult:
    done: list[tuple[ServiceQJob, Outcome]] = field(default_factory=list)
    unstarted: list[ServiceQJob] = field(default_factory=list)  # given back when a stop was asked for
    seconds: float = 0.0


class Runner:
    """Runs a claimed group of tasks with up to ``concurrency`` at once."""

    isolated = False  # True: every task one after another through ``_perform_one`` (see ForkRunner)

    def __init__(self, concurrency: int = 1) -> None:
        self.concurrency = max(1, concurrency)
        self._pool: _DaemonPool | None = None

    def run(
        self, settings: Settings, jobs: list[ServiceQJob], should_stop: Callable[[], bool], budget: float = 1.0
    ) -> GroupResult:
        """Run the group; tasks not started when a stop is asked for or ``budget`` seconds have passed
        come back as ``unstarted``, so a group that turned out slow does not hold its outcomes back."""
        started = time.perf_counter()
        deadline = started + budget

        def give_back() -> bool:
            return should_stop() or time.perf_counter() > deadline

        func = task_function(settings)
        if isinstance(func, Outcome):
            result = GroupResult(done=[(job, func) for job in jobs])
        elif inspect.iscoroutinefunction(func) and not self.isolated:
            result = self._run_async(func, settings, jobs, give_back)
        elif self.isolated or self.concurrency == 1 or len(jobs) == 1:
            result = self._run_serial(func, settings, jobs, give_back)
        else:
            result = self._run_threads(func, settings, jobs, give_back)
        result.seconds = time.perf_counter() - started
        return result

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()

    def _run_serial(
        self, func: Callable[..., Any], settings: Settings, jobs: list[ServiceQJob], should_stop: Callable[[], bool]
    ) -> GroupResult:
        result = GroupResult()
        for i, job in enumerate(jobs):
            if should_stop():
                result.unstarted = jobs[i:]
                break
            result.done.append((job, self._perform_one(func, settings, job)))
        return result

    def _perform_one(self, func: Callable[..., Any], settings: Settings, job: ServiceQJob) -> Outcome:
        return _call(func, settings, job)

    def _run_threads(
        self, func: Callable[..., Any], settings: Settings, jobs: list[ServiceQJob], give_back: Callable[[], bool]
    ) -> GroupResult:
        if self._pool is None:
            self._pool = _DaemonPool(self.concurrency)

        def gated(job: ServiceQJob) -> Outcome | None:  # asked as each task is about to start
            return None if give_back() else _call(func, settings, job)

        futures = [self._pool.submit(contextvars.copy_context().run, gated, job) for job in jobs]
        # A thread stuck in C code ignores its time limit: past a grace period it is abandoned, with its pool.
        patience = settings.task_timeout + 2 if settings.task_timeout else None
        outcomes: list[Outcome | None] = []
        for fut in futures:
            try:
                outcomes.append(fut.result(timeout=patience))
            except CancelledError:  # queued behind an abandoned task: it never started
                outcomes.append(None)
            except FutureTimeout:
                outcomes.append(Outcome(Verdict.RETRY, f"RETRY | TaskTimeout: abandoned after {patience:g} s"))
                self._pool.abandon()
                self._pool = _DaemonPool(self.concurrency)
        return _collect(jobs, outcomes)

    def _run_async(
        self, func: Callable[..., Any], settings: Settings, jobs: list[ServiceQJob], give_back: Callable[[], bool]
    ) -> GroupResult:
        async def run_all() -> list[Outcome | None]:
            gate = asyncio.Semaphore(self.concurrency)
            return await asyncio.gather(*(_call_async(func, settings, job, gate, give_back) for job in jobs))

        return _collect(jobs, asyncio.run(run_all()))


class _DaemonPool:
    """A fixed set of daemon threads.  Unlike ThreadPoolExecutor, whose threads are joined at
    interpreter exit, an abandoned thread stuck in a hung task cannot keep the worker from exiting."""

    def __init__(self, size: int) -> None:
        self._work: queue.SimpleQueue[tuple[Future[Any], Callable[..., Any], tuple[Any, ...]] | None] = (
            queue.SimpleQueue()
        )
        self._size = size
        for n in range(size):
            threading.Thread(target=self._serve, name=f"serviceq-task-{n}", daemon=True).start()

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future[Any]:
        fut: Future[Any] = Future()
        self._work.put((fut, fn, args))
        return fut

    def close(self) -> None:
        for _ in range(self._size):
            self._work.put(None)

    def abandon(self) -> None:
        """Stop feeding this pool; threads still running a task finish (or hang) on their own."""
        while True:
            try:
                item = self._work.get_nowait()
            except queue.Empty:
                break
            if item is not None:
                item[0].cancel()
        self.close()

    def _serve(self) -> None:
        while (item := self._work.get()) is not None:
            fut, fn, args = item
            if fut.set_running_or_notify_cancel():
                try:
                    fut.set_result(fn(*args))
                except BaseException as exc:
                    fut.set_exception(exc)


def _collect(jobs: list[ServiceQJob], outcomes: list[Outcome | None]) -> GroupResult:
    result = GroupResult()
    for job, outcome in zip(jobs, outcomes, strict=True):
        if outcome is None:
            result.unstarted.append(job)
        else:
            result.done.append((job, outcome))
    return result


class ForkRunner(Runner):
    """Runs each task in a forked child process, as RQ's default ``Worker`` does.

    Isolation at a price: a task that leaks memory, corrupts global state or
    crashes the interpreter takes only its child down (the attempt fails with
    a "work horse died" remark and is retried), and each task pays for a
    fork (about 8 ms on the benchmark machine: docs/benchmarks.md).
    """

    isolated = True

    def _perform_one(self, func: Callable[..., Any], settings: Settings, job: ServiceQJob) -> Outcome:
        return _in_child(settings, job)  # ``func`` was imported here, in the worker, once


def _in_child(settings: Settings, job: ServiceQJob) -> Outcome:
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the work horse
        os.close(read_end)
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl+C goes to the worker, which finishes this task
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        outcome = perform(settings, job)
        os.write(write_end, json.dumps([outcome.verdict.value, outcome.remark]).encode())
        os._exit(0)
    os.close(write_end)
    # The horse enforces the time limit itself; the parent steps in if it hangs past a grace period.
    limit = settings.task_timeout + 5 if settings.task_timeout else None
    with os.fdopen(read_end, "rb") as pipe:
        ready, _, _ = select.select([pipe], [], [], limit)
        payload = pipe.read() if ready else b""
    if not ready:
        os.kill(pid, signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
    if payload:
        verdict, remark = json.loads(payload)
        return Outcome(Verdict(verdict), remark)
    if not ready:
        return Outcome(Verdict.RETRY, f"RETRY | TaskTimeout: work horse killed after {limit:g} s")
    code = os.waitstatus_to_exitcode(status)
    how = f"signal {-code}" if code < 0 else f"exit code {code}"
    return Outcome(Verdict.RETRY, f"RETRY | work horse died ({how}) before reporting an outcome")
