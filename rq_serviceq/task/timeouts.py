"""Time limits for task functions and callbacks.

In a worker's main thread a timer signal (``setitimer``, so fractions of a
second work) interrupts even a blocking call.  In a task thread the limit
is best effort: the timeout exception is raised in that thread at its next
Python bytecode (RQ's ``TimerDeathPenalty`` does the same), so a thread
blocked inside C code is only stopped when that call returns.
"""

from __future__ import annotations

import ctypes
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType


class TaskTimeout(Exception):
    """A task function or callback ran past its time limit."""


@contextmanager
def time_limit(seconds: float | None) -> Iterator[None]:
    if not seconds or seconds <= 0:
        yield
    elif threading.current_thread() is threading.main_thread():
        with _by_signal(seconds):
            yield
    else:
        with _by_async_exception(seconds):
            yield


@contextmanager
def _by_signal(seconds: float) -> Iterator[None]:
    def expire(signum: int, frame: FrameType | None) -> None:
        raise TaskTimeout(f"timed out after {seconds:g} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@contextmanager
def _by_async_exception(seconds: float) -> Iterator[None]:
    target = threading.get_ident()
    done = threading.Event()

    def expire() -> None:
        if not done.is_set():
            ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(target), ctypes.py_object(_ThreadTimeout))

    timer = threading.Timer(seconds, expire)
    timer.daemon = True
    timer.start()
    try:
        yield
    except _ThreadTimeout:
        raise TaskTimeout(f"timed out after {seconds:g} s") from None
    finally:
        done.set()
        timer.cancel()


class _ThreadTimeout(Exception):
    """Raised asynchronously in a task thread; turned into TaskTimeout with its message."""
