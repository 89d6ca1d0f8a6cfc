"""RQ's own maintenance in a ServiceQ worker imports no name a Redis writer put in a job hash.

At start (and every ``maintenance_interval``) an RQ worker cleans its queue's registries: the expired
entries of ``rq:wip:NAME-pending`` are failed with the job's ``failure_callback_name`` called, their
dependents enqueued, a job stuck in the intermediate queue is failed.  RQ resolves those names with
``import_attribute``, which imports any module.  Two writes within ``~rq:*`` (a job hash, a registry entry)
must not make a worker import, let alone call, anything the allow-list policy refuses; and the worker goes
on working its service queue.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from redis import Redis
from rq.job import Job
from rq.serializers import JSONSerializer
from rq.timeouts import UnixSignalDeathPenalty

from rq_serviceq import ServiceQ
from rq_serviceq.job import ServiceQJob
from rq_serviceq.task.imports import ALLOWED_ENV, RefusedPath, resolve
from tests import user_tasks
from tests.elsewhere import EXECUTED

QUEUE = "drag-pending"
ALLOW = "tests.user_tasks"
HOSTILE = "tests.never_imported.run"  # outside the allow-list: importing it leaves a mark in Redis
CALLBACK_FIELDS = ("success_callback_name", "failure_callback_name", "stopped_callback_name")
# Where RQ's maintenance meets a job: each registry of the pending queue, and its intermediate queue.
REGISTRIES = ("wip", "failed", "finished", "deferred", "scheduled", "canceled", "intermediate")


def _plant(conn: Redis, job_id: str, field: str, path: str, origin: str = QUEUE, parent: str | None = None) -> None:
    """What a writer with only ``~rq:*`` can leave: a job hash naming ``path`` as one of its RQ callbacks
    (and as its function), maybe a dependent of ``parent``."""
    job = Job.create(func=HOSTILE, args=({"n": 0},), connection=conn, serializer=JSONSerializer, id=job_id)
    job.origin = origin
    if parent:
        job._dependency_ids = [parent]
        conn.sadd(Job.dependents_key_for(parent), job_id)
    job.save()
    conn.hset(job.key, field, path)


def _file(conn: Redis, job_id: str, registry: str) -> None:
    """Put the job where RQ's cleanup finds it already expired (score 1: long ago)."""
    if registry == "wip":
        conn.zadd(f"rq:wip:{QUEUE}", {f"{job_id}:x": 1})
    elif registry == "intermediate":
        key = f"rq:queue:{QUEUE}:intermediate"
        conn.rpush(key, job_id)
        conn.set(f"{key}:first_seen:{job_id}", time.time() - 3600)  # stuck for an hour
    else:
        conn.zadd(f"rq:{registry}:{QUEUE}", {job_id: 1})


def _run_worker(spawn: Callable[..., subprocess.Popen[bytes]], sq: ServiceQ) -> str:
    """A real `rq worker` process in burst mode: RQ's maintenance runs before its first claim.  Its batch must
    still pass, and the worker end normally."""
    sq.set_task_function(user_tasks.legit)
    sq.push({"n": 1})
    proc = spawn(QUEUE, "--burst")
    out, _ = proc.communicate(timeout=60)
    text = out.decode(errors="replace")
    assert proc.returncode == 0, text
    assert sq.get_batch_report()["total_success"] == 1, text
    return text


def test_rq_cleanup_imports_no_callback_the_policy_refuses(
    make_sq: Callable[..., ServiceQ],
    conn: Redis,
    monkeypatch: pytest.MonkeyPatch,
    spawn_cli_worker: Callable[..., subprocess.Popen[bytes]],
) -> None:
    """Every callback field in every place RQ's cleanup looks, each a job of its own (with a dependent that
    RQ enqueues when it fails), met by one real worker's maintenance."""
    monkeypatch.setenv(ALLOWED_ENV, ALLOW)
    sq = make_sq("drag", worker_count=0)
    for field in CALLBACK_FIELDS:
        for registry in REGISTRIES:
            job_id = f"evil-{field}-{registry}"
            _plant(conn, job_id, field, HOSTILE)
            _plant(conn, f"{job_id}-dependent", field, HOSTILE, origin="elsewhere", parent=job_id)
            _file(conn, job_id, registry)
    _run_worker(spawn_cli_worker, sq)
    assert conn.lrange(EXECUTED, 0, -1) == []
    for field in CALLBACK_FIELDS:  # RQ's cleanup did run: the abandoned jobs were failed, as RQ does
        assert conn.zscore(f"rq:failed:{QUEUE}", f"evil-{field}-wip") is not None


def test_rq_cleanup_imports_nothing_from_the_standard_library_without_an_allow_list(
    make_sq: Callable[..., ServiceQ],
    conn: Redis,
    monkeypatch: pytest.MonkeyPatch,
    spawn_cli_worker: Callable[..., subprocess.Popen[bytes]],
) -> None:
    """The report's case: ``this`` prints the Zen of Python to the worker's output when imported."""
    monkeypatch.delenv(ALLOWED_ENV, raising=False)
    sq = make_sq("drag", worker_count=0)
    _plant(conn, "evil", "failure_callback_name", "this.s")
    _file(conn, "evil", "wip")
    out = _run_worker(spawn_cli_worker, sq)
    assert "Zen of Python" not in out
    assert conn.zscore(f"rq:failed:{QUEUE}", "evil") is not None


def test_rq_cleanup_still_runs_a_callback_the_policy_allows(
    make_sq: Callable[..., ServiceQ],
    conn: Redis,
    monkeypatch: pytest.MonkeyPatch,
    spawn_cli_worker: Callable[..., subprocess.Popen[bytes]],
) -> None:
    """The policy decides, as for task functions: a failure callback under the allow-list is called by RQ."""
    monkeypatch.setenv(ALLOWED_ENV, ALLOW)
    sq = make_sq("drag", worker_count=0)
    _plant(conn, "evil", "failure_callback_name", "tests.user_tasks.rq_failure_callback")
    _file(conn, "evil", "wip")
    _run_worker(spawn_cli_worker, sq)
    assert conn.lrange(user_tasks.LEGIT, 0, -1) == [b"rq_failure_callback", b"legit"]


@pytest.mark.parametrize(
    ("field", "path", "orphan"),
    [
        pytest.param("failure_callback_name", "tests.user_tasks.legit", False, id="an-allowed-callback-that-raises"),
        pytest.param("failure_callback_name", "", True, id="a-dependent-with-no-dependencies"),
    ],
)
def test_jobs_rq_cleanup_chokes_on_do_not_end_the_worker(
    make_sq: Callable[..., ServiceQ],
    conn: Redis,
    monkeypatch: pytest.MonkeyPatch,
    spawn_cli_worker: Callable[..., subprocess.Popen[bytes]],
    field: str,
    path: str,
    orphan: bool,
) -> None:
    """``legit(job, connection, *exc_info)`` raises TypeError; a dependent whose ``dependency_ids`` is empty
    makes RQ send ``WATCH`` with no key.  Either ended the worker in RQ's maintenance, before its first claim."""
    monkeypatch.setenv(ALLOWED_ENV, ALLOW)
    sq = make_sq("drag", worker_count=0)
    _plant(conn, "evil", field, path)
    if orphan:
        _plant(conn, "evil-dependent", field, path, origin="elsewhere")
        conn.sadd(Job.dependents_key_for("evil"), "evil-dependent")
    _file(conn, "evil", "wip")
    out = _run_worker(spawn_cli_worker, sq)
    assert conn.lrange(EXECUTED, 0, -1) == []
    assert ("registry cleanup failed" in out) is orphan


@pytest.mark.parametrize("field", CALLBACK_FIELDS)
def test_every_rq_callback_and_the_function_of_a_serviceq_job_go_through_the_policy(
    conn: Redis, monkeypatch: pytest.MonkeyPatch, field: str
) -> None:
    """Whatever RQ path asks a ServiceQ job for a callback (``execute_*_callback``) or its function: the success
    and stopped callbacks run where RQ performs a job, which a ServiceQ worker leaves to rq-serviceq."""
    monkeypatch.setenv(ALLOWED_ENV, ALLOW)
    resolve.cache_clear()
    _plant(conn, "evil", field, HOSTILE)
    job = ServiceQJob.fetch("evil", connection=conn)
    job.execute_success_callback(UnixSignalDeathPenalty, None)
    job.execute_failure_callback(UnixSignalDeathPenalty, ValueError, ValueError(), None)
    job.execute_stopped_callback(UnixSignalDeathPenalty)
    with pytest.raises(RefusedPath):
        job.func  # noqa: B018
    assert "tests.never_imported" not in sys.modules
    assert conn.lrange(EXECUTED, 0, -1) == []


def test_rq_cleanup_sends_no_webhook_a_job_hash_names(
    make_sq: Callable[..., ServiceQ],
    conn: Redis,
    monkeypatch: pytest.MonkeyPatch,
    spawn_cli_worker: Callable[..., subprocess.Popen[bytes]],
) -> None:
    """RQ's webhooks are URLs in the job hash, requested when RQ fails a job, as its maintenance fails one stuck
    in the intermediate queue: a request from wherever the workers run, to wherever a Redis writer likes."""
    monkeypatch.setenv(ALLOWED_ENV, ALLOW)
    sq = make_sq("drag", worker_count=0)
    requests: list[str] = []

    class Listener(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            requests.append(self.path)
            self.send_response(204)
            self.end_headers()

    with HTTPServer(("127.0.0.1", 0), Listener) as listener:
        threading.Thread(target=listener.serve_forever, daemon=True).start()
        _plant(conn, "evil", "failure_callback_name", "")
        url = f"http://127.0.0.1:{listener.server_address[1]}/internal"
        conn.hset(Job.key_for("evil"), "webhooks", json.dumps([{"url": url, "job_status": "failed"}]))
        _file(conn, "evil", "intermediate")
        _run_worker(spawn_cli_worker, sq)
        listener.shutdown()
    assert conn.zscore(f"rq:failed:{QUEUE}", "evil") is not None  # RQ's cleanup did fail it
    assert requests == []
