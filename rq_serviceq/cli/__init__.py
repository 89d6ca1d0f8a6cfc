"""``rq-serviceq``: the command line, on click as RQ's own CLI is.

One module per group of commands: ``queues`` (list, status, batches, report,
config, start, pause, resume, stop, scale, requeue-failed, delete), ``pushing``
(push), ``watch``, ``run`` (worker, serve, metrics, demo, script).  Every
command takes ``--url``; without it Redis is found as ``ServiceQ()`` finds it
(``RQ_REDIS_URL``, ``REDIS_URL``, localhost: ``connection.py``).  Expected
errors end in one line on stderr (``_common.py``).
"""

from __future__ import annotations

import click

from rq_serviceq import __version__
from rq_serviceq.cli import pushing, queues, run, watch
from rq_serviceq.cli._common import ServiceQGroup


@click.group(cls=ServiceQGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", "-V", prog_name="rq-serviceq")
def cli() -> None:
    """Service queues on RQ: push batches, watch them, read their reports, run their workers."""


for command in (*queues.COMMANDS, pushing.push, watch.watch, *run.COMMANDS):
    cli.add_command(command)


def main(argv: list[str] | None = None) -> int:
    """The console script ``rq-serviceq`` (and ``python -m rq_serviceq``); returns the exit code."""
    try:
        cli.main(args=argv, prog_name="rq-serviceq")
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return 0
