"""worker: running a task function and reading its verdict.

``Runner`` runs the group of tasks one claim handed a worker, one after
another, on a thread pool (``concurrency`` > 1) or on an event loop
(``async def`` task functions); ``ForkRunner`` forks a work horse per task.
Kept apart from the worker loop so the same code serves worker processes and
``work_once`` (``cycle.process``).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import inspect
import json
import os
import queue
import select
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable
from concurrent.futures import CancelledError, Future
from concurrent.futures import TimeoutError as FutureTimeout
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from functools import partial
from typing import Any, NoReturn, TypeVar

from rq_serviceq.job import ServiceQJob
from rq_serviceq.models import Settings
from rq_serviceq.task.imports import resolve
from rq_serviceq.task.remarks import Outcome, Verdict, outcome_of_exception, outcome_of_return
from rq_serviceq.task.timeouts import TaskTimeout, time_limit
from rq_serviceq.worker.journal import Journal

T = TypeVar("T")
_current: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar("rq_serviceq_qtask", default=None)


def current_qtask() -> dict[str, Any] | None:
    """The Qtask being worked on, for a task function that wants its attempt number or ids.

    ``current_qtask()["total_retry_attempts"]`` is 0 on the first try, 1 on the first retry.
    """
    return _current.get()


class TaskFunctionUnavailable(Exception):
    """The task function cannot be had in this process: none is set, or it does not import here.

    A fault of this worker's machine or of the configuration, not of the tasks: a worker
    gives such tasks back rather than burn their retries (``ServiceQWorker``).
    """


def task_function(settings: Settings) -> Callable[..., Any] | Outcome:
    """The task function, or the outcome every task gets when the security policy refuses it.

    Raises ``TaskFunctionUnavailable`` when there is none to run here.
    """
    path = settings.task_function
    if not path:
        raise TaskFunctionUnavailable(f"no task function set for service queue {settings.name!r}")
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


def _never() -> bool:
    return False


class _Escaped(Exception):
    """A coroutine's SystemExit or KeyboardInterrupt, carried out of the asyncio task that ran it.

    asyncio re-raises those two out of the event loop, which would end every task sharing it.
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
    if isinstance(exc, _Escaped):
        exc = exc.exc
    if isinstance(exc, Exception) or (isinstance(exc, SystemExit | KeyboardInterrupt) and not exiting()):
        return outcome_of_exception(exc)
    raise exc


def _call(func: Callable[..., Any], settings: Settings, job: ServiceQJob, exiting: Callable[[], bool]) -> Outcome:
    token = _current.set(job.qtask(settings.id))
    try:
        with time_limit(settings.task_timeout):
            value = func(job.task)
            if inspect.isawaitable(value):
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
        raise _Escaped(exc) from exc


async def _awaited(value: Any, timeout: float | None) -> Any:
    try:
        return await asyncio.wait_for(_contained(value), timeout)
    except TimeoutError:
        raise TaskTimeout(f"timed out after {timeout:g} s") from None


async def _call_async(
    func: Callable[..., Any], settings: Settings, job: ServiceQJob, slots: asyncio.Semaphore, gate: Gate
) -> Outcome | None:
    async with slots:
        if not gate.admit(job, _started):
            return None
        token = _current.set(job.qtask(settings.id))
        try:
            outcome = outcome_of_return(await _awaited(func(job.task), settings.task_timeout))
        except BaseException as exc:
            outcome = _outcome_of(exc, gate.exiting)
        finally:
            _current.reset(token)
        gate.ended(job, outcome)
        return outcome


def _started() -> bool:
    return True


@dataclass
class Gate:
    """Where a runner asks whether a task may start, and says that it started and how it ended.

    ``lock`` (the worker's) is held across the decision to start a task and marking it
    started, and the worker acknowledges a pause under the same lock: a pause falls
    either before the decision (the task is given back) or after the task was committed
    to start, never in between.  So when ``pause()`` returns no task starts.
    """

    should_stop: Callable[[], bool] = _never  # a stop or a pause since the claim: give the rest back
    deadline: float = float("inf")  # perf_counter() time past which unstarted tasks are given back
    lock: AbstractContextManager[Any] = field(default_factory=threading.Lock)
    journal: Journal | None = None
    exiting: Callable[[], bool] = _never  # the worker's own cold shutdown is under way
    over: bool = False  # the group was recorded: a straggler thread's outcome is no longer journaled

    def admit(self, job: ServiceQJob, launch: Callable[[], T]) -> T | None:
        """Under the lock: None if ``job`` must not start; else mark it started and ``launch`` it."""
        with self.lock:
            if self.should_stop() or time.perf_counter() > self.deadline:
                return None
            if self.journal is not None:
                self.journal.started(job)
            return launch()

    def ended(self, job: ServiceQJob, outcome: Outcome, send: bool = True) -> None:
        if self.journal is not None and not self.over:
            self.journal.ended(job, outcome, send)


@dataclass
class GroupResult:
    done: list[tuple[ServiceQJob, Outcome]] = field(default_factory=list)
    unstarted: list[ServiceQJob] = field(default_factory=list)  # given back when a stop was asked for
    seconds: float = 0.0
    unavailable: str | None = None  # why the task function cannot be had here (all tasks given back)


class Runner:
    """Runs a claimed group of tasks with up to ``concurrency`` at once."""

    isolated = False  # True: every task one after another through ``_launch`` (see ForkRunner)
    # A task function that cannot be had here: True gives the group back (``unstarted``), for a worker
    # that can import it; False makes it the tasks' outcome, for a caller nobody else can stand in for.
    gives_back = True

    def __init__(self, concurrency: int = 1) -> None:
        self.concurrency = max(1, concurrency)
        self._pool: _DaemonPool | None = None

    def run(self, settings: Settings, jobs: list[ServiceQJob], gate: Gate | None = None) -> GroupResult:
        """Run the group; tasks the gate does not admit (a stop or pause was asked for, or the group's
        time budget is spent) come back as ``unstarted``, so a slow group does not hold its outcomes back."""
        gate = gate or Gate()
        started = time.perf_counter()
        try:
            result = self._run(settings, jobs, gate)
        finally:
            gate.over = True
        result.seconds = time.perf_counter() - started
        return result

    def _run(self, settings: Settings, jobs: list[ServiceQJob], gate: Gate) -> GroupResult:
        try:
            func = task_function(settings)
        except TaskFunctionUnavailable as exc:
            if self.gives_back:
                return GroupResult(unstarted=list(jobs), unavailable=str(exc))
            func = unavailable_outcome(settings, exc)
        # A task whose data cannot be read fails alone; the rest of its group runs.
        unreadable = [(job, unreadable_outcome(job)) for job in jobs if job.unreadable]
        jobs = [job for job in jobs if not job.unreadable]
        if isinstance(func, Outcome):
            result = GroupResult(done=[(job, func) for job in jobs])
        elif inspect.iscoroutinefunction(func) and not self.isolated:
            result = self._run_async(func, settings, jobs, gate)
        elif self.isolated or self.concurrency == 1 or len(jobs) == 1:
            result = self._run_serial(func, settings, jobs, gate)
        else:
            result = self._run_threads(func, settings, jobs, gate)
        result.done[:0] = unreadable
        return result

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()

    def _run_serial(
        self, func: Callable[..., Any], settings: Settings, jobs: list[ServiceQJob], gate: Gate
    ) -> GroupResult:
        result = GroupResult()
        for i, job in enumerate(jobs):
            finish = gate.admit(job, partial(self._launch, func, settings, job, gate.exiting))
            if finish is None:
                result.unstarted = jobs[i:]
                break
            outcome = finish()
            gate.ended(job, outcome, send=False)  # goes out with the next task's start: one write
            result.done.append((job, outcome))
        return result

    def _launch(
        self, func: Callable[..., Any], settings: Settings, job: ServiceQJob, exiting: Callable[[], bool]
    ) -> Callable[[], Outcome]:
        """Start ``job`` (under the gate's lock) and return what waits for its outcome."""
        return partial(_call, func, settings, job, exiting)

    def _run_threads(
        self, func: Callable[..., Any], settings: Settings, jobs: list[ServiceQJob], gate: Gate
    ) -> GroupResult:
        if self._pool is None:
            self._pool = _DaemonPool(self.concurrency)

        def gated(job: ServiceQJob) -> Outcome | None:  # asked as each task is about to start
            if not gate.admit(job, _started):
                return None
            outcome = _call(func, settings, job, gate.exiting)
            gate.ended(job, outcome)
            return outcome

        futures = [self._pool.submit(contextvars.copy_context().run, gated, job) for job in jobs]
        # A thread stuck in C code ignores its time limit: past a grace period it is abandoned, with its pool.
        patience = settings.task_timeout + 2 if settings.task_timeout else None
        outcomes: list[Outcome | None] = []
        for job, fut in zip(jobs, futures, strict=True):
            try:
                outcomes.append(fut.result(timeout=patience))
            except CancelledError:  # queued behind an abandoned task: it never started
                outcomes.append(None)
            except FutureTimeout:
                abandoned = Outcome(Verdict.RETRY, f"RETRY | TaskTimeout: abandoned after {patience:g} s")
                gate.ended(job, abandoned)
                outcomes.append(abandoned)
                self._pool.abandon()
                self._pool = _DaemonPool(self.concurrency)
        return _collect(jobs, outcomes)

    def _run_async(
        self, func: Callable[..., Any], settings: Settings, jobs: list[ServiceQJob], gate: Gate
    ) -> GroupResult:
        async def run_all() -> list[Outcome | None]:
            slots = asyncio.Semaphore(self.concurrency)
            return await asyncio.gather(*(_call_async(func, settings, job, slots, gate) for job in jobs))

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

    def _launch(
        self, func: Callable[..., Any], settings: Settings, job: ServiceQJob, exiting: Callable[[], bool]
    ) -> Callable[[], Outcome]:
        # Under the gate's lock: a pause acknowledged after this finds the horse already forked.
        try:
            return _fork(func, settings, job)
        except OSError as exc:
            failed = Outcome(Verdict.RETRY, f"RETRY | could not fork a work horse: {exc}")
            return lambda: failed


def _fork(func: Callable[..., Any], settings: Settings, job: ServiceQJob) -> Callable[[], Outcome]:
    read_end, write_end = os.pipe()
    for stream in (sys.stdout, sys.stderr):  # or the horse would print what this process had buffered again
        stream.flush()
    try:
        pid = os.fork()
    except OSError:
        os.close(read_end)
        os.close(write_end)
        raise
    if pid == 0:
        _work_horse(func, settings, job, read_end, write_end)
    os.close(write_end)
    return partial(_wait_for_horse, pid, read_end, settings)


def _work_horse(
    func: Callable[..., Any], settings: Settings, job: ServiceQJob, read_end: int, write_end: int
) -> NoReturn:
    """The forked child: run the task, write its outcome, and leave by ``os._exit`` whatever happens.

    Never by unwinding: the stack above is the parent worker's, and RQ's teardown there
    would mark the live parent dead and unsubscribe it from its command channel.
    """
    code = 1
    try:
        os.close(read_end)
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl+C goes to the worker, which finishes this task
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        outcome = _call(func, settings, job, _never)
        with os.fdopen(write_end, "wb") as pipe:
            pipe.write(json.dumps([outcome.verdict.value, outcome.remark]).encode())
        code = 0
    except BaseException:
        with contextlib.suppress(BaseException):
            traceback.print_exc()
    finally:
        with contextlib.suppress(BaseException):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


def _wait_for_horse(pid: int, read_end: int, settings: Settings) -> Outcome:
    # The horse enforces the time limit itself; the parent steps in if it hangs past a grace period.
    limit = settings.task_timeout + 5 if settings.task_timeout else None
    try:
        with os.fdopen(read_end, "rb") as pipe:
            ready, _, _ = select.select([pipe], [], [], limit)
            payload = pipe.read() if ready else b""
    except BaseException:  # the worker's cold shutdown: take the horse down with it
        _kill(pid)
        raise
    if not ready:
        _kill(pid)
    else:
        _, status = os.waitpid(pid, 0)
    if payload:
        verdict, remark = json.loads(payload)
        return Outcome(Verdict(verdict), remark)
    if not ready:
        return Outcome(Verdict.RETRY, f"RETRY | TaskTimeout: work horse killed after {limit:g} s")
    code = os.waitstatus_to_exitcode(status)
    how = f"signal {-code}" if code < 0 else f"exit code {code}"
    return Outcome(Verdict.RETRY, f"RETRY | work horse died ({how}) before reporting an outcome")


def _kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)
