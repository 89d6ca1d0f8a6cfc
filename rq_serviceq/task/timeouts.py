"""Time limits for task functions and callbacks.

In a worker's main thread a timer signal (``setitimer``, so fractions of a
second work) interrupts even a blocking call.  In a task thread the limit
is best effort: the timeout exception is raised in that thread at its next
Python bytecode (RQ's ``TimerDeathPenalty`` does the same), so a thread
blocked inside C code is only stopped when that call returns.
"""

from __future__ import annotations

import ctypes
import heapq
import itertools
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from types import FrameType
from typing import Any

# The handler as installed, from CPython's _signal (which signal wraps): signal.getsignal's enum lookup
# raises and catches for a handler that is a function, most of a kept limit's cost.
_handler: Callable[[int], Any] = getattr(sys.modules.get("_signal"), "getsignal", signal.getsignal)


class TaskTimeout(Exception):
    """A task function or callback ran past its time limit."""


def time_limit(seconds: float | None) -> AbstractContextManager[None]:
    """The limit for one call: ``with time_limit(task_timeout): ...``."""
    if not seconds or seconds <= 0:
        return nullcontext()
    if threading.current_thread() is threading.main_thread():
        return _BySignal(seconds)
    return _by_async_exception(seconds)


class _Armed:
    seconds = 0.0  # the main thread's running limit, for the handler's message


def _expire(signum: int, frame: FrameType | None) -> None:
    raise TaskTimeout(f"timed out after {_Armed.seconds:g} s")


_UNSET = object()


def _install() -> Any:
    """Install ``_expire`` for SIGALRM; returns the handler it replaced, ``_UNSET`` when it was ours."""
    return _UNSET if _handler(signal.SIGALRM) is _expire else signal.signal(signal.SIGALRM, _expire)


def _restore(previous: Any) -> None:
    if previous is not _UNSET:
        signal.signal(signal.SIGALRM, previous)


class _BySignal:
    """A timer signal for one call in the main thread.  Inside ``signal_handler_kept`` the handler is
    installed already and a call costs two ``setitimer``s; alone it is installed and the one before put
    back, as before (about 1 against 6.5 us a call: a no-op worker's group ran 64 handler swaps)."""

    __slots__ = ("previous", "seconds")

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.previous: Any = _UNSET

    def __enter__(self) -> None:
        self.previous = _install()
        _Armed.seconds = self.seconds
        signal.setitimer(signal.ITIMER_REAL, self.seconds)

    def __exit__(self, *exc: object) -> None:
        signal.setitimer(signal.ITIMER_REAL, 0)
        _restore(self.previous)


@contextmanager
def signal_handler_kept() -> Iterator[None]:
    """Keep the time limit's signal handler installed across a run of calls in the main thread (a serial
    group), and put the one before back after it; elsewhere, nothing.  Each call clears its own timer."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = _install()
    try:
        yield
    finally:
        _restore(previous)


@contextmanager
def _by_async_exception(seconds: float) -> Iterator[None]:
    alarm = _WATCHDOG.arm(seconds, threading.get_ident())
    try:
        yield
    except _ThreadTimeout:
        raise TaskTimeout(f"timed out after {seconds:g} s") from None
    finally:
        _WATCHDOG.disarm(alarm)


@dataclass(eq=False)
class _Alarm:
    due: float
    thread_id: int
    done: bool = False  # disarmed: the task ended in time


class _Watchdog:
    """One thread for the time limits of every task thread.  A ``threading.Timer`` per task started and
    ended a thread each time: with 8 task threads of 10 ms tasks that was 15-40% of the run."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, _Alarm]] = []
        self._order = itertools.count()
        self._disarmed = 0  # disarmed alarms still in the heap: dropped in bulk once they are half of it
        self._thread: threading.Thread | None = None

    def arm(self, seconds: float, thread_id: int) -> _Alarm:
        alarm = _Alarm(time.monotonic() + seconds, thread_id)
        with self._cond:
            heapq.heappush(self._heap, (alarm.due, next(self._order), alarm))
            if self._thread is None:
                self._thread = threading.Thread(target=self._watch, name="serviceq-time-limits", daemon=True)
                self._thread.start()
            if self._heap[0][2] is alarm:
                self._cond.notify()
        return alarm

    def disarm(self, alarm: _Alarm) -> None:
        with self._cond:
            if alarm.done:  # it went off: the task's TaskTimeout is on its way
                return
            alarm.done = True
            self._disarmed += 1
            if self._disarmed > 64 and 2 * self._disarmed > len(self._heap):
                self._heap = [entry for entry in self._heap if not entry[2].done]
                heapq.heapify(self._heap)
                self._disarmed = 0

    def _watch(self) -> None:
        with self._cond:
            while True:
                while self._heap and self._heap[0][2].done:
                    heapq.heappop(self._heap)
                    self._disarmed -= 1
                if not self._heap:
                    self._cond.wait()
                    continue
                wait = self._heap[0][0] - time.monotonic()
                if wait > 0:
                    self._cond.wait(wait)
                    continue
                alarm = heapq.heappop(self._heap)[2]
                alarm.done = True  # under the lock: a task that ended first disarmed it, and is left alone
                ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(alarm.thread_id),
                                                           ctypes.py_object(_ThreadTimeout))  # fmt: skip


_WATCHDOG = _Watchdog()


class _ThreadTimeout(Exception):
    """Raised asynchronously in a task thread; turned into TaskTimeout with its message."""
