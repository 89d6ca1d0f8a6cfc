"""``ForkRunner``: each task in a forked work horse, as RQ's default ``Worker`` does.

The child always leaves by ``os._exit``: the stack above it is the parent worker's.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import sys
import traceback
from collections.abc import Callable
from functools import partial
from typing import Any, NoReturn

from rq_serviceq.job import ServiceQJob
from rq_serviceq.models import Settings
from rq_serviceq.task.remarks import Outcome, Verdict
from rq_serviceq.worker.run.call import call
from rq_serviceq.worker.run.gate import never
from rq_serviceq.worker.run.runner import Runner


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
        outcome = call(func, settings, job, never)
        with os.fdopen(write_end, "wb") as pipe:
            pipe.write(json.dumps([outcome.verdict.value, outcome.remark, outcome.after, outcome.throttle]).encode())
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
        verdict, remark, after, throttle = json.loads(payload)
        return Outcome(Verdict(verdict), remark, after, throttle)
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
