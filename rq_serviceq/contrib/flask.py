"""Flask integration: ``ServiceQ(app)`` or ``serviceq.init_app(app)`` in an app factory.

Configuration (``app.config``, all optional)::

    SERVICEQ_REDIS_URL = "redis://localhost:6379/0"   # else $RQ_REDIS_URL, $REDIS_URL, localhost
    SERVICEQ_ALLOWED_MODULES = ["myapp.tasks"]        # -> RQ_SERVICEQ_ALLOWED_MODULES for workers
    SERVICEQ_QUEUES = {"greetings": {"task_function": "myapp.tasks.greet", "retry_limit": 3}}

``serviceq.get("greetings")`` is the service queue facade on the app's Redis (created
with its ``SERVICEQ_QUEUES`` defaults if new).  ``flask serviceq worker NAME`` runs the
supervisor; its workers are :class:`FlaskServiceQWorker`, which load the same app and
run each claimed group inside its app context, so task functions can use
``current_app`` and extensions bound to it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import click
from flask import Flask, current_app
from flask.cli import AppGroup, ScriptInfo
from redis import Redis

from rq_serviceq import configure
from rq_serviceq import serviceq as facade
from rq_serviceq.cli import queues as cli_queues
from rq_serviceq.cli._common import pass_errors
from rq_serviceq.cli.run import run_supervisor
from rq_serviceq.store.connection import connect, redis_url
from rq_serviceq.task.imports import ALLOWED_ENV
from rq_serviceq.worker.worker import ServiceQWorker

EXTENSION = "serviceq"
WORKER_CLASS = "rq_serviceq.contrib.flask.FlaskServiceQWorker"


class _State:
    def __init__(self, url: str, queues: Mapping[str, Mapping[str, Any]]) -> None:
        self.url = url
        self.connection = connect(url)  # redis+sentinel:// too
        self.queues = dict(queues)


class ServiceQ:
    """The extension: one Redis connection pool per app, the CLI group, per-queue defaults."""

    def __init__(self, app: Flask | None = None) -> None:
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        queues = app.config.get("SERVICEQ_QUEUES") or {}
        for name, defaults in queues.items():
            bad = sorted(set(defaults) - set(configure.KNOWN))
            if bad:  # a typo must fail when the app starts, not in a worker
                raise ValueError(f"SERVICEQ_QUEUES[{name!r}] has unknown setting(s) {', '.join(bad)}")
        allowed = app.config.get("SERVICEQ_ALLOWED_MODULES")
        if allowed:
            os.environ[ALLOWED_ENV] = allowed if isinstance(allowed, str) else ",".join(allowed)
        app.extensions[EXTENSION] = _State(redis_url(app.config.get("SERVICEQ_REDIS_URL")), queues)
        app.cli.add_command(serviceq_cli)

    @staticmethod
    def _state(app: Flask | None = None) -> _State:
        state: _State = (app or current_app).extensions[EXTENSION]
        return state

    def connection(self, app: Flask | None = None) -> Redis:
        return self._state(app).connection

    def url(self, app: Flask | None = None) -> str:
        return self._state(app).url

    def get(self, name: str, app: Flask | None = None) -> facade.ServiceQ:
        """The service queue ``name``; ``SERVICEQ_QUEUES`` defaults apply when this creates it."""
        state = self._state(app)
        existed = facade.ServiceQ.known(name, state.connection)
        sq = facade.ServiceQ(name, connection=state.connection)
        defaults = state.queues.get(name)
        if defaults and not existed:
            configure.apply(sq, defaults)
        return sq


class FlaskServiceQWorker(ServiceQWorker):
    """Loads the app (``FLASK_APP``, as ``flask`` finds it) and runs each claimed group in its app context.

    The context is the worker thread's: with ``concurrency`` > 1, task threads
    should enter ``app.app_context()`` themselves.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.flask_app = ScriptInfo(app_import_path=os.environ.get("FLASK_APP")).load_app()
        super().__init__(*args, **kwargs)

    def execute_job(self, job: Any, queue: Any) -> None:
        with self.flask_app.app_context():
            super().execute_job(job, queue)


@click.group("serviceq", cls=AppGroup)
def serviceq_cli() -> None:
    """rq-serviceq: the supervisor and status of this app's service queues."""


@serviceq_cli.command("worker")
@click.argument("name")
@click.option("--interval", type=click.FloatRange(min=0.01), default=0.5, show_default=True)
@click.option("--quiet", "-q", is_flag=True, help="log warnings only")
@click.option("--create", is_flag=True, help="create the service queue if it does not exist")
@pass_errors
def worker_command(name: str, interval: float, quiet: bool, create: bool) -> None:
    """Keep this machine's share of NAME's workers alive; workers run tasks in this app's context."""
    state = ServiceQ._state()
    if name in state.queues:
        ServiceQ().get(name)  # declared in SERVICEQ_QUEUES: created with its defaults if new
        create = True
    info = click.get_current_context().find_object(ScriptInfo)
    if info is not None and info.app_import_path:
        os.environ["FLASK_APP"] = info.app_import_path  # how the workers find this app
    run_supervisor(name, state.url, interval=interval, quiet=quiet, create=create, worker_class=WORKER_CLASS)


@serviceq_cli.command("status")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="print JSON")
@pass_errors
def status_command(name: str, as_json: bool) -> None:
    """NAME's current batch, queue lengths and workers (as `rq-serviceq status`)."""
    ctx = click.get_current_context()
    ctx.invoke(cli_queues.status, name=name, url=ServiceQ._state().url, as_json=as_json)
