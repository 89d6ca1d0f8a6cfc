"""``rq-serviceq``: the command line.

``rq-serviceq worker NAME`` runs a supervisor (see ``supervisor.py``).  The
Redis URL comes from ``--url``, else ``RQ_REDIS_URL``, else ``REDIS_URL``,
else ``redis://localhost:6379/0``: the order ``ServiceQ()`` follows too
(``connection.py``).
"""

from __future__ import annotations

import argparse
import logging
import sys

from .connection import DEFAULT_URL, connect, redis_url
from .models import validate_name
from .serviceq import ServiceQ
from .supervisor import Supervisor


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="rq-serviceq", description="Service queues on RQ.")
    commands = parser.add_subparsers(dest="command", required=True)
    worker = commands.add_parser("worker", help="keep this machine's share of a service queue's workers alive")
    worker.add_argument("name", help="the service queue's name (its RQ queue is NAME-pending)")
    worker.add_argument("--url", "-u", help="Redis URL (default: $RQ_REDIS_URL, $REDIS_URL, " + DEFAULT_URL + ")")
    worker.add_argument("--interval", type=float, default=0.5, help="seconds between looks at the service queue")
    worker.add_argument("--quiet", "-q", action="store_true", help="log warnings only")
    worker.add_argument("--create", action="store_true", help="create the service queue if it does not exist")
    args = parser.parse_args(argv)

    try:
        name = validate_name(args.name)
    except ValueError as exc:
        parser.error(str(exc))
    url = redis_url(args.url)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, format="%(asctime)s %(message)s")
    conn = connect(url)
    if args.create:
        ServiceQ(name, connection=conn)
    else:
        try:  # a typo in NAME would otherwise start workers on a new, empty service queue
            ServiceQ.open(name, connection=conn)
        except LookupError as exc:
            parser.exit(2, f"rq-serviceq: {exc} (or pass --create)\n")
    Supervisor(conn, name, url, interval=args.interval).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
