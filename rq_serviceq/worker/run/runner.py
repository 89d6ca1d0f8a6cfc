"""``Runner``: a claimed group of tasks one after another, on threads (``concurrency`` > 1) or on one
event loop (``async def`` task functions).

Threads come from ``DaemonPool`` rather than ThreadPoolExecutor, so a thread stuck in a hung task can be
abandoned and never keeps the worker from exiting.  For the same reason the event loop runs on a daemon
thread of its own (``EventLoop``), kept from group to group: one ``asyncio.run`` per group paid for a
loop's start and shutdown every group, and a group could not be queued behind the running one, so the
slots idled through each group's tail and settle (8 x 10 ms tasks: 646 a second, threads 744).
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import queue
import threading
import time
from collections.abc import Callable, Coroutine
from concurrent.futures import CancelledError, Future
from concurrent.futures import TimeoutError as FutureTimeout
from functools import partial
from typing import Any, TypeVar

from rq_serviceq.job import ServiceQJob
from rq_serviceq.models import Settings
from rq_serviceq.task.remarks import Outcome, Verdict
from rq_serviceq.task.timeouts import signal_handler_kept
from rq_serviceq.worker.run.call import (
    Escaped,
    TaskFunctionUnavailable,
    call,
    call_async,
    task_function,
    unavailable_outcome,
    unreadable_outcome,
)
from rq_serviceq.worker.run.gate import Gate, GroupResult, started

T = TypeVar("T")


class Runner:
    """Runs a claimed group of tasks with up to ``concurrency`` at once."""

    isolated = False  # True: every task one after another through ``_launch`` (see ForkRunner)
    # A task function that cannot be had here: True gives the group back (``unstarted``), for a worker
    # that can import it; False makes it the tasks' outcome, for a caller nobody else can stand in for.
    gives_back = True

    def __init__(self, concurrency: int = 1) -> None:
        self.concurrency = max(1, concurrency)
        self._pool: DaemonPool | None = None
        self._loop: EventLoop | None = None  # async task functions' loop, and its slots

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
        tally: _Tally | None = None  # threads and the loop: the group's tasks are under way when this returns
        finish: Callable[[], GroupResult]
        if isinstance(func, Outcome):
            finish = partial(GroupResult, done=[(job, func) for job in readable])
        elif inspect.iscoroutinefunction(func) and not self.isolated:
            tally = _Tally(len(readable))
            finish = self._start_async(func, settings, readable, gate, tally)
        elif self.isolated or self.concurrency == 1 or len(readable) == 1:
            finish = partial(self._run_serial, func, settings, readable, gate)
        else:
            tally = _Tally(len(readable))
            finish = self._start_threads(func, settings, readable, gate, tally)
        if tally is None:
            return Running(finish, gate, began, unreadable=unreadable)
        return Running(finish, gate, began, tally.decided, unreadable, tally.progress)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
        if self._loop is not None:
            self._loop.close()

    def _run_serial(
        self, func: Callable[..., Any], settings: Settings, jobs: list[ServiceQJob], gate: Gate
    ) -> GroupResult:
        result = GroupResult()
        with signal_handler_kept():  # each task's time limit is then two setitimer calls
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
        tally: _Tally,
    ) -> Callable[[], GroupResult]:
        """Queue the group on the pool; returns what waits for it.  ``tally`` counts its tasks as they start
        and end."""
        if self._pool is None:
            self._pool = DaemonPool(self.concurrency)
        pool = self._pool

        def gated(job: ServiceQJob) -> Outcome | None:  # asked as each task is about to start
            if not tally.admit(gate, job):
                return None
            began = time.perf_counter()
            outcome = call(func, settings, job, gate.exiting)
            tally.ended(time.perf_counter() - began)
            gate.ended(job, outcome)
            return outcome

        futures = [pool.submit(contextvars.copy_context().run, gated, job) for job in jobs]
        return partial(self._collect, settings, jobs, futures, gate, tally, self._abandon_pool)

    def _start_async(
        self,
        func: Callable[..., Any],
        settings: Settings,
        jobs: list[ServiceQJob],
        gate: Gate,
        tally: _Tally,
    ) -> Callable[[], GroupResult]:
        """``_start_threads`` for an ``async def`` task function: the group's coroutines go on the runner's
        loop at once, each waiting for one of its ``concurrency`` slots, so a group queued behind the running
        one takes each slot as it frees (the slots' semaphore is first come, first served)."""
        if self._loop is None:
            self._loop = EventLoop(self.concurrency)
        loop = self._loop

        async def gated(job: ServiceQJob) -> Outcome | None:
            async with loop.slots:
                if not tally.admit(gate, job):
                    return None
                began = time.perf_counter()
                try:
                    outcome = await call_async(func, settings, job, gate.exiting)
                except (SystemExit, KeyboardInterrupt) as exc:  # the worker's own way out: raised in _collect
                    raise Escaped(exc) from exc
                tally.ended(time.perf_counter() - began)
            gate.ended(job, outcome)
            return outcome

        futures = [loop.submit(gated(job)) for job in jobs]
        return partial(self._collect, settings, jobs, futures, gate, tally, self._abandon_loop)

    def _abandon_pool(self) -> bool:
        """Give up the pool (its queued tasks are cancelled); False: its other threads' tasks may still end."""
        if self._pool is not None:
            self._pool.abandon()
        self._pool = DaemonPool(self.concurrency)
        return False

    def _abandon_loop(self) -> bool:
        """Give up the loop, a new one for the next group; True: none of its other tasks can end now, since
        the loop is stuck in one task's code."""
        if self._loop is not None:
            self._loop.close()
        self._loop = None
        return True

    def _collect(
        self,
        settings: Settings,
        jobs: list[ServiceQJob],
        futures: list[Future[Any]],
        gate: Gate,
        tally: _Tally,
        abandon: Callable[[], bool],
    ) -> GroupResult:
        # A task stuck in C code (or blocking the loop) ignores its time limit: past a grace period it is
        # abandoned, with its pool or loop.
        patience = settings.task_timeout + 2 if settings.task_timeout else None
        outcomes: list[Outcome | None] = []
        stuck = False  # the loop was abandoned: what has not ended never will, so nothing more is waited for
        for job, fut in zip(jobs, futures, strict=True):
            if stuck and not fut.done():
                fut.cancel()
                outcomes.append(self._abandoned(gate, job, patience) if tally.started(job) else None)
                continue
            try:
                outcomes.append(fut.result(timeout=patience))
            except CancelledError:  # queued behind an abandoned task: it never started
                outcomes.append(None)
            except Escaped as exc:
                raise exc.exc from None
            except FutureTimeout:
                outcomes.append(self._abandoned(gate, job, patience))
                stuck = abandon()
        result = _collect(jobs, outcomes)
        # Its length as if its slots ran it alone: groups queued behind each other overlap, and the span from
        # the first start to the last end counts the slots' stagger (a group of 2 rounds spans about 3).
        result.seconds = tally.progress()[1] / self.concurrency
        return result

    @staticmethod
    def _abandoned(gate: Gate, job: ServiceQJob, patience: float | None) -> Outcome:
        abandoned = Outcome(Verdict.RETRY, f"RETRY | TaskTimeout: abandoned after {patience:g} s")
        gate.ended(job, abandoned)
        return abandoned


class _Tally:
    """A started group's count, from the threads or the loop its tasks run on: how many are yet to be
    decided (started or refused; ``decided`` is set once none is), which started, how many ended, their
    run time summed."""

    def __init__(self, tasks: int) -> None:
        self._left, self._ended, self._busy = tasks, 0, 0.0
        self._started: set[str] = set()
        self.decided = threading.Event()
        self._lock = threading.Lock()
        if not tasks:
            self.decided.set()

    def admit(self, gate: Gate, job: ServiceQJob) -> bool:
        """Ask ``gate`` whether ``job`` starts (it is marked started if so), and count it decided."""
        admitted = gate.admit(job, started)
        with self._lock:
            if gate.first_start is None:  # the group's own time starts here, not while queued behind one
                gate.first_start = time.perf_counter()
            self._left -= 1
            if admitted:
                self._started.add(job.id)
            if not self._left:
                self.decided.set()
        return bool(admitted)

    def started(self, job: ServiceQJob) -> bool:
        with self._lock:
            return job.id in self._started

    def ended(self, took: float) -> None:
        with self._lock:
            self._busy += took
            self._ended += 1

    def progress(self) -> tuple[int, float]:
        with self._lock:
            return self._ended, self._busy


class EventLoop:
    """An event loop on a daemon thread, and the ``concurrency`` slots its tasks share, group after group."""

    def __init__(self, concurrency: int, name: str = "serviceq-async") -> None:
        self._loop = asyncio.new_event_loop()
        self.slots = asyncio.Semaphore(concurrency)  # used on the loop's thread only
        threading.Thread(target=self._loop.run_forever, name=name, daemon=True).start()

    def submit(self, coro: Coroutine[Any, Any, T]) -> Future[T]:
        return asyncio.run_coroutine_threadsafe(coro, self._loop)

    def close(self) -> None:
        """Stop the loop once what it is running yields; its thread ends with it (or with the process)."""
        self._loop.call_soon_threadsafe(self._loop.stop)


class Running:
    """A group begun by ``Runner.start``.  ``decided`` (threads and the event loop; None otherwise) is set
    once each of its tasks has started or been refused; ``wait`` collects the outcomes (and runs a group that is not on
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
        self.progress = progress  # threads and the loop: (tasks ended so far, their run time summed)
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
