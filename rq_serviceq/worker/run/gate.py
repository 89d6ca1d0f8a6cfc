"""Where a runner asks whether a task may start, and says that it started and how it ended (``Gate``).

One lock across "may it start" and "it started" is what makes ``pause()`` exact.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, TypeVar

from rq_serviceq.job import ServiceQJob
from rq_serviceq.task.remarks import Outcome
from rq_serviceq.worker.journal import Journal

T = TypeVar("T")


def never() -> bool:
    return False


def started() -> bool:
    return True


@dataclass
class Hold:
    """No task starts before ``until`` (``time.monotonic()``): a task's Throttle holds every group its worker
    has begun, the one claimed early and queued behind it too, not only the rest of its own group."""

    until: float = float("-inf")


@dataclass
class Gate:
    """Where a runner asks whether a task may start, and says that it started and how it ended.

    ``lock`` (the worker's) is held across the decision to start a task and marking it
    started, and the worker acknowledges a pause under the same lock: a pause falls
    either before the decision (the task is given back) or after the task was committed
    to start, never in between.  So when ``pause()`` returns no task starts.
    """

    should_stop: Callable[[], bool] = never  # a stop or a pause since the claim: give the rest back
    deadline: float = float("inf")  # perf_counter() time past which unstarted tasks are given back
    lock: AbstractContextManager[Any] = field(default_factory=threading.Lock)
    journal: Journal | None = None
    exiting: Callable[[], bool] = never  # the worker's own cold shutdown is under way
    over: bool = False  # the group was recorded: a straggler thread's outcome is no longer journaled
    first_start: float | None = None  # perf_counter() when the group's first task was asked to start (threads)
    hold: Hold = field(default_factory=Hold)  # the worker's, shared by all its gates

    def admit(self, job: ServiceQJob, launch: Callable[[], T]) -> T | None:
        """Under the lock: None if ``job`` must not start; else mark it started and ``launch`` it.

        A ``launch`` that is ``started`` begins nothing itself (the caller runs the task once this returns),
        so the start's journal write is sent after the lock is let go yet before the task begins: other
        slots' starts no longer wait behind a socket write.  A pause acknowledged meanwhile finds the task
        committed to start, as before; a launch that begins the task itself (a fork) sends it under the lock."""
        deferred = launch is started and self.journal is not None
        with self.lock:
            if self.should_stop() or time.perf_counter() > self.deadline or time.monotonic() < self.hold.until:
                return None
            if self.journal is not None:
                self.journal.started(job, send=not deferred)
            if not deferred:
                return launch()
        assert self.journal is not None
        self.journal.flush()
        return launch()

    def ended(self, job: ServiceQJob, outcome: Outcome, send: bool = True) -> None:
        if outcome.throttle:  # the provider pushed back on the account: what has not started goes back
            self.hold.until = max(self.hold.until, time.monotonic() + outcome.after)
        if self.journal is not None and not self.over:
            self.journal.ended(job, outcome, send)


@dataclass
class GroupResult:
    done: list[tuple[ServiceQJob, Outcome]] = field(default_factory=list)
    unstarted: list[ServiceQJob] = field(default_factory=list)  # given back when a stop was asked for
    seconds: float = 0.0
    unavailable: str | None = None  # why the task function cannot be had here (all tasks given back)
