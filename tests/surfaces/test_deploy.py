"""deploy/: every file parses, every command it runs is a real command with options that exist,
and the compose topology runs as local processes (Docker and a cluster cannot run here)."""

from __future__ import annotations

import configparser
import contextlib
import fnmatch
import importlib.util
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import click
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families
from redis import Redis

from rq_serviceq.cli import cli
from rq_serviceq.testing import RedisServer, free_port
from tests.conftest import ROOT, stop_groups, wait_until

DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"


def check_command(argv: list[str]) -> None:
    """Parse a command line as the program it names would, without running it."""
    argv = [arg.replace("$PORT", "8000").replace("%i", "drag") for arg in argv]
    program = Path(argv[0]).name
    if program == "rq-serviceq":
        assert argv[1] in cli.commands, f"rq-serviceq has no command {argv[1]!r}"
        command = cli.commands[argv[1]]
        with command.make_context(argv[1], argv[2:]):  # click's own parser: unknown options raise
            pass
    elif program == "python" and argv[1] == "deploy/dashboard.py":
        check_dashboard_args(argv[2:])
    elif program == "redis-server":
        pass  # run for real by test_redis_conf_gives_an_aof
    else:
        raise AssertionError(f"unexpected program in a deploy file: {argv}")


def check_dashboard_args(args: list[str]) -> None:
    spec = importlib.util.spec_from_file_location("deploy_dashboard", DEPLOY / "dashboard.py")
    assert spec and spec.loader
    dashboard: Any = importlib.util.module_from_spec(spec)  # its names are known once it has run
    spec.loader.exec_module(dashboard)
    dashboard.create_app = lambda *a, **kw: SimpleNamespace(run=lambda **kw: None)  # parse, do not serve
    dashboard.main(args)  # argparse exits (SystemExit 2) on an unknown option


def test_check_command_refuses_what_does_not_exist() -> None:
    with pytest.raises(AssertionError, match="no command 'wrker'"):
        check_command(["rq-serviceq", "wrker", "drag"])
    with pytest.raises(click.UsageError):
        check_command(["rq-serviceq", "worker", "drag", "--replicas", "2"])
    with pytest.raises(SystemExit):
        check_command(["python", "deploy/dashboard.py", "--host", "0.0.0.0"])


def test_docker_compose() -> None:
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    services = compose["services"]
    assert set(services) == {"redis", "api", "worker", "dashboard", "metrics"}
    for service in services.values():
        check_command(service["command"])
    assert services["api"]["command"][:4] == ["rq-serviceq", "serve", "--host", "0.0.0.0"]
    assert services["worker"]["command"][:2] == ["rq-serviceq", "worker"]
    assert services["worker"]["stop_grace_period"] == "5m"
    assert "SERVICEQ_API_TOKEN" in services["api"]["environment"]
    redis_cmd = services["redis"]["command"]
    assert "/usr/local/etc/redis/redis.conf" in redis_cmd and "--requirepass" in redis_cmd
    assert "./redis.conf:/usr/local/etc/redis/redis.conf:ro" in services["redis"]["volumes"]
    for name in ("api", "worker", "dashboard", "metrics"):
        env = services[name]["environment"]
        assert "@redis:6379/0" in (env.get("RQ_REDIS_URL") or env.get("RQ_DASHBOARD_REDIS_URL"))
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    assert "useradd" in dockerfile and "USER rq-serviceq" in dockerfile and "dashboard.py" in dockerfile
    # The image can hold the user's task package: a build argument the compose file passes on.
    build = services["worker"]["build"]
    assert build["context"] == ".." and build["dockerfile"] == "deploy/Dockerfile"
    assert build["args"]["TASK_PACKAGE"] == "${TASK_PACKAGE:-}"
    assert 'ARG TASK_PACKAGE=""' in dockerfile and "pip install $TASK_PACKAGE" in dockerfile
    assert services["worker"]["environment"]["RQ_SERVICEQ_ALLOWED_MODULES"] == "${TASK_MODULES:-myapp.tasks}"


def test_dockerignore_keeps_the_build_context_small_and_the_build_whole() -> None:
    """The compose build context is the repository root: .venv, .git, caches stay out of it, and what
    the Dockerfile installs from (the package, its pyproject and readme, deploy/dashboard.py) stays in."""
    ignored = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()]
    patterns = {line for line in ignored if line and not line.startswith("#")}
    for needed in (".git", ".venv", ".bench", "**/node_modules", "**/__pycache__", ".pytest_cache", ".ruff_cache",
                   ".mypy_cache", "deploy/.env"):  # fmt: skip
        assert needed in patterns, f".dockerignore does not exclude {needed}"
    kept = ("pyproject.toml", "README.md", "LICENSE", "rq_serviceq", "deploy", "deploy/dashboard.py")
    for path in kept:
        assert (ROOT / path).exists() and not any(_ignores(pattern, path) for pattern in patterns), path


def _ignores(pattern: str, path: str) -> bool:
    """Whether a .dockerignore pattern (Go's filepath.Match, ``**`` for any depth) excludes ``path``."""
    bare = pattern.removeprefix("**/").rstrip("/")
    return any(fnmatch.fnmatchcase(part, bare) for part in [path, *Path(path).parts]) or fnmatch.fnmatchcase(
        path, pattern
    )


def test_redis_conf_gives_an_aof(tmp_path: Path) -> None:
    port = free_port()
    args = ["redis-server", str(DEPLOY / "redis.conf"), "--port", str(port), "--dir", str(tmp_path),
            "--requirepass", "pw", "--bind", "127.0.0.1", "--logfile", str(tmp_path / "log")]  # fmt: skip
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL)
    try:
        conn = Redis(port=port, password="pw")
        wait_until(lambda: _pings(conn), timeout=10)
        assert conn.config_get("appendonly") == {"appendonly": "yes"}
        assert conn.config_get("maxmemory-policy") == {"maxmemory-policy": "noeviction"}
    finally:
        proc.terminate()
        proc.wait(10)


def _pings(conn: Redis) -> bool:
    try:
        return bool(conn.ping())
    except Exception:
        return False


def _k8s_documents() -> list[dict[str, Any]]:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    docs = []
    for resource in kustomization["resources"]:
        docs += [d for d in yaml.safe_load_all((K8S / resource).read_text()) if d]
    assert {p.name for p in K8S.glob("*.yaml")} == {"kustomization.yaml", *kustomization["resources"]}
    return docs


def test_kubernetes_manifests() -> None:
    docs = _k8s_documents()
    by_kind: dict[str, dict[str, dict[str, Any]]] = {}
    for doc in docs:
        assert doc["apiVersion"] and doc["metadata"]["name"]
        by_kind.setdefault(doc["kind"], {})[doc["metadata"]["name"]] = doc
    secret = by_kind["Secret"]["rq-serviceq"]["stringData"]
    assert {"REDIS_PASSWORD", "SERVICEQ_API_TOKEN", "RQ_REDIS_URL"} <= set(secret)
    workloads = {**by_kind["Deployment"], **by_kind["StatefulSet"]}
    for workload in workloads.values():
        template = workload["spec"]["template"]
        assert workload["spec"]["selector"]["matchLabels"].items() <= template["metadata"]["labels"].items()
        for container in template["spec"]["containers"]:
            if "command" in container:
                check_command(container["command"] + container.get("args", []))
            for env in container.get("env", []):
                ref = env.get("valueFrom", {}).get("secretKeyRef")
                assert ref is None or (ref["name"] == "rq-serviceq" and ref["key"] in secret), env
    for service in by_kind["Service"].values():
        selector = service["spec"]["selector"]
        assert any(selector.items() <= w["spec"]["template"]["metadata"]["labels"].items() for w in workloads.values())
    workers = by_kind["Deployment"]["rq-serviceq-worker"]["spec"]
    assert workers["replicas"] >= 2 and workers["template"]["spec"]["terminationGracePeriodSeconds"] >= 60
    assert workers["template"]["spec"]["containers"][0]["command"][:2] == ["rq-serviceq", "worker"]
    assert (
        by_kind["Deployment"]["rq-serviceq-api"]["spec"]["template"]["spec"]["containers"][0]["command"][1] == "serve"
    )
    redis_args = by_kind["StatefulSet"]["redis"]["spec"]["template"]["spec"]["containers"][0]["args"]
    assert redis_args[redis_args.index("--appendonly") + 1] == "yes"


def test_systemd_supervisord_and_procfile() -> None:
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str  # type: ignore[assignment,method-assign]
    unit.read(DEPLOY / "systemd" / "rq-serviceq-worker@.service")
    check_command(shlex.split(unit["Service"]["ExecStart"]))
    assert unit["Service"]["User"] == "rq-serviceq" and unit["Service"]["KillSignal"] == "SIGTERM"

    conf = configparser.ConfigParser(interpolation=None)
    conf.read(DEPLOY / "supervisord" / "rq-serviceq.conf")
    program = conf["program:rq-serviceq-drag"]
    check_command(shlex.split(program["command"]))
    assert program["numprocs"] == "1" and program["stopsignal"] == "TERM"
    text = (DEPLOY / "supervisord" / "rq-serviceq.conf").read_text()
    assert f"useradd --system --home-dir /srv/myapp --shell /usr/sbin/nologin {program['user']}" in text

    for line in (DEPLOY / "Procfile").read_text().splitlines():
        if line and not line.startswith("#"):
            _kind, command = line.split(":", 1)
            words = shlex.split(command)
            while re.match(r"^[A-Z_]+=", words[0]):  # VAR=value before the program
                words.pop(0)
            check_command(words)


# --- the topology, as local processes ------------------------------------------------------------
@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    procs: list[subprocess.Popen[bytes]] = []
    yield procs
    stop_groups(procs)


def _http_get(url: str) -> bytes | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bytes(response.read())
    except OSError:
        return None


@pytest.mark.slow  # the default suite's time (about 5 minutes); CI runs it
def test_compose_topology_as_local_processes(processes: list[subprocess.Popen[bytes]], tmp_path: Path) -> None:
    """Redis with AOF, two supervisors, rq-dashboard, the metrics exporter: a batch pushed through
    the CLI ends, exactly once, every task passed once."""
    _with_redis(processes, tmp_path, serve=False)


def test_compose_topology_with_the_http_service(processes: list[subprocess.Popen[bytes]], tmp_path: Path) -> None:
    """The same, with `rq-serviceq serve` running beside it, as in docker-compose.yml."""
    pytest.importorskip("rq_serviceq.http", reason="the HTTP service (rq_serviceq.http) is not installed here")
    _with_redis(processes, tmp_path, serve=True)


def _with_redis(processes: list[subprocess.Popen[bytes]], tmp_path: Path, serve: bool) -> None:
    server = RedisServer("--appendonly", "yes").start()
    try:
        _run_topology(server.url, processes, tmp_path, serve)
    finally:
        for proc in processes:  # stop them before their Redis goes
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in processes:
            proc.wait(20)
        server.stop()


def _run_topology(url: str, processes: list[subprocess.Popen[bytes]], tmp_path: Path, serve: bool) -> None:
    env = dict(os.environ, RQ_REDIS_URL=url, REDIS_URL=url, RQ_DASHBOARD_REDIS_URL=url, PYTHONPATH=str(ROOT))
    rq_serviceq = [sys.executable, "-m", "rq_serviceq"]

    def start(*args: str) -> None:
        processes.append(subprocess.Popen(list(args), env=env, cwd=ROOT, start_new_session=True))

    def cli_run(*args: str) -> str:
        done = subprocess.run([*rq_serviceq, *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=90)
        assert done.returncode == 0, done.stderr
        return done.stdout

    conn = Redis.from_url(url)
    cli_run("config", "drag", "--create", "--worker-count", "2", "--no-auto-start",
            "--task-function", "tests.tasks.returns", "--batch-end-callback", "tests.tasks.store_report")  # fmt: skip
    start(*rq_serviceq, "worker", "drag", "--interval", "0.2")
    start(*rq_serviceq, "worker", "drag", "--interval", "0.2")
    dashboard_port, metrics_port = free_port(), free_port()
    start(sys.executable, "deploy/dashboard.py", "--bind", "127.0.0.1", "--port", str(dashboard_port))
    start(*rq_serviceq, "metrics", "--host", "127.0.0.1", "--port", str(metrics_port))
    serve_port = free_port()
    if serve:
        start(*rq_serviceq, "serve", "--host", "127.0.0.1", "--port", str(serve_port))
    # Two supervisors divide worker_count 2: one worker each.
    wait_until(lambda: conn.zcard("rq:serviceq:drag:supervisors") == 2 and conn.scard("rq:workers:drag-pending") == 2)

    tasks_file = tmp_path / "tasks.jsonl"
    tasks_file.write_text("".join(json.dumps({"value": True, "i": i}) + "\n" for i in range(100)))
    pushed = json.loads(cli_run("push", "drag", str(tasks_file), "--json", "--ids"))
    watched = cli_run("watch", "drag", "--interval", "0.2").strip().splitlines()
    assert "FINISHED passed 100 failed 0 pending 0" in watched[-1]

    (batch_id,) = pushed["batch_ids"]
    report = json.loads(cli_run("report", "drag", "--json"))
    assert sorted(t["task_id"] for t in report["passed_tasks"]) == sorted(pushed["task_ids"])  # each once
    assert (report["total_submitted"], report["total_success"], report["status"]) == (100, 100, "FINISHED")
    wait_until(lambda: conn.get(f"test:batch_end_count:{batch_id}") is not None)
    assert conn.get(f"test:batch_end_count:{batch_id}") == b"1" and conn.llen("test:batch_end") == 1
    workers = {w["id"]: w for w in json.loads(cli_run("status", "drag", "--json"))["worker_reports"].values()}
    assert len(workers) == 2 and sum(w["success_count"] for w in workers.values()) == 100

    queues = json.loads(_wait_get(f"http://127.0.0.1:{dashboard_port}/rq/0/data/queues.json"))["queues"]
    assert "drag-pending" in {q["name"] for q in queues}
    scraped = _wait_get(f"http://127.0.0.1:{metrics_port}/metrics").decode()
    samples = {
        (s.name, s.labels.get("queue")): s.value for f in text_string_to_metric_families(scraped) for s in f.samples
    }
    assert samples[("rq_serviceq_tasks_passed_total", "drag")] == 100
    if serve:
        wait_until(lambda: _listening(serve_port), timeout=30)
        assert all(proc.poll() is None for proc in processes)  # serve, supervisors, dashboard still up


def _listening(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
        return True
    return False


def _wait_get(url: str) -> bytes:
    bodies: list[bytes] = []

    def got() -> bool:
        body = _http_get(url)
        if body is not None:
            bodies.append(body)
        return body is not None

    wait_until(got, timeout=30)
    return bodies[0]
