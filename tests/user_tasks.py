"""A user's task module, as ``myapp.tasks`` would be; the allow-list's prefix in guarantees/test_import_paths.py.

Beside its own functions it holds every way a path that starts with its name could reach code it does not
define: modules, imports, aliases, partials, builtins, instances, inherited and borrowed methods.
"""

from __future__ import annotations

import functools
import os
from builtins import exec as run_code  # noqa: F401  a builtin reached through this module
from os import system as imported_system  # noqa: F401  an import under a new name
from typing import Any

from redis import Redis

from tests import elsewhere
from tests.elsewhere import Marker, mark  # noqa: F401  re-exported names

LEGIT = "test:legit"  # a list: what the legitimate functions below were called with


def _record(what: str, task: Any) -> tuple[bool, str]:
    Redis.from_url(os.environ.get("RQ_REDIS_URL") or os.environ["REDIS_URL"]).rpush(LEGIT, what)
    return True, f"SUCCESS | {what} ran"


def legit(task: Any) -> tuple[bool, str]:
    return _record("legit", task)


def batch_end(report: dict[str, Any]) -> None:
    _record("batch_end", report)


def rq_failure_callback(job: Any, connection: Any, *exc_info: Any) -> None:
    """An RQ failure callback (``on_failure``), as RQ calls it: the job, the connection, the exception."""
    _record("rq_failure_callback", job.id)


alias = legit  # the same function under a name it was not defined as
helper = os.system
partial_mark = functools.partial(elsewhere.mark, "partial")
legit.extra = elsewhere.mark  # type: ignore[attr-defined]  # an attribute hung on a function


class Tasks:
    @staticmethod
    def run(task: Any) -> tuple[bool, str]:
        return _record("Tasks.run", task)

    @classmethod
    def run_cls(cls, task: Any) -> tuple[bool, str]:
        return _record("Tasks.run_cls", task)

    borrowed = staticmethod(elsewhere.mark)  # a class attribute defined elsewhere


class SubTasks(Tasks):
    """Inherits run: ``tests.user_tasks.SubTasks.run`` names a method SubTasks does not define."""


class Derived(Marker):
    """Inherits mark from a class defined in tests.elsewhere."""


class Caller:
    def __call__(self, *args: Any) -> bool:
        return elsewhere.mark("Caller", *args)


caller = Caller()  # a callable instance: no __qualname__ of its own
