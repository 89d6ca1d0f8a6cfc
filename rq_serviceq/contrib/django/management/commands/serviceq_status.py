"""``manage.py serviceq_status [NAME ...]``: the service queues' progress, as ``rq-serviceq status`` shows it."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from rq_serviceq.contrib.django import connection
from rq_serviceq.serviceq import ServiceQ


class Command(BaseCommand):
    help = "Show service queues: status, current batch, queue lengths, workers."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("names", nargs="*", help="service queues (default: all on the Redis)")
        parser.add_argument("--json", action="store_true", help="print JSON")

    def handle(self, *args: Any, names: list[str], **options: Any) -> None:
        conn = connection()
        names = names or ServiceQ.names(conn)
        try:
            infos = {name: ServiceQ.open(name, connection=conn).get_status_info() for name in names}
        except (LookupError, ValueError) as exc:
            raise CommandError(str(exc.args[0] if exc.args else exc)) from None
        if options["json"]:
            self.stdout.write(json.dumps(infos, indent=2, default=str))
            return
        for name, info in infos.items():
            self.stdout.write(
                f"{name}: {info['status']}  batch {info['batch_id'] or '-'}  submitted {info['total_submitted']}  "
                f"passed {info['total_success']}  failed {info['total_failed']}  pending {info['total_pending']}  "
                f"workers {len(info['worker_reports'])}"
            )
