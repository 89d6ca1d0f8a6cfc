"""The Flask example with Flask's test client, its CLI runner and a real `flask serviceq worker` process."""

from __future__ import annotations

import contextlib
import importlib
import os
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from redis import Redis

from tests.conftest import ROOT, untracked_under

EXAMPLE = ROOT / "examples" / "flask"


@pytest.fixture
def example(conn: Redis, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    monkeypatch.syspath_prepend(str(EXAMPLE))
    monkeypatch.setenv("EXAMPLE_DB", str(tmp_path / "greetings.sqlite3"))
    # init_app exports the example's allow-list to this process's environment: undone at teardown,
    # so that later tests' task functions (tests.tasks) are not refused.
    monkeypatch.setenv("RQ_SERVICEQ_ALLOWED_MODULES", "")
    for module in ("app", "greetings"):
        sys.modules.pop(module, None)
    example_app = importlib.import_module("app")  # examples/flask/app.py, on the path prepended above

    example_app.create_tables(os.environ["EXAMPLE_DB"])
    yield example_app
    for module in ("app", "greetings"):
        sys.modules.pop(module, None)


def test_push_through_the_app_and_work_with_flask_serviceq_worker(example: Any, redis_url: str) -> None:
    app = example.create_app()
    client = app.test_client()
    names = [{"name": n} for n in ("ada", "grace", "linus")] + [{"name": ""}]
    response = client.post("/greetings", json=names)
    assert response.status_code == 202 and len(response.get_json()["task_ids"]) == 4
    sq = example.serviceq.get("greetings", app)
    assert sq.settings.worker_count == 2 and sq.settings.retry_limit == 1  # SERVICEQ_QUEUES defaults

    env = dict(os.environ, PYTHONPATH=str(ROOT))
    cmd = [sys.executable, "-m", "flask", "--app", "app.py", "serviceq", "worker", "greetings", "--interval", "0.2"]
    before = untracked_under(EXAMPLE)
    proc = subprocess.Popen(cmd, cwd=EXAMPLE, env=env, start_new_session=True)
    try:
        report = sq.wait_for_batch(timeout=60)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)
    assert (report["total_success"], report["total_failed"]) == (3, 1)
    assert untracked_under(EXAMPLE) == before  # no database, log or cache file left in the clone
    assert client.get("/greetings/report").get_json()["failed_tasks"][0]["remark"] == "NO_RETRY | nobody to greet"
    assert client.get("/greetings/status").get_json()["status"] == "FINISHED"
    with sqlite3.connect(os.environ["EXAMPLE_DB"]) as db:
        rows = db.execute("SELECT name, pid FROM greeting ORDER BY name").fetchall()
    assert [name for name, _ in rows] == ["ada", "grace", "linus"] and all(pid != os.getpid() for _, pid in rows)

    runner = app.test_cli_runner()
    assert "FINISHED" in runner.invoke(args=["serviceq", "status", "greetings"]).output
    unknown = runner.invoke(args=["serviceq", "status", "nope"])
    assert unknown.exit_code == 2 and "no service queue named 'nope'" in unknown.output


def test_unknown_queue_setting_fails_at_start_up(example: Any) -> None:
    with pytest.raises(ValueError, match="unknown setting"):
        example.create_app({"SERVICEQ_QUEUES": {"greetings": {"retries": 2}}})


def test_worker_command_refuses_an_unknown_queue(example: Any) -> None:
    app = example.create_app()
    result = app.test_cli_runner().invoke(args=["serviceq", "worker", "nope"])
    assert result.exit_code == 2 and "no service queue named 'nope'" in result.output and "--create" in result.output


def test_a_queue_setting_of_the_app_sets_a_rate_limit(example: Any) -> None:
    settings = {"task_function": "greetings.store_greeting", "rate_limit": 5.0, "rate_burst": 2}
    app = example.create_app({"SERVICEQ_QUEUES": {"paced": settings}})
    sq = example.serviceq.get("paced", app)
    assert (sq.settings.rate_limit, sq.settings.rate_burst) == (5.0, 2)


def test_flask_example_keeps_its_database_out_of_the_clone(example: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run as its README says (no EXAMPLE_DB), the example's SQLite file is in the temp directory."""
    monkeypatch.delenv("EXAMPLE_DB")
    database = Path(example.create_app().config["DATABASE"])
    assert database.is_absolute() and not database.is_relative_to(ROOT), database
