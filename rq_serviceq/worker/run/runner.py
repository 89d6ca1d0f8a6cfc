"""``Runner``: a claimed group of tasks one after another, on threads (``concurrency`` > 1) or on one
event loop (``async def`` task functions).

Threads come from ``DaemonPool`` rather than ThreadPoolExecutor, so a thread stuck in a hung task can be
abandoned and never keeps the worker from exiting.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import CancelledError, Future
from concurrent.futures import TimeoutError as FutureTimeout
from functools import partial
from typing import Any

from rq_serviceq.job import ServiceQJob
from rq_serviceq.models import Settings
from rq_serviceq.task.remarks import Outcome, Verdict
from rq_serviceq.worker.run.call import (
    TaskFunctionUnavailable,
    call,
    call_async,
    task_function,
    unavailable_outcome,
    unreadable_outcome,
)
from rq_serviceq.worker.run.gate import Gate, GroupResult, started


class Runner:
    """Runs a claimed group of tasks with up to ``concurrency`` at once."""

    isolated = False  # True: every task one after another through ``_launch`` (see ForkRunner)
    # A task function that cannot be had here: True gives the group back (``unstarted``), for a worker
    # that can import it; False makes it the tasks' outcome, for a caller nobody else can stand in for.
    gives_back = True

    def __init__(self, concurrency: int = 1) -> None:
        self.concurrency = max(1, concurrency)
        self._pool: DaemonPool | None = None

    def run(self, settings: Settings, jobs: list[ServiceQJob], gate: Gate | None = None) -> GroupResult:
        """Run the group; tasks the gate does not admit (a stop or pause was asked for, or the group's
        time budget is spent) come back as ``unstarted``, so a slow group does not hold its outcomes back."""
        return self.start(settings, jobs, gate).wait()

    def start(self, settings: Settings, jobs: list[ServiceQJob], gate: Gate | None = None) -> Running:
        """Begin the group: on threads its tasks are queued on the pool and this returns at once (``Running``
        says when each has started, so the next group can queue behind it); otherwise it runs in ``wait``."""
        gate = gate or Gate()
        began = time.perf_counter()
        try:
            func = task_function(settings)
        except TaskFunctionUnavailable as exc:
            if self.gives_back:
                given_back = GroupResult(unstarted=list(jobs), unavailable=str(exc))
                return Running(lambda: given_back, gate, began)
            func = unavailable_outcome(settings, exc)
        # A task whose data cannot be read fails alone; the rest of its group runs.
        unreadable = [(job, unreadable_outcome(job)) for job in jobs if job.unreadable]
        readable = [job for job in jobs if not job.unreadable]
        decided = None
        progress: Callable[[], tuple[int, float]] | None = None
        finish: Callable[[], GroupResult]
        if isinstance(func, Outcome):
            finish = partial(GroupResult, done=[(job, func) for job in readable])
        elif inspect.iscoroutinefunction(func) and not self.isolated:
            finish = partial(self._run_async, func, settings, readable, gate)
        elif self.isolated or self.concurrency == 1 or len(readable) == 1:
            finish = partial(self._run_serial, func, settings, readable, gate)
        else:
            decided = threading.Event()
            finish, progress = self._start_threads(func, settings, readable, gate, decided)
        return Running(finish, gate, began, decided, unreadable, progress)

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
        return partial(call, func, settings, job, exiting)

    def _start_threads(
        self,
        func: Callable[..., Any],
        settings: Settings,
        jobs: list[ServiceQJob],
        gate: Gate,
        decided: threading.Event,
    ) -> tuple[Callable[[], GroupResult], Callable[[], tuple[int, float]]]:
        """Queue the group on the pool; returns what waits for it, and what tells how many of its tasks
        ended so far and their run time.  ``decided`` is set once every task has started or been refused."""
        if self._pool is None:
            self._pool = DaemonPool(self.concurrency)
        pool = self._pool
        left = [len(jobs)]
        busy = [0.0]  # the tasks' own run time, summed: what the group took, whatever ran beside it
        ended = [0]
        lock = threading.Lock()

        def gated(job: ServiceQJob) -> Outcome | None:  # asked as each task is about to start
            admitted = gate.admit(job, started)
            with lock:
                if gate.first_start is None:  # the group's own time starts here, not while queued behind one
                    gate.first_start = time.perf_counter()
                left[0] -= 1
                if not left[0]:
                    decided.set()
            if not admitted:
                return None
            began = time.perf_counter()
            outcome = call(func, settings, job, gate.exiting)
            took = time.perf_counter() - began
            with lock:
                busy[0] += took
                ended[0] += 1
            gate.ended(job, outcome)
            return outcome

        futures = [pool.submit(contextvars.copy_context().run, gated, job) for job in jobs]

        def progress() -> tuple[int, float]:
            with lock:
                return ended[0], busy[0]

        return partial(self._collect_threads, settings, jobs, futures, gate, busy), progress

    def _collect_threads(
        self, settings: Settings, jobs: list[ServiceQJob], futures: list[Future[Any]], gate: Gate, busy: list[float]
    ) -> GroupResult:
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
                if self._pool is not None:
                    self._pool.abandon()
                self._pool = DaemonPool(self.concurrency)
        result = _collect(jobs, outcomes)
        # Its length as if its slots ran it alone: groups queued behind each other overlap, and the span from
        # the first start to the last end counts the slots' stagger (a group of 2 rounds spans about 3).
        result.seconds = busy[0] / self.concurrency
        return result

    def _run_async(
        self, func: Callable[..., Any], settings: Settings, jobs: list[ServiceQJob], gate: Gate
    ) -> GroupResult:
        async def run_all() -> list[Outcome | None]:
            slots = asyncio.Semaphore(self.concurrency)
            return await asyncio.gather(*(call_async(func, settings, job, slots, gate) for job in jobs))

        return _collect(jobs, asyncio.run(run_all()))


class Running:
    """A group begun by ``Runner.start``.  ``decided`` (threads only; None otherwise) is set once each of
    its tasks has started or been refused; ``wait`` collects the outcomes (and runs a group that is not on
    threads)."""

    def __init__(
        self,
        finish: Callable[[], GroupResult],
        gate: Gate,
        began: float,
        decided: threading.Event | None = None,
        unreadable: list[tuple[ServiceQJob, Outcome]] | None = None,
        progress: Callable[[], tuple[int, float]] | None = None,
    ) -> None:
        self._finish, self.gate, self._began = finish, gate, began
        self.decided = decided
        self.progress = progress  # threads: (tasks ended so far, their run time summed)
        self._unreadable = unreadable or []

    def wait(self) -> GroupResult:
        try:
            result = self._finish()
        finally:
            self.gate.over = True
        result.done[:0] = self._unreadable
        if not result.seconds:  # else the runner measured it (threads)
            result.seconds = time.perf_counter() - (self.gate.first_start or self._began)
        return result


class DaemonPool:
    """A fixed set of daemon threads.  Unlike ThreadPoolExecutor, whose threads are joined at
    interpreter exit, an abandoned thread stuck in a hung task cannot keep the worker from exiting."""

    def __init__(self, size: int, name: str = "serviceq-task") -> None:
        self._work: queue.SimpleQueue[tuple[Future[Any], Callable[..., Any], tuple[Any, ...]] | None] = (
            queue.SimpleQueue()
        )
        self._size = size
        for n in range(size):
            threading.Thread(target=self._serve, name=f"{name}-{n}", daemon=True).start()

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
