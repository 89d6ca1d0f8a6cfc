"""A path stored in Redis runs only what the worker's policy allows, judged by what the path reaches.

Anyone who can write to Redis can store any path as a task function or callback.  Each path below
would, if resolution trusted its text, reach code that tests.user_tasks (a user's ``myapp.tasks``)
does not define, or code in the standard library, rq, redis or rq-serviceq.  Each must fail its task
(``NO_RETRY | cannot import task function ...``) or be recorded as a refused callback in a real
worker, be refused at once by every setter, and run nothing: the functions it could reach leave a
mark in Redis (tests/elsewhere.py), and tests/never_imported.py leaves one when imported.
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
import timeit
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from redis import Redis

from rq_serviceq import ServiceQ, demo
from rq_serviceq.task.imports import ALLOWED_ENV, RefusedPath, UnresolvablePath, import_path_of, resolve
from tests import user_tasks
from tests.conftest import drain
from tests.elsewhere import EXECUTED

ROOT = Path(__file__).resolve().parents[2]
ALLOW = "tests.user_tasks"  # the allow-list the tests set, as an operator would set "myapp.tasks"

# Refused with the allow-list and without: each reaches something tests.user_tasks does not define.
THROUGH_A_USER_MODULE = [
    "tests.user_tasks.os.system",  # a module the user's module imported, then its function
    "tests.user_tasks.elsewhere.mark",  # the same, one level down in the user's own package
    "tests.user_tasks.elsewhere",  # a module named as a function
    "tests.user_tasks.functools.partial",
    "tests.user_tasks.imported_system",  # from os import system as imported_system
    "tests.user_tasks.helper",  # helper = os.system
    "tests.user_tasks.mark",  # a function re-exported from tests.elsewhere
    "tests.user_tasks.partial_mark",  # functools.partial(elsewhere.mark, ...)
    "tests.user_tasks.alias",  # alias = legit: a name legit was not defined under
    "tests.user_tasks.caller",  # a callable instance
    "tests.user_tasks.run_code",  # from builtins import exec as run_code
    "tests.user_tasks.legit.extra",  # an attribute hung on a legitimate function
    "tests.user_tasks.Tasks.borrowed",  # a class attribute holding a function from elsewhere
    "tests.user_tasks.SubTasks.run",  # inherited, not defined on SubTasks
    "tests.user_tasks.Derived.mark",  # inherited from a class in tests.elsewhere
    "tests.user_tasks.Tasks.mro",  # inherited from type
    "tests.user_tasks.Tasks.__init__",  # inherited from object
    "tests.user_tasks.__builtins__.exec",
    "tests.user_tasks.__import__",
    "tests.user_tasks.legit.__globals__",
    "tests.user_tasks.legit.__call__",
    "tests.user_tasks..legit",
    ".tests.user_tasks.legit",
    "tests.user_tasks.legit.",
    "tests.user_tasks",  # a module
    "tests.user_tasks.print",  # builtins are not a module's attributes: not found, and not run
]
# Refused without an allow-list: the standard library as a whole, rq, redis and rq-serviceq's internals.
WITHOUT_ALLOW_LIST = [
    "os.system",
    "timeit.timeit",
    "subprocess.getoutput",
    "builtins.exec",
    "this.s",  # never imported: importing it prints
    "rq_serviceq.task.imports.os.system",
    "rq_serviceq.worker.launcher.spawn_workers",
    "rq_serviceq.demo.run",  # of the demo, only send_message and print_report
    "rq_serviceq.demo.os.system",
    "rq_serviceq.demo.RedisServer",
    "rq.worker.Worker",
    "redis.Redis",
    "pip._internal.cli.main.main",  # main(["install", ...]): in nearly every environment
    "tests.tasks.os.system",  # tests.tasks is a user's package: allowed, but not what it imports
]
# Refused with the allow-list: anything not under it, before its module is imported.
WITH_ALLOW_LIST = [
    "os.system",
    "timeit.timeit",
    "rq_serviceq.demo.send_message",
    "tests.tasks.returns",
    "tests.elsewhere.mark",
    "tests.never_imported.run",
    "tests.user_tasks_but_not.legit",
]
UNRESOLVABLE = {"tests.user_tasks.print"}
CASES = [
    *(pytest.param(ALLOW, p, id=f"allow-list:{p}") for p in THROUGH_A_USER_MODULE + WITH_ALLOW_LIST),
    *(pytest.param("", p, id=f"no-allow-list:{p}") for p in THROUGH_A_USER_MODULE + WITHOUT_ALLOW_LIST),
]
CALLBACK_FIELDS = ("batch_begin_callback", "batch_end_callback", "worker_push_update_callback")


@pytest.fixture(autouse=True)
def fresh_resolve() -> Iterator[None]:
    """``resolve`` caches what it found: a test that changes the policy must not see the last one's."""
    resolve.cache_clear()
    yield
    resolve.cache_clear()


def _policy(monkeypatch: pytest.MonkeyPatch, allow: str) -> None:
    if allow:
        monkeypatch.setenv(ALLOWED_ENV, allow)
    else:
        monkeypatch.delenv(ALLOWED_ENV, raising=False)


def _refusal(path: str) -> Exception:
    """What resolve raises for a path that must not resolve (here, under the test's policy)."""
    expected = UnresolvablePath if path in UNRESOLVABLE else RefusedPath
    with pytest.raises(expected) as caught:
        resolve(path)
    return caught.value


def _nothing_ran(conn: Redis) -> None:
    assert conn.lrange(EXECUTED, 0, -1) == []
    assert "tests.never_imported" not in sys.modules
    assert "this" not in sys.modules


@pytest.mark.parametrize(("allow", "path"), CASES)
def test_resolve_refuses(monkeypatch: pytest.MonkeyPatch, allow: str, path: str) -> None:
    _policy(monkeypatch, allow)
    refused = _refusal(path)
    assert isinstance(refused, PermissionError if path not in UNRESOLVABLE else ImportError)
    assert "tests.never_imported" not in sys.modules
    assert "this" not in sys.modules


@pytest.mark.parametrize(("allow", "path"), CASES)
def test_a_refused_task_function_fails_its_task_and_runs_nothing(
    make_sq: Callable[..., ServiceQ], conn: Redis, monkeypatch: pytest.MonkeyPatch, allow: str, path: str
) -> None:
    _policy(monkeypatch, allow)
    sq = make_sq("drag", worker_count=0)
    conn.hset(sq.keys.state, "task_function", path)  # what a Redis writer could do
    sq.push({"cmd": "touch /tmp/pwned"})
    drain(sq)
    report = sq.get_batch_report()
    if path in UNRESOLVABLE:  # not there for this worker: given back, to wait for one that can import it
        assert (report["total_success"], report["total_failed"], report["total_pending"]) == (0, 0, 1)
    else:
        assert (report["total_success"], report["total_failed"]) == (0, 1)
        remark = report["failed_tasks"][0]["remark"]
        assert remark == f"NO_RETRY | cannot import task function {path!r}: {_refusal(path)}"
    _nothing_ran(conn)


@pytest.mark.parametrize(("allow", "path"), CASES)
def test_a_refused_callback_is_recorded_and_runs_nothing(
    make_sq: Callable[..., ServiceQ],
    conn: Redis,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    allow: str,
    path: str,
) -> None:
    _policy(monkeypatch, allow)
    sq = make_sq("drag", worker_count=0)
    sq.set_task_function(user_tasks.legit)
    conn.hset(sq.keys.state, mapping=dict.fromkeys(CALLBACK_FIELDS, path))
    with caplog.at_level(logging.ERROR, logger="rq_serviceq"):
        sq.push({"n": 1})  # the batch-begin callback runs here, in the pusher
        drain(sq)
    report = sq.get_batch_report()
    refused = _refusal(path)
    recorded = f"failed: {type(refused).__name__}: {refused}"
    assert report["total_success"] == 1
    assert report["end_callback"] == recorded
    assert conn.hget(sq.keys.batch(report["batch_id"]), "begin_callback") == recorded.encode()
    assert f"worker push update callback {path}" in caplog.text
    _nothing_ran(conn)


SETTERS = ("set_task_function", *(f"set_{field}" for field in CALLBACK_FIELDS))


@pytest.mark.parametrize(("allow", "path"), CASES)
def test_setters_refuse_at_once_and_write_nothing(
    make_sq: Callable[..., ServiceQ], conn: Redis, monkeypatch: pytest.MonkeyPatch, allow: str, path: str
) -> None:
    _policy(monkeypatch, allow)
    sq = make_sq("drag", worker_count=0)
    before = (sorted(conn.keys("*")), conn.hgetall(sq.keys.state))
    expected = UnresolvablePath if path in UNRESOLVABLE else RefusedPath
    for setter in SETTERS:
        with pytest.raises(expected):
            getattr(sq, setter)(path)
    assert (sorted(conn.keys("*")), conn.hgetall(sq.keys.state)) == before
    _nothing_ran(conn)


@pytest.mark.parametrize(
    ("allow", "func", "error"),
    [
        ("", os.system, RefusedPath),
        ("", timeit.timeit, RefusedPath),
        ("", print, RefusedPath),
        ("", user_tasks.helper, RefusedPath),  # os.system by another name
        ("", user_tasks.run_code, RefusedPath),
        ("", user_tasks.partial_mark, ValueError),  # no name to import it by
        (ALLOW, user_tasks.mark, RefusedPath),  # it lives in tests.elsewhere
        (ALLOW, demo.send_message, RefusedPath),
    ],
)
def test_setters_refuse_functions_from_refused_modules(
    make_sq: Callable[..., ServiceQ],
    conn: Redis,
    monkeypatch: pytest.MonkeyPatch,
    allow: str,
    func: Callable[..., object],
    error: type[Exception],
) -> None:
    _policy(monkeypatch, allow)
    sq = make_sq("drag", worker_count=0)
    before = conn.hgetall(sq.keys.state)
    for setter in SETTERS:
        with pytest.raises(error):
            getattr(sq, setter)(func)
    assert conn.hgetall(sq.keys.state) == before


def test_an_unresolvable_path_is_an_import_error_that_says_what_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    _policy(monkeypatch, "")
    with pytest.raises(ImportError, match=re.escape("no module 'no_such_module' found")):
        resolve("no_such_module.func")
    with pytest.raises(UnresolvablePath, match=re.escape("module tests.user_tasks has no 'Tasks.nope'")):
        resolve("tests.user_tasks.Tasks.nope")


def test_the_allow_list_refusal_says_what_to_do(monkeypatch: pytest.MonkeyPatch) -> None:
    _policy(monkeypatch, "myapp.tasks, myapp.hooks")
    with pytest.raises(PermissionError, match=f"not under the modules allowed by {ALLOWED_ENV}.*add its module"):
        resolve("tests.user_tasks.legit")


@pytest.mark.parametrize("allow", [ALLOW, ""])
def test_functions_and_methods_defined_in_an_allowed_module_still_run(
    make_sq: Callable[..., ServiceQ], conn: Redis, monkeypatch: pytest.MonkeyPatch, allow: str
) -> None:
    _policy(monkeypatch, allow)
    assert resolve("tests.user_tasks.Tasks") is user_tasks.Tasks
    sq = make_sq("drag", worker_count=0)
    sq.set_batch_end_callback(user_tasks.batch_end)
    functions: list[Callable[..., object] | str] = [
        user_tasks.legit,
        user_tasks.Tasks.run,
        user_tasks.Tasks.run_cls,
        "tests.user_tasks.Tasks.run",
    ]
    for func in functions:
        sq.set_task_function(func)
        sq.push({"n": 1})
        drain(sq)
        report = sq.get_batch_report()
        assert (report["total_success"], report["end_callback"]) == (1, "ok"), report
    names = ("legit", "Tasks.run", "Tasks.run_cls", "Tasks.run")
    assert conn.lrange(user_tasks.LEGIT, 0, -1) == [x.encode() for name in names for x in (name, "batch_end")]
    assert sq.describe()["task_function"] == "tests.user_tasks.Tasks.run"
    _nothing_ran(conn)


def test_a_worker_process_applies_its_own_allow_list(
    make_sq: Callable[..., ServiceQ],
    conn: Redis,
    monkeypatch: pytest.MonkeyPatch,
    spawn_cli_worker: Callable[..., subprocess.Popen[bytes]],
) -> None:
    """An `rq worker` process, with the allow-list in its environment: a refused path, then a legitimate one."""
    _policy(monkeypatch, ALLOW)
    sq = make_sq("drag", worker_count=0)
    conn.hset(sq.keys.state, "task_function", "tests.never_imported.run")
    spawn_cli_worker("drag-pending")
    sq.push({"n": 1})
    report = sq.wait_for_batch(timeout=30)
    assert report["failed_tasks"][0]["remark"].startswith(
        "NO_RETRY | cannot import task function 'tests.never_imported.run': 'tests.never_imported.run' is not under"
    )
    conn.hset(sq.keys.state, "task_function", "tests.user_tasks.elsewhere.mark")
    sq.push({"n": 2})
    assert "goes through the module tests.elsewhere" in sq.wait_for_batch(timeout=30)["failed_tasks"][0]["remark"]
    sq.set_task_function(user_tasks.Tasks.run_cls)
    sq.push({"n": 3})
    assert sq.wait_for_batch(timeout=30)["total_success"] == 1
    assert conn.lrange(user_tasks.LEGIT, 0, -1) == [b"Tasks.run_cls"]
    _nothing_ran(conn)


def test_the_demo_runs_without_an_allow_list(conn: Redis, redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Of rq_serviceq, exactly the demo's task function and batch-end callback may be named."""
    _policy(monkeypatch, "")
    assert import_path_of(demo.send_message) == "rq_serviceq.demo.send_message"
    assert import_path_of(demo.print_report) == "rq_serviceq.demo.print_report"
    env = {k: v for k, v in os.environ.items() if k != ALLOWED_ENV}
    env.update(REDIS_URL=redis_url, PYTHONPATH=str(ROOT))
    cmd = [sys.executable, "-m", "rq_serviceq.demo"]
    out = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=100)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "batch-end callback: 5 passed, 2 failed" in out.stdout


def test_the_marks_show_when_something_runs(
    make_sq: Callable[..., ServiceQ],
    conn: Redis,
    monkeypatch: pytest.MonkeyPatch,
    spawn_cli_worker: Callable[..., subprocess.Popen[bytes]],
) -> None:
    """The control for every ``_nothing_ran``: named where it is defined, with no allow-list,
    tests.never_imported.run is allowed, and importing and calling it both leave their mark."""
    _policy(monkeypatch, "")
    sq = make_sq("drag", worker_count=0)
    conn.hset(sq.keys.state, "task_function", "tests.never_imported.run")
    spawn_cli_worker("drag-pending")  # its own process: this one never imports tests.never_imported
    sq.push({"n": 1})
    assert sq.wait_for_batch(timeout=30)["total_success"] == 1
    marks = [b"('tests.never_imported imported',)", b"('tests.never_imported.run', {'n': 1})"]
    assert conn.lrange(EXECUTED, 0, -1) == marks
