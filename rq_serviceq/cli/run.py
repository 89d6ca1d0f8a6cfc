"""Long-running commands: the supervisor, the HTTP service, the metrics exporter, the demo; and
``script``, which prints a Lua script for producers in other languages (docs/producers.md)."""

from __future__ import annotations

import logging
import os
from importlib import resources

import click

from rq_serviceq.cli._common import FAILURE, CliError, name_argument, open_queue, url_option
from rq_serviceq.store import scripts
from rq_serviceq.store.connection import url_for
from rq_serviceq.worker import launcher
from rq_serviceq.worker.supervisor import Supervisor


@click.command()
@name_argument
@click.option("--interval", type=click.FloatRange(min=0.01), default=0.5, show_default=True,
              help="seconds between looks at the service queue")  # fmt: skip
@click.option("--quiet", "-q", is_flag=True, help="log warnings only")
@click.option("--create", is_flag=True, help="create the service queue if it does not exist")
@click.option("--worker-class", metavar="CLASS",
              help=f"ServiceQWorker subclass the workers run (default: ${launcher.WORKER_CLASS_ENV}, "
              f"else {launcher.WORKER_CLASS})")  # fmt: skip
@url_option
def worker(name: str, interval: float, quiet: bool, create: bool, worker_class: str | None, url: str | None) -> None:
    """Keep this machine's share of NAME's workers alive (the supervisor), until SIGTERM."""
    run_supervisor(name, url, interval=interval, quiet=quiet, create=create, worker_class=worker_class)


def run_supervisor(
    name: str,
    url: str | None,
    *,
    interval: float = 0.5,
    quiet: bool = False,
    create: bool = False,
    worker_class: str | None = None,
) -> None:
    """The supervisor, as `rq-serviceq worker`, `manage.py serviceq_worker` and `flask serviceq worker` run it."""
    logging.basicConfig(level=logging.WARNING if quiet else logging.INFO, format="%(asctime)s %(message)s")
    try:  # a typo in NAME would otherwise start workers on a new, empty service queue
        sq = open_queue(name, url, create=create)
    except LookupError as exc:
        raise CliError(f"{exc} (or pass --create)") from None
    if worker_class:
        os.environ[launcher.WORKER_CLASS_ENV] = worker_class  # the workers' command line reads it
    Supervisor(sq.connection, name, url_for(name, url), interval=interval).run()


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="address to listen on")
@click.option("--port", type=click.IntRange(1, 65535), default=8000, show_default=True)
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True, help="server processes")
@click.option("--access-log", is_flag=True, help="log every request (off: it costs throughput)")
@url_option
def serve(host: str, port: int, workers: int, access_log: bool, url: str | None) -> None:
    """Run the HTTP service: API, batch pages at /ui, rq-dashboard at /rq (needs the http extra).

    Listens on loopback unless told otherwise; set SERVICEQ_API_TOKEN before you listen beyond it.
    """
    try:
        from rq_serviceq.http.serve import serve as run_server
    except ImportError as exc:
        raise CliError(f"serve needs the HTTP service: pip install 'rq-serviceq[http]' ({exc})", FAILURE) from None
    run_server(host=host, port=port, url=url, workers=workers, access_log=access_log)


@click.command()
@click.option("--port", type=click.IntRange(1, 65535), default=9121, show_default=True)
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="address to listen on (loopback unless told, as serve; 0.0.0.0 for every interface)",
)
@url_option
def metrics(port: int, host: str, url: str | None) -> None:
    """Serve Prometheus metrics of every service queue on the Redis."""
    from rq_serviceq import metrics as exporter

    click.echo(f"rq-serviceq metrics on http://{host}:{port}/metrics")
    exporter.serve(port=port, host=host, url=url)


@click.command()
@url_option
def demo(url: str | None) -> None:
    """Run the seed's 7-task example batch with 3 workers (a throwaway Redis unless --url or $RQ_REDIS_URL)."""
    from rq_serviceq import demo as seed_demo

    if url:
        os.environ["RQ_REDIS_URL"] = url
    code = seed_demo.main()
    if code:
        raise click.exceptions.Exit(code)


def _script_names() -> list[str]:
    lua = resources.files("rq_serviceq.store") / "lua"
    return sorted(p.name.removesuffix(".lua") for p in lua.iterdir() if p.name.endswith(".lua") and p.name[0] != "_")


@click.command()
@click.argument("script_name", metavar="SCRIPT", default="push", type=click.Choice(_script_names()))
def script(script_name: str) -> None:
    """Print a Lua script as Redis runs it (its prologue and the helpers it includes): for SCRIPT LOAD by a
    producer in another language; its `-- KEYS:`/`-- ARGV:` header and docs/producers.md say what it takes."""
    click.echo(scripts.source(script_name), nl=False)


COMMANDS = [worker, serve, metrics, demo, script]
