"""Task functions and callbacks the tests hand to service queues.

They live in a module (not in test functions) because worker processes
import them by path.  Callbacks write what they saw to the Redis the worker
uses, so a test can read it back from another process.
"""

from __future__ import annotations

import json
import os
import time
from functools import lru_cache
from typing import Any

from redis import Redis

from rq_serviceq import NoRetry, Retry, ServiceQWorker, Throttle, connect, current_qtask
from rq_serviceq.store.keys import Keys
from rq_serviceq.store.replies import text


def _conn() -> Redis:
    return _connect(os.environ.get("RQ_REDIS_URL") or os.environ["REDIS_URL"])


@lru_cache(maxsize=4)
def _connect(url: str) -> Redis:
    return connect(url)  # a redis+sentinel:// URL too


def seed_task(task: dict[str, Any]) -> tuple[bool, str]:
    """The seed's worked example: Tuhin3 NO_RETRY, Tuhin4 passes on its 4th attempt, Tuhin6 always RETRY."""
    name = task["name"]
    qtask = current_qtask()
    assert qtask is not None  # a task function runs inside a worker
    attempt = qtask["total_retry_attempts"]
    if name == "Tuhin3":
        return False, "NO_RETRY | user do not have whatsapp number"
    if name == "Tuhin4":
        if attempt < 3:
            return False, "RETRY | send for retry"
        return True, "SUCCESS | the task was finally successful"
    if name == "Tuhin6":
        return False, "RETRY | send for retry"
    return True, "SUCCESS | the task was successful"


def record_attempt(task: dict[str, Any]) -> tuple[bool, str]:
    """Records (task id, Redis time) for each attempt, then follows task['fail'] for the verdict."""
    qtask = current_qtask() or {}
    conn = _conn()
    secs, micros = conn.time()
    conn.rpush(f"test:attempts:{qtask['task_id']}", f"{secs + micros / 1e6:.6f}")
    if task.get("fail"):
        return False, "RETRY | asked to fail"
    return True, "SUCCESS | ok"


def mixed(task: dict[str, Any]) -> Any:
    """Outcome chosen by task['i'] % 5: pass, NO_RETRY, retry-then-pass, raise, NoRetry."""
    kind = task["i"] % 5
    attempt = (current_qtask() or {}).get("total_retry_attempts", 0)
    _conn().rpush("test:runs", f"{task['b']}:{task['i']}:{attempt}")
    if kind == 0:
        return True
    if kind == 1:
        return False, "NO_RETRY | not wanted"
    if kind == 2:
        return (True, "SUCCESS | second time lucky") if attempt >= 1 else (False, "retry | flaky")
    if kind == 3:
        raise ValueError("boom")
    raise NoRetry("gone for good")


def returns(task: dict[str, Any]) -> Any:
    """Returns exactly what the task says, to test how return values are read."""
    value = task["value"]
    return tuple(value) if isinstance(value, list) else value


def raises(task: dict[str, Any]) -> Any:
    if task.get("no_retry"):
        raise NoRetry(task.get("message", "stop"))
    raise RuntimeError(task.get("message", "kaput"))


def slow(task: dict[str, Any]) -> bool:
    time.sleep(task.get("seconds", 0.05))
    return True


def spin(task: dict[str, Any]) -> bool:
    """Busy in Python (never in C) for task['seconds']: a time limit stops it in any thread."""
    until = time.monotonic() + task.get("seconds", 0)
    while time.monotonic() < until:
        pass
    return True


def pushes_back(task: dict[str, Any]) -> tuple[bool, str]:
    """Records (Redis time, task number) as it starts, sleeps task['seconds'] (0), then the first attempt of a
    task with task['retry_after'] raises Retry(after=...), with task['throttle'] Throttle(after=...); then
    it passes."""
    conn = _conn()
    secs, micros = conn.time()
    conn.rpush("test:starts", f"{secs + micros / 1e6:.6f}:{task.get('i')}")
    time.sleep(task.get("seconds", 0))
    if not (current_qtask() or {}).get("total_retry_attempts"):
        if "retry_after" in task:
            raise Retry(after=task["retry_after"], message="provider busy")
        if "throttle" in task:
            raise Throttle(after=task["throttle"], message="429 from the provider")
    return True, "SUCCESS | sent"


def store_report(report: dict[str, Any]) -> None:
    conn = _conn()
    conn.rpush("test:batch_end", json.dumps(report))
    conn.incr(f"test:batch_end_count:{report['batch_id']}")


def store_begin(report: dict[str, Any]) -> None:
    _conn().rpush("test:batch_begin", json.dumps(report))


def store_update(worker_update: dict[str, Any], qtask: dict[str, Any]) -> None:
    _conn().rpush("test:updates", json.dumps({"worker": worker_update, "qtask": qtask}))


def concurrent_probe(task: dict[str, Any]) -> bool:
    """Sleeps, and records how many probes of this process were running at once at its start."""
    conn = _conn()
    running = conn.incr("test:running")
    conn.rpush("test:overlap", running)
    time.sleep(task.get("seconds", 0.1))
    conn.decr("test:running")
    return True


async def async_probe(task: dict[str, Any]) -> tuple[bool, str]:
    import asyncio

    conn = _conn()
    running = conn.incr("test:running")
    conn.rpush("test:overlap", running)
    await asyncio.sleep(task.get("seconds", 0.1))
    conn.decr("test:running")
    return True, f"SUCCESS | async {task['i']}"


def crash(task: dict[str, Any]) -> bool:
    """Kills the interpreter running it: only a forked work horse survives this."""
    if task.get("crash"):
        os._exit(3)
    return True


def pid_of_runner(task: dict[str, Any]) -> tuple[bool, str]:
    return True, f"SUCCESS | {os.getpid()}"


def timed(task: dict[str, Any]) -> tuple[bool, str]:
    """Records (Redis time, task number) as it starts, sleeps task['seconds'], then follows task['fail']."""
    conn = _conn()
    secs, micros = conn.time()
    conn.rpush("test:starts", f"{secs + micros / 1e6:.6f}:{task.get('i')}")
    time.sleep(task.get("seconds", 0.05))
    if task.get("fail"):
        return False, "RETRY | asked to fail"
    return True, "SUCCESS | done"


async def async_timed(task: dict[str, Any]) -> tuple[bool, str]:
    """``timed`` as an ``async def``: its groups run on the worker's one event loop, queued behind each other."""
    import asyncio

    conn = _conn()
    secs, micros = conn.time()
    conn.rpush("test:starts", f"{secs + micros / 1e6:.6f}:{task.get('i')}")
    await asyncio.sleep(task.get("seconds", 0.05))
    return True, "SUCCESS | done"


async def async_slow(task: dict[str, Any]) -> bool:
    import asyncio

    await asyncio.sleep(task.get("seconds", 0.05))
    return True


async def async_hang(task: dict[str, Any]) -> bool:
    """Awaits an hour (``hang``), or blocks its event loop an hour (``block``: a sync call in async code)."""
    import asyncio

    if task.get("block"):
        time.sleep(3600)
    if task.get("hang"):
        await asyncio.sleep(3600)
    return True


def hang(task: dict[str, Any]) -> bool:
    if task.get("hang"):
        time.sleep(3600)
    return True


def failing_end_callback(report: dict[str, Any]) -> None:
    _conn().incr(f"test:end_attempts:{report['batch_id']}")
    raise RuntimeError("reporting database is down")


def hanging_end_callback(report: dict[str, Any]) -> None:
    _conn().incr(f"test:end_attempts:{report['batch_id']}")
    time.sleep(3600)


def slow_end_callback(report: dict[str, Any]) -> None:
    """Marks its start and end; takes task-set seconds (stored on the first task) to run."""
    conn = _conn()
    conn.rpush(f"test:end_started:{report['batch_id']}", os.getpid())
    time.sleep(float(conn.get("test:callback_seconds") or 0))
    conn.incr(f"test:batch_end_count:{report['batch_id']}")


class ShortLeaseWorker(ServiceQWorker):
    """Leases of 2 s instead of 15 s, so tests of lease takeover run in seconds."""

    lease_seconds = 2.0


# --- poison tasks (tests/guarantees/test_poison.py) ---------------------------------------------------
def _exit_as_asked(task: dict[str, Any]) -> None:
    if task.get("raise") == "SystemExit":
        raise SystemExit(3)
    if task.get("raise") == "KeyboardInterrupt":
        raise KeyboardInterrupt("typed ^C")


def exits(task: dict[str, Any]) -> bool:
    """Raises SystemExit or KeyboardInterrupt when the task says so, or hangs (task['hang']) after saying so."""
    _exit_as_asked(task)
    if task.get("hang"):
        _conn().rpush("test:hanging", os.getpid())
        time.sleep(3600)
    return True


async def async_exits(task: dict[str, Any]) -> bool:
    import asyncio

    _exit_as_asked(task)
    if task.get("hang"):
        _conn().rpush("test:hanging", os.getpid())
        await asyncio.sleep(3600)
    return True


def blocks(task: dict[str, Any]) -> bool:
    """Says it started, then waits (30 s at most) for the test to let it go; raises what task['raise'] names."""
    _exit_as_asked(task)
    if task.get("block"):
        conn = _conn()
        conn.rpush("test:blocking", os.getpid())
        conn.blpop(["test:release"], timeout=30)
    return True


def journal_of(conn: Redis, task_id: str) -> list[str]:
    """The entries of the journal of the worker that holds ``task_id`` (rq_serviceq/worker/journal.py)."""
    owner, origin = (text(x) if x else "" for x in conn.hmget(f"rq:job:{task_id}", "worker_name", "origin"))
    if not owner or not origin:
        return []
    key = Keys(origin.removesuffix("-pending")).journal(owner)
    return [text(entry) for entry in conn.lrange(key, 0, -1)]


def _journaled(conn: Redis, task_id: str) -> bool:
    """Whether the outcome of ``task_id`` is in its worker's journal."""
    return any(entry.startswith(f"o{task_id}\x1f") for entry in journal_of(conn, task_id))


def dies(task: dict[str, Any]) -> tuple[bool, str]:
    """Kills its worker (os._exit) when task['die'], once the outcomes of task['after'] are journaled."""
    if task.get("die"):
        conn = _conn()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not all(_journaled(conn, t) for t in task.get("after", [])):
            time.sleep(0.01)
        os._exit(1)
    if task.get("fail"):
        return False, "RETRY | asked to fail"
    return True, "SUCCESS | ok"


class SlowStartWorker(ServiceQWorker):
    """Widens the moment between "this task may start" and its start, as a busy machine might.

    While ``test:widen`` is set, a check that lets a task start then waits (2 s at most) for
    the test to say that ``pause()`` has returned (``test:pause_returned``).  Without a lock
    shared by that check and the pause acknowledgement, the task would start after pause().
    """

    group_seconds = 10.0  # a group's time budget (4x this) must not be what gives the task back

    def _must_not_start(self) -> bool:
        refuse = super()._must_not_start()
        conn = self.connection
        if not refuse and conn.exists("test:widen"):
            conn.rpush("test:window", 1)
            deadline = time.monotonic() + 2
            while not conn.exists("test:pause_returned") and time.monotonic() < deadline:
                time.sleep(0.01)
            secs, micros = conn.time()  # the moment this task is let start (still under the start lock)
            conn.rpush("test:committed", f"{secs + micros / 1e6:.6f}")
        return refuse


def dies_counted(task: dict[str, Any]) -> tuple[bool, str]:
    """Counts its runs (test:runs:<task id>); kills its worker when task['die'], once every task of
    task['after'] has its outcome journaled or settled, so the deaths fall after those outcomes."""
    qtask = current_qtask() or {}
    conn = _conn()
    conn.incr(f"test:runs:{qtask['task_id']}")
    if task.get("die"):
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not all(
            _journaled(conn, t) or conn.hexists(f"rq:job:{t}", "sq_final") for t in task.get("after", [])
        ):
            time.sleep(0.01)
        os._exit(1)
    if task.get("fail"):
        return False, "RETRY | asked to fail"
    return True, "SUCCESS | ok"


def gated(task: dict[str, Any]) -> Any:
    """returns(task), after holding its worker (30 s at most) until the test opens the gate, when task['gate'].

    Says it is at the gate (test:at-gate, its task's id) so a test can look at RQ's tools while it runs."""
    if task.get("gate"):
        conn = _conn()
        conn.rpush("test:at-gate", (current_qtask() or {}).get("task_id", ""))
        conn.blpop(["test:gate"], timeout=30)
    return returns(task)


class HeldAtStartWorker(ServiceQWorker):
    """Stops until the file $TEST_START_GATE exists, before RQ's ``__init__`` names its connection
    ($TEST_HOLD_AT=init) or before RQ's bootstrap registers it (work), so that a test can cut the network
    just as a worker starts, as a slow machine might meet a cut.  Says it waits: $TEST_START_GATE.waiting."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        if os.environ.get("TEST_HOLD_AT") == "init":
            _hold_at_gate()
        super().__init__(*args, **kwargs)

    def work(self, *args: Any, **kwargs: Any) -> bool:
        if os.environ.get("TEST_HOLD_AT") == "work":
            _hold_at_gate()
        return super().work(*args, **kwargs)


def _hold_at_gate() -> None:
    gate = os.environ["TEST_START_GATE"]
    open(f"{gate}.waiting", "w").close()
    deadline = time.monotonic() + 30
    while not os.path.exists(gate) and time.monotonic() < deadline:
        time.sleep(0.02)


def end_callback_then_redis_full(report: dict[str, Any]) -> None:
    """Counts its runs, then (the first time) fills Redis up: as if memory ran out just after the callback."""
    conn = _conn()
    conn.incr(f"test:batch_end_count:{report['batch_id']}")
    if conn.incr("test:filled") == 1:
        conn.config_set("maxmemory", 1)
