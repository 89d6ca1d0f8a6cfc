"""`rq-serviceq` end to end against a real Redis: click's runner for most commands, real
processes where it is about processes (a terminal, the console script's exit codes)."""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from redis import Redis

from rq_serviceq import ServiceQ, __version__
from rq_serviceq.cli import cli, main
from rq_serviceq.cli import pushing as cli_push
from rq_serviceq.cli import watch as cli_watch
from rq_serviceq.store import scripts
from tests import tasks
from tests.conftest import ROOT, drain, present, wait_until


def run(*args: str, input: str | None = None) -> Result:
    return CliRunner().invoke(cli, list(args), input=input, catch_exceptions=False)


def one_line_error(result: Result, code: int, *fragments: str) -> None:
    """Failed with ``code``, one line on stderr that holds each fragment, no traceback."""
    assert result.exit_code == code, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.output, result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.fixture
def sq(make_sq: Callable[..., ServiceQ]) -> ServiceQ:
    queue = make_sq("drag", worker_count=0, auto_start=False)
    queue.set_task_function(tasks.returns)
    return queue


def test_version_help_and_unknown_options() -> None:
    assert run("--version").output.strip() == f"rq-serviceq, version {__version__}"
    assert "push" in run("--help").output and "watch" in run("--help").output
    bad = CliRunner().invoke(cli, ["status", "drag", "--colour"])
    assert bad.exit_code == 2 and "No such option '--colour'" in bad.stderr and "--help" in bad.stderr
    assert main(["--version"]) == 0


def test_expected_errors_are_one_line(redis_url: str, conn: Redis) -> None:
    one_line_error(run("status", "nope"), 2, "no service queue named 'nope'")
    one_line_error(run("status", "bad name!"), 2, "invalid service queue name")
    one_line_error(run("status", "drag", "--url", "redis://127.0.0.1:1/0"), 1, "cannot reach Redis")
    one_line_error(run("list", "--url", "redis://127.0.0.1:1/0"), 1, "cannot reach Redis")
    one_line_error(run("report", "nope"), 2, "no service queue named 'nope'")
    assert "pass --create" in run("status", "nope").stderr  # a shell's advice, not Python's
    listed = run("list", "--url", "redis://127.0.0.1:1/0")
    one_line_error(listed, 1, "cannot reach Redis at redis://127.0.0.1:1/0")  # names the server it tried
    one_line_error(run("scale", "nope", "-3"), 2, "worker_count must be 0 or more (got -3)")  # not "No such option"
    assert conn.dbsize() == 0  # no command created what it was asked about


def test_push_json_lines_then_status_batches_and_report(sq: ServiceQ, tmp_path: Path) -> None:
    lines = [{"value": True}, {"value": [False, "NO_RETRY | no phone"]}, {"value": True}]
    path = tmp_path / "tasks.jsonl"
    path.write_text("\n".join(json.dumps(t) for t in lines) + "\n\n")
    pushed = json.loads(run("push", "drag", str(path), "--json", "--ids").output)
    assert pushed["pushed"] == 3 and len(pushed["task_ids"]) == 3 and pushed["batch_ids"] == [sq.current_batch_id()]
    drain(sq)

    info = json.loads(run("status", "drag", "--json").output)
    assert (info["total_success"], info["total_failed"], info["status"]) == (2, 1, "FINISHED")
    assert "passed 2" in run("status", "drag").output
    (batch,) = json.loads(run("batches", "drag", "--json").output)
    assert batch["batch_id"] == pushed["batch_ids"][0] and batch["status"] == "FINISHED"
    assert batch["batch_id"] in run("batches", "drag").output

    full = json.loads(run("report", "drag", "--json").output)
    assert full == sq.get_batch_report()  # the same report the API gives, streamed
    failed = json.loads(run("report", "drag", batch["batch_id"], "--failed-only", "--json").output)
    assert failed["passed_tasks"] == [] and [t["remark"] for t in failed["failed_tasks"]] == ["NO_RETRY | no phone"]
    text = run("report", "drag", "--failed-only").output
    assert "failed tasks (1)" in text and "NO_RETRY | no phone" in text and "passed tasks" not in text


def test_push_json_array_streamed_across_reads(sq: ServiceQ, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli_push, "READ_SIZE", 7)  # every value and number straddles a read
    tasks_in = [{"value": True, "n": 12345678, "text": 'a \\" ] , [ string'} for _ in range(20)] + [[1, 2], 3.5]
    path = tmp_path / "tasks.json"
    path.write_text(json.dumps(tasks_in, indent=2))
    assert cli_push.detect_format(path) == "array"
    assert "pushed 22 task(s)" in run("push", "drag", str(path)).output
    assert [t.task for t in sq.iter_tasks(present(sq.current_batch_id()), "passed")] == []
    pushed = [json.loads(line) for line in json.loads(run("report", "drag", "--json").output)["passed_tasks"]] or None
    assert pushed is None  # nothing ran yet: the tasks wait in the queue
    assert sq.connection.llen(sq.keys.queue) == 22


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        ('{"value": true}\n{"value": true}\n{"value": tru}\n', "line 3: Expecting value"),
        ('{"value": true}\n\n{"value": NaN}\n', "line 3: task must be JSON-serializable"),
        ('{"value": true}\n' + "[" * 70 + "]" * 70 + "\n" + '{"value": 1}\n', "line 2: task is nested 70 levels"),
        ('[\n  {"value": true},\n  {"value": true}\n  {"value": 1}\n]', "line 4: expected ',' or ']'"),
        ('[\n  {"value": true},\n  {"value": x}\n]', "line 3: Expecting value"),
        ('[{"value": true}] trailing', "unexpected data after the JSON array"),
        ("", "no tasks found"),
    ],
)
def test_a_bad_file_pushes_nothing(sq: ServiceQ, tmp_path: Path, content: str, fragment: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(content)
    one_line_error(run("push", "drag", str(path)), 2, str(path), fragment, "nothing was pushed")
    assert sq.connection.llen(sq.keys.queue) == 0 and sq.current_batch_id() is None


def test_push_from_stdin_and_unknown_queue(sq: ServiceQ, conn: Redis) -> None:
    assert "pushed 2 task(s)" in run("push", "drag", "-", input='{"value": 1}\n{"value": 2}\n').output
    assert conn.llen(sq.keys.queue) == 2
    one_line_error(run("push", "dragg", "-", input='{"value": 1}\n'), 2, "no service queue named 'dragg'")
    assert "pushed 1 task(s)" in run("push", "new-q", "-", "--create", input="[1]").output
    # A new queue auto-starts a burst worker; with no task function it gives the task back and leaves
    # (the batch waits for a worker that can run it).  Let it leave, so that it does not bring the
    # queue back into a later test's flushed Redis.
    wait_until(lambda: not _processes_with("new-q-pending"))
    assert conn.llen(ServiceQ.open("new-q", connection=conn).keys.queue) == 1


def _processes_with(text: str) -> list[Path]:
    """Live processes whose command line holds ``text`` (the burst workers a push started)."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if text.encode() in cmdline.read_bytes():
                found.append(cmdline)
        except OSError:
            continue  # gone meanwhile
    return found


def test_config_sets_every_setting_or_none(sq: ServiceQ) -> None:
    one_line_error(run("config", "drag", "--worker-count", "5000", "--retry-limit", "2"), 2, "worker_count", "1000")
    assert sq.settings.retry_limit == 0  # all or nothing
    one_line_error(run("config", "drag", "--resting-period", "-1"), 2, "resting_period")
    one_line_error(run("config", "drag", "--task-function", "tests.tasks.nope"), 2, "tests.tasks.nope")
    one_line_error(run("config", "drag", "--task-timeout", "soon"), 2, "--task-timeout")
    out = run("config", "drag", "--worker-count", "3", "--retry-limit", "2", "--resting-period", "0.5",
              "--task-timeout", "none", "--no-auto-start", "--schedule", "0 * * * *", "--verbose",
              "--batch-end-callback", "tests.tasks.store_report", "--json")  # fmt: skip
    described = json.loads(out.output)
    assert (described["worker_count"], described["retry_limit"], described["resting_period"]) == (3, 2, 0.5)
    assert described["task_timeout"] is None and described["auto_start"] is False and described["verbose"] is True
    assert described["schedule"] == "0 * * * *" and described["batch_end_callback"] == "tests.tasks.store_report"
    assert "worker_count" in run("config", "drag").output
    assert json.loads(run("config", "drag", "--schedule", "none", "--json").output)["schedule"] is None


def test_config_sets_and_lifts_a_rate_limit(sq: ServiceQ) -> None:
    one_line_error(run("config", "drag", "--rate-limit", "fast"), 2, "--rate-limit")
    one_line_error(run("config", "drag", "--rate-limit", "0"), 2, "rate_limit")
    described = json.loads(run("config", "drag", "--rate-limit", "0.5", "--rate-burst", "3", "--json").output)
    assert (described["rate_limit"], described["rate_burst"]) == (0.5, 3)
    described = json.loads(run("config", "drag", "--rate-limit", "none", "--rate-burst", "none", "--json").output)
    assert (described["rate_limit"], described["rate_burst"]) == (None, None)
    described = json.loads(
        run("config", "drag", "--durable-replicas", "1", "--durable-timeout", "0.5", "--json").output
    )
    assert (described["durable_replicas"], described["durable_timeout"]) == (1, 0.5)
    one_line_error(run("config", "drag", "--durable-replicas", "17"), 2, "durable_replicas")


def test_breaker_shows_sets_refuses_and_turns_off(sq: ServiceQ) -> None:
    assert run("breaker", "drag").output.strip() == "breaker of drag: off"
    out = run("breaker", "drag", "--failure-ratio", "0.5", "--min-tasks", "20", "--consecutive-failures", "10",
              "--json").output  # fmt: skip
    assert json.loads(out) == {"queue": "drag", "failure_ratio": 0.5, "min_tasks": 20, "consecutive_failures": 10}
    assert sq.breaker().model_dump() == {"failure_ratio": 0.5, "min_tasks": 20, "consecutive_failures": 10}
    shown = run("breaker", "drag").output
    assert "pauses when 0.5 of at least 20 ended tasks failed or 10 attempts in a row failed" in shown
    one_line_error(run("breaker", "drag", "--failure-ratio", "2"), 2, "failure_ratio", "less than or equal to 1")
    one_line_error(run("breaker", "drag", "--min-tasks", "5"), 2, "give failure_ratio too")
    one_line_error(run("breaker", "drag", "--consecutive-failures", "0"), 2, "consecutive_failures")
    one_line_error(run("breaker", "drag", "--off", "--min-tasks", "5"), 2, "--off")
    assert sq.breaker().consecutive_failures == 10  # refused: nothing changed
    assert json.loads(run("breaker", "drag", "--failure-ratio", "0.2", "--json").output)["min_tasks"] == 20
    assert run("breaker", "drag", "--off").output.strip() == "breaker of drag: off" and not sq.breaker().is_on()
    assert "consecutive_failures" in run("config", "drag").output  # describe() shows it
    sq.pause()
    assert "paused         paused by hand" in run("status", "drag").output
    assert json.loads(run("status", "drag", "--json").output)["pause_reason"] == "paused by hand"
    sq.push({"value": True})
    watched = cli_watch.snapshot(sq, present(sq.current_batch_id()), cli_watch.RateMeter())
    assert " PAUSED (paused by hand) passed 0 " in cli_watch.plain_line(watched)
    assert "PAUSED (paused by hand)" in cli_watch.screen(watched)[0]


def test_controls(sq: ServiceQ, conn: Redis) -> None:
    sq.set_retry_config(retry_limit=1)
    sq.push_many([{"value": [False, "NO_RETRY | x"]}, {"value": True}])
    assert json.loads(run("pause", "drag", "--json").output) == {"queue": "drag", "status": "PAUSED"}
    assert sq.get_status() == "PAUSED"
    assert "resumed" in run("resume", "drag").output and sq.get_status() != "PAUSED"
    assert json.loads(run("scale", "drag", "4", "--json").output)["worker_count"] == 4
    assert sq.settings.worker_count == 4
    one_line_error(run("scale", "drag", "1001"), 2, "worker_count")
    drain(sq)
    first = sq.current_batch_id()
    assert first is not None
    assert json.loads(run("requeue-failed", "drag", first, "--json").output)["requeued"] == 1
    stopped = json.loads(run("stop", "drag", "--json").output)["stopped_batch"]
    assert stopped and stopped != first and sq.get_batch_report(stopped)["status"] == "STOPPED"
    assert "has no active batch" in run("stop", "drag").output
    names = [row["name"] for row in json.loads(run("list", "--json").output)]
    assert names == ["drag"] and "drag" in run("list").output
    refused = CliRunner().invoke(cli, ["delete", "drag"], input="n\n")
    assert refused.exit_code == 2 and conn.exists(sq.keys.state)
    assert "deleted drag" in run("delete", "drag", "--yes").output
    assert not conn.exists(sq.keys.state) and "no service queues" in run("list").output


def test_watch_follows_a_batch_to_its_end_in_plain_lines(
    sq: ServiceQ, spawn_cli_worker: Callable[..., subprocess.Popen[bytes]]
) -> None:
    sq.set_task_function(tasks.slow)
    sq.push_many([{"seconds": 0.05}] * 20)
    spawn_cli_worker("drag-pending")
    result = run("watch", "drag", "--interval", "0.1")
    lines = result.output.strip().splitlines()
    assert result.exit_code == 0 and len(lines) >= 2 and "\x1b[" not in result.output
    assert all(line.count(" batch ") == 1 for line in lines)  # one plain line per update
    assert "FINISHED passed 20 failed 0 pending 0" in lines[-1]
    again = json.loads(run("watch", "drag", "--json").output)  # an ended batch: one update, then done
    assert again["ended"] and again["passed"] == 20


def test_watch_shows_a_paused_queues_workers_paused(
    sq: ServiceQ, spawn_cli_worker: Callable[..., subprocess.Popen[bytes]]
) -> None:
    """A worker of a PAUSED service queue claims nothing: watch shows it PAUSED, not RUNNING (the seed's
    workers report PAUSED while paused), on a terminal and in --json; resumed, the batch still ends."""
    sq.pause()
    sq.push_many([{"value": True}] * 3)
    spawn_cli_worker("drag-pending")
    wait_until(lambda: sq.worker_reports(), timeout=20)
    watched = cli_watch.snapshot(sq, present(sq.current_batch_id()), cli_watch.RateMeter())
    assert watched.status == "PAUSED" and [w["status"] for w in watched.workers] == ["PAUSED"]
    rows = [line for line in cli_watch.screen(watched) if line.startswith("    ")]
    assert len(rows) == 1 and "  PAUSED  " in rows[0] and "RUNNING" not in rows[0], rows
    sq.resume()
    assert sq.wait_for_batch(timeout=30)["total_success"] == 3
    assert all(w.status != "PAUSED" for w in sq.worker_reports().values())


def test_watch_redraws_on_a_terminal(
    sq: ServiceQ, redis_url: str, spawn_cli_worker: Callable[..., subprocess.Popen[bytes]]
) -> None:
    sq.set_task_function(tasks.slow)
    sq.push_many([{"seconds": 0.1}] * 10)
    leader, follower = pty.openpty()
    env = dict(os.environ, RQ_REDIS_URL=redis_url, PYTHONPATH=str(ROOT))
    cmd = [sys.executable, "-m", "rq_serviceq", "watch", "drag", "--interval", "0.1"]
    proc = subprocess.Popen(cmd, stdout=follower, stderr=follower, env=env, cwd=ROOT)
    spawn_cli_worker("drag-pending")
    screen = _read_until_exit(leader, proc)  # the follower stays open here, so no output is lost at exit
    os.close(follower)
    os.close(leader)
    assert proc.returncode == 0, screen
    assert "\x1b[" in screen and "[##############################] 10/10" in screen and "FINISHED" in screen


def _read_until_exit(fd: int, proc: subprocess.Popen[bytes], timeout: float = 30.0) -> str:
    out = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            out += os.read(fd, 65536)
        elif proc.poll() is not None:
            break
    proc.wait(5)
    return out.decode(errors="replace")


def test_console_script_in_a_real_process(sq: ServiceQ, redis_url: str, tmp_path: Path) -> None:
    env = dict(os.environ, RQ_REDIS_URL=redis_url, PYTHONPATH=str(ROOT))
    cli_cmd = [sys.executable, "-m", "rq_serviceq"]
    path = tmp_path / "t.jsonl"
    path.write_text('{"value": true}\n')
    done = subprocess.run([*cli_cmd, "push", "drag", str(path)], env=env, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0 and "pushed 1 task(s)" in done.stdout
    down = dict(env, RQ_REDIS_URL="redis://127.0.0.1:1/0")
    failed = subprocess.run([*cli_cmd, "status", "drag"], env=down, capture_output=True, text=True, timeout=30)
    assert failed.returncode == 1 and "Traceback" not in failed.stderr
    assert failed.stderr.strip().count("\n") == 0 and "cannot reach Redis" in failed.stderr


def test_script_prints_the_lua_a_producer_loads() -> None:
    assert run("script", "push").output == scripts.source("push")
    assert CliRunner().invoke(cli, ["script", "nope"]).exit_code == 2


def test_serve_passes_its_options_to_the_http_service(monkeypatch: pytest.MonkeyPatch) -> None:
    """`rq-serviceq serve` runs rq_serviceq.http.serve with what it was given (tests/surfaces/test_deploy.py and
    tests/surfaces/test_http_server.py run the server for real)."""
    from rq_serviceq.http import serve as serve_module

    calls: list[dict[str, object]] = []
    monkeypatch.setattr(serve_module, "serve", lambda **kw: calls.append(kw))
    run("serve", "--host", "0.0.0.0", "--port", "8001", "--url", "redis://r:6379/0", "--workers", "2")
    assert calls == [{"host": "0.0.0.0", "port": 8001, "url": "redis://r:6379/0", "workers": 2, "access_log": False}]
    assert "--access-log" in run("serve", "--help").output


def test_start_runs_burst_workers_here(sq: ServiceQ) -> None:
    sq.set_worker_config(worker_count=2)
    sq.push_many([{"value": True}] * 5)
    result = json.loads(run("start", "drag", "--wait", "--timeout", "60", "--json").output)
    assert result == {"queue": "drag", "started": 2}
    wait_until(lambda: sq.get_status() == "FINISHED")


def test_demo_command_runs_the_demo(monkeypatch: pytest.MonkeyPatch) -> None:
    """The demo itself runs end to end in tests/guarantees/test_import_paths.py (`python -m rq_serviceq.demo`);
    here, that `rq-serviceq demo` runs it, on the Redis given, and passes its exit code on."""
    from rq_serviceq import demo

    seen: list[str | None] = []

    def main() -> int:
        seen.append(os.environ.get("RQ_REDIS_URL"))
        return 0

    monkeypatch.setattr(demo, "main", main)
    monkeypatch.delenv("RQ_REDIS_URL", raising=False)
    assert run("demo", "--url", "redis://elsewhere:6379/0").exit_code == 0
    assert seen == ["redis://elsewhere:6379/0"]
    monkeypatch.setattr(demo, "main", lambda: 1)
    assert CliRunner().invoke(cli, ["demo"]).exit_code == 1
