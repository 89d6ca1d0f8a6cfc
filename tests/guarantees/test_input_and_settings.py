"""Input the library must refuse or survive: half-written pushes, deep JSON, damaged task
hashes, absurd settings, racing requeues, skewed supervisor clocks, and where Redis is."""

from __future__ import annotations

import ast
import contextlib
import logging
import re
import sys
import threading
import time
import tomllib
import zlib
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from pydantic import ValidationError
from redis import Redis
from redis.typing import EncodableT, FieldT

from rq_serviceq import PushError, ServiceQ
from rq_serviceq.batch import report
from rq_serviceq.batch import requeue as requeueing
from rq_serviceq.batch.push import MAX_TASK_DEPTH, json_depth
from rq_serviceq.store import connection, state
from rq_serviceq.testing import free_port
from rq_serviceq.worker.supervisor import Supervisor
from tests import tasks
from tests.conftest import ROOT, drain, set_call, stored_task, text, wait_until
from tests.rq_compat.test_dashboard import load_dashboard


def _queued(sq: ServiceQ) -> list[str]:
    return [text(x) for x in sq.connection.lrange(sq.keys.queue, 0, -1)]


def _begun(conn: Redis) -> list[str]:
    return [text(x) for x in conn.lrange("test:batch_begin", 0, -1)]


# --- 1. push_many(generator) that fails half-way ------------------------------------------
def _tasks_with_bad_one_at(position: int, total: int) -> Iterator[Any]:
    for i in range(total):
        yield {"when": object()} if i == position else {"value": True, "i": i}


def test_generator_refused_half_way_says_what_was_written_and_begins_its_batch(
    make_sq: Callable[..., ServiceQ], conn: Redis
) -> None:
    sq = make_sq("drag", worker_count=1, auto_start=True)
    sq.set_task_function(tasks.returns)
    sq.set_batch_begin_callback(tasks.store_begin)
    with pytest.raises(PushError, match="task 9000: task must be JSON-serializable") as refused:
        sq.push_many(_tasks_with_bad_one_at(9_000, 10_000))
    err = refused.value
    assert isinstance(err, TypeError) and isinstance(err, ValueError)  # what was raised before, still caught
    assert len(err.task_ids) == 8_000  # the chunks read before the bad one, written in order
    assert err.batch_ids == [sq.current_batch_id()]
    assert len(_begun(conn)) == 1  # the batch-begin callback ran, as after any push
    assert len(sq._processes) == 1  # and auto_start started the worker
    done = sq.wait_for_batch(timeout=90)
    assert (done["total_submitted"], done["total_success"]) == (8_000, 8_000)
    assert {t["task_id"] for t in done["passed_tasks"]} == set(err.task_ids)


def test_a_list_with_a_bad_task_writes_nothing(make_sq: Callable[..., ServiceQ], conn: Redis) -> None:
    sq = make_sq("drag", worker_count=0)
    before = conn.dbsize()
    with pytest.raises(PushError, match="task 1500: ") as refused:
        sq.push_many([{"i": i} if i != 1500 else {"bad": {1, 2}} for i in range(2_000)])
    assert (refused.value.task_ids, refused.value.batch_ids) == ([], [])
    assert conn.dbsize() == before and sq.get_status() == "CREATED"


def test_a_generator_that_raises_keeps_its_error_and_says_what_was_written(
    make_sq: Callable[..., ServiceQ], conn: Redis
) -> None:
    sq = make_sq("drag", worker_count=0)
    sq.set_batch_begin_callback(tasks.store_begin)

    def source() -> Iterator[dict[str, int]]:
        yield from ({"i": i} for i in range(8_000))
        raise KeyError("row 8000 of the CSV")

    with pytest.raises(KeyError) as raised:
        sq.push_many(source())
    assert any("wrote 8000 tasks" in note for note in raised.value.__notes__)
    assert len(_queued(sq)) == 8_000 and len(_begun(conn)) == 1


# --- 2. JSON too deep to read back ----------------------------------------------------------
def _nested(levels: int) -> Any:
    value: Any = 0
    for _ in range(levels):
        value = [value]
    return value


@pytest.mark.parametrize("levels", [MAX_TASK_DEPTH, 989, 100_000])  # in a dict: one level more
def test_tasks_nested_too_deep_are_refused_and_change_nothing(
    make_sq: Callable[..., ServiceQ], conn: Redis, levels: int
) -> None:
    sq = make_sq("drag", worker_count=0)
    before = conn.dbsize()
    with pytest.raises(PushError, match="nested"):
        sq.push({"value": True, "deep": _nested(levels)})
    assert conn.dbsize() == before and sq.get_status() == "CREATED"


def test_a_task_at_the_depth_limit_is_pushed_and_read_back(make_sq: Callable[..., ServiceQ]) -> None:
    sq = make_sq("drag", worker_count=0)
    sq.set_task_function(tasks.returns)
    deepest = {"value": True, "deep": _nested(MAX_TASK_DEPTH - 1), "text": "[{" * 500}  # brackets in text are text
    sq.push(deepest)
    drain(sq)
    assert sq.get_batch_report()["passed_tasks"][0]["task"] == deepest


def test_json_depth_skips_strings() -> None:
    assert json_depth('{"a":"[[[\\"[[","b":[[1],{"c":[]}]}') == 4
    assert json_depth("[]") == 1 and json_depth('"[[["') == 0 and json_depth("3") == 0


# --- 3. a damaged task hash in a report -----------------------------------------------------
def test_unreadable_task_data_is_reported_not_raised(
    make_sq: Callable[..., ServiceQ], conn: Redis, caplog: pytest.LogCaptureFixture
) -> None:
    sq = make_sq("drag", worker_count=0)
    sq.set_task_function(tasks.returns)
    ids = sq.push_many([{"value": [False, f"NO_RETRY | no {i}"]} for i in range(5)])
    drain(sq)
    batch_id = sq.current_batch_id()
    assert batch_id is not None
    set_call(conn, ids[0], zlib.compress(b"not json"))
    set_call(conn, ids[1], b'{"not": "a call"}')
    conn.hset(f"rq:job:{ids[2]}", "sq_task", b"\xff\x00 not even utf-8")  # a piece of the task's JSON

    rep = sq.get_batch_report(batch_id)
    unreadable = [t for t in rep["failed_tasks"] if t["task"] is None]
    assert sorted(t["task_id"] for t in unreadable) == sorted(ids[:3])
    assert all(t["remark"].startswith("UNREADABLE | the task's data could not be read") for t in unreadable)
    assert all(t["remark"].endswith("remark: NO_RETRY | no " + str(ids.index(t["task_id"]))) for t in unreadable)
    assert len(list(sq.iter_tasks(batch_id, "failed"))) == 5

    with caplog.at_level(logging.WARNING, logger="rq_serviceq"):
        assert sq.requeue_failed(batch_id) == 2  # the readable ones
    assert sum("not requeueing task" in r.getMessage() for r in caplog.records) == 3


# --- 4. settings ranges ---------------------------------------------------------------------
@pytest.mark.parametrize(
    ("method", "kwargs"),
    [
        ("set_worker_config", {"worker_count": 10**9}),
        ("set_worker_config", {"waiting_period": 1e10}),
        ("set_worker_config", {"resting_period": 86_401}),
        ("set_worker_config", {"waiting_period": True}),
        ("set_worker_config", {"concurrency": 1025}),
        ("set_retry_config", {"retry_limit": 10**30}),
        ("set_retry_config", {"loop_backoff": 1e10}),
        ("set_limits", {"max_task_bytes": 10**12}),
        ("set_limits", {"task_timeout": True}),
        ("set_limits", {"task_timeout": 86_401}),
        ("set_limits", {"callback_timeout": False}),
        ("set_limits", {"callback_timeout": 1e9}),
        ("set_report_config", {"report_ttl": 10**15}),
        ("set_report_config", {"report_inline_limit": 10**7}),
        ("scale", {"worker_count": 5_000}),
    ],
)
def test_absurd_settings_are_refused_by_name_and_change_nothing(
    make_sq: Callable[..., ServiceQ], conn: Redis, method: str, kwargs: dict[str, Any]
) -> None:
    sq = make_sq("drag")
    before = conn.hgetall(sq.keys.state)
    with pytest.raises(ValidationError, match=next(iter(kwargs))):
        getattr(sq, method)(**kwargs)
    assert conn.hgetall(sq.keys.state) == before


def test_settings_at_their_limits_are_taken(make_sq: Callable[..., ServiceQ]) -> None:
    sq = make_sq("drag")
    sq.set_worker_config(worker_count=1_000, waiting_period=86_400, resting_period=0, auto_start=False)
    sq.set_retry_config(retry_limit=1_000, loop_backoff=86_400)
    sq.set_limits(task_timeout=86_400, callback_timeout=1, max_task_bytes=64 * 1024 * 1024)
    sq.set_report_config(report_ttl=365 * 86_400, report_inline_limit=1_000_000)
    described = ServiceQ("drag", connection=sq.connection).describe()
    assert (described["worker_count"], described["task_timeout"], described["callback_timeout"]) == (1000, 86400, 1)
    assert isinstance(described["task_timeout"], float)


def test_stored_settings_load_and_out_of_range_ones_fall_back(conn: Redis, caplog: pytest.LogCaptureFixture) -> None:
    old: dict[FieldT, EncodableT] = {  # as an older version wrote them: in range, and one out of today's ranges
        "id": "abc",
        "name": "drag",
        "worker_count": "3",
        "waiting_period": "2.5",
        "retry_limit": "1000000000000",
        "task_timeout": "1.0",
        "auto_start": "0",
        "max_task_bytes": "100",
        "status": "RUNNING",
    }
    conn.hset("rq:serviceq:drag:state", mapping=old)
    with caplog.at_level(logging.WARNING, logger="rq_serviceq"):
        settings = ServiceQ("drag", connection=conn).settings
    assert (settings.worker_count, settings.waiting_period, settings.task_timeout) == (3, 2.5, 1.0)
    assert (settings.auto_start, settings.max_task_bytes, settings.retry_limit) == (False, 100, 0)
    assert any("retry_limit=1000000000000 is out of range" in r.getMessage() for r in caplog.records)
    sq = ServiceQ("drag", connection=conn)
    sq.set_retry_config(retry_limit=2)  # the owner can set it right
    assert state.load(conn, "drag").retry_limit == 2


# --- 5. batch history ------------------------------------------------------------------------
def test_batches_whose_report_expired_leave_the_history(make_sq: Callable[..., ServiceQ], conn: Redis) -> None:
    sq = make_sq("drag", worker_count=0)
    sq.set_task_function(tasks.returns)
    sq.set_report_config(report_ttl=1)
    sq.push({"value": True})
    drain(sq)
    first = sq.current_batch_id()
    assert first is not None
    wait_until(lambda: not conn.exists(sq.keys.batch(first)), timeout=10)
    sq.push({"value": True})
    drain(sq)
    history = [text(b) for b in conn.zrange(sq.keys.batches, 0, -1)]
    assert history == [sq.current_batch_id()] and first not in history


def test_history_trim_looks_at_a_bounded_number_of_entries(make_sq: Callable[..., ServiceQ], conn: Redis) -> None:
    sq = make_sq("drag", worker_count=0)
    conn.zadd(sq.keys.batches, {f"gone-{i}": i for i in range(250)})
    assert len(report.forget_expired_batches(conn, sq.keys)) == report.HISTORY_SWEEP
    assert conn.zcard(sq.keys.batches) == 250 - report.HISTORY_SWEEP


# --- 6. one way to find Redis ------------------------------------------------------------------
def test_redis_url_order(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RQ_REDIS_URL", raising=False)
    monkeypatch.delenv("REDIS_URL", raising=False)
    assert connection.redis_url() == "redis://localhost:6379/0"
    monkeypatch.setenv("REDIS_URL", "redis://b:6379/0")
    assert connection.redis_url() == "redis://b:6379/0"
    monkeypatch.setenv("RQ_REDIS_URL", "redis://a:6379/0")
    assert connection.redis_url() == "redis://a:6379/0"
    assert connection.redis_url("redis://given:6379/0") == "redis://given:6379/0"


def test_serviceq_finds_redis_where_workers_do(conn: Redis, redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RQ_REDIS_URL", redis_url)
    monkeypatch.setenv("REDIS_URL", f"redis://127.0.0.1:{free_port()}/0")  # nothing listens there
    sq = ServiceQ("drag")
    assert conn.exists(sq.keys.state)
    assert ServiceQ.open("drag").id == sq.id
    monkeypatch.delenv("REDIS_URL")
    assert ServiceQ("drag").id == sq.id


def test_dashboard_falls_back_to_redis_url(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RQ_DASHBOARD_REDIS_URL", raising=False)
    monkeypatch.delenv("RQ_REDIS_URL")
    app = load_dashboard().create_app()
    assert app.config["RQ_DASHBOARD_REDIS_URL"] == (redis_url,)  # rq-dashboard keeps a tuple


# --- 7. two requeues at once -------------------------------------------------------------------
def test_two_requeues_at_once_requeue_each_task_once(
    make_sq: Callable[..., ServiceQ], conn: Redis, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    sq = make_sq("drag", worker_count=0)
    sq.set_task_function(tasks.returns)
    sq.push_many([{"value": [False, "NO_RETRY | no"], "i": i} for i in range(50)])
    drain(sq)
    batch_id = sq.current_batch_id()
    # Both callers read the failed list before either pushes: the race, every time.
    both_read = threading.Barrier(2, timeout=20)
    read = requeueing.tasks_to_requeue

    def read_then_wait(conn: Redis, ids: list[str]) -> list[tuple[str, Any]]:
        found = read(conn, ids)
        both_read.wait()
        return found

    monkeypatch.setattr(requeueing, "tasks_to_requeue", read_then_wait)
    counts: list[int] = []

    def requeue() -> None:
        counts.append(ServiceQ("drag", connection=Redis.from_url(redis_url)).requeue_failed(batch_id))

    threads = [threading.Thread(target=requeue) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(counts) == 2 and sum(counts) == 50  # how the two split them is up to the race
    assert len(_queued(sq)) == 50
    assert sorted(t["i"] for t in (stored_task(conn, i) for i in _queued(sq))) == list(range(50))


# --- 8. supervisors with clocks that disagree ------------------------------------------------------
def test_a_supervisor_whose_clock_is_ahead_does_not_evict_the_other(
    make_sq: Callable[..., ServiceQ], conn: Redis, redis_url: str
) -> None:
    make_sq("drag", worker_count=2, auto_start=False)
    on_time = Supervisor(conn, "drag", redis_url)
    ahead = Supervisor(conn, "drag", redis_url, clock=lambda: time.time() + 60)
    try:
        for sup in (on_time, ahead, on_time, ahead):
            sup.tick()
        assert len(on_time.children) + len(ahead.children) == 2
        assert conn.zcard(on_time.keys.supervisors) == 2
    finally:
        for sup in (on_time, ahead):
            with contextlib.suppress(Exception):
                sup.shutdown()
            for proc in [*sup.children.values(), *sup.leaving.values()]:
                if proc.poll() is None:
                    proc.kill()
                proc.wait(10)


# --- 9. packaging and docs -------------------------------------------------------------------------
def _project() -> dict[str, Any]:
    project: dict[str, Any] = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return project


def _names(requirements: list[str]) -> set[str]:
    return {re.split(r"[<>=;\[ ]", line.strip())[0].lower() for line in requirements}


def test_every_module_level_import_is_declared() -> None:
    declared = _names(_project()["dependencies"])
    imported: set[str] = set()
    for path in (ROOT / "rq_serviceq").glob("*.py"):
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.Import):
                imported |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                imported.add(node.module.split(".")[0])
    third_party = imported - set(sys.stdlib_module_names) - {"__future__", "rq_serviceq"}
    assert third_party <= declared, f"imported but not in the dependencies of pyproject.toml: {third_party - declared}"
    assert "types-croniter" in _names(_project()["optional-dependencies"]["dev"])


def test_docs_name_no_paths_of_one_machine() -> None:
    deploy = [path for path in (ROOT / "deploy").rglob("*") if path.is_file()]
    texts = [ROOT / "README.md", *(ROOT / "docs").glob("*.md"), *deploy]
    local = re.compile(r"/work/|/tmp/sq-|/home/")
    found = [f"{p.relative_to(ROOT)}: {m.group()}" for p in texts for m in local.finditer(p.read_text())]
    assert not found


def test_deploy_examples_say_what_a_worker_for_a_new_queue_does(
    spawn_cli_worker: Callable[..., Any], conn: Redis
) -> None:
    for unit in ("systemd/rq-serviceq-worker@.service", "supervisord/rq-serviceq.conf"):
        assert "no service queue named" not in (ROOT / "deploy" / unit).read_text()  # no such exit
    worker = spawn_cli_worker("fresh-pending", "--burst")
    assert worker.wait(60) == 0
    assert ServiceQ.open("fresh", connection=conn).get_status() == "CREATED"
