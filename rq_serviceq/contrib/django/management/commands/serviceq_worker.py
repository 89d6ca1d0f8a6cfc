"""``manage.py serviceq_worker NAME``: the supervisor, with Django set up in every worker process."""

from __future__ import annotations

from typing import Any

import click
from django.core.management.base import BaseCommand, CommandError

from rq_serviceq.cli.run import run_supervisor
from rq_serviceq.contrib.django import WORKER_CLASS, get_serviceq, serviceq_settings, url


class Command(BaseCommand):
    help = "Keep this machine's share of a service queue's workers alive; workers can use the ORM."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("name", help="the service queue")
        parser.add_argument("--interval", type=float, default=0.5, help="seconds between looks at the queue")
        parser.add_argument("--quiet", action="store_true", help="log warnings only")
        parser.add_argument("--create", action="store_true", help="create the service queue if it does not exist")

    def handle(self, *args: Any, name: str, interval: float, quiet: bool, create: bool, **options: Any) -> None:
        if name in (serviceq_settings().get("QUEUES") or {}):
            get_serviceq(name)  # declared in SERVICEQ: created with its defaults if new
            create = True
        try:
            run_supervisor(name, url(), interval=interval, quiet=quiet, create=create, worker_class=WORKER_CLASS)
        except click.ClickException as exc:
            raise CommandError(exc.message) from None
