"""worker → task: running a claimed group's task functions and reading their verdicts.

``gate`` (may a task start, journaled starts and ends), ``call`` (one attempt: the task function, its time
limit, its verdict), ``runner`` (a group serially, on threads or on an event loop), ``fork`` (a work horse per
task).  Kept apart from the worker loop so the same code serves worker processes and ``work_once``
(``cycle.process``).
"""

from rq_serviceq.worker.run.call import TaskFunctionUnavailable, always, current_qtask
from rq_serviceq.worker.run.fork import ForkRunner
from rq_serviceq.worker.run.gate import Gate, GroupResult, Hold
from rq_serviceq.worker.run.runner import Runner, Running

__all__ = [
    "ForkRunner",
    "Gate",
    "GroupResult",
    "Hold",
    "Runner",
    "Running",
    "TaskFunctionUnavailable",
    "always",
    "current_qtask",
]
