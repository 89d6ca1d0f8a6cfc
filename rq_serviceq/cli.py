"""``rq-serviceq``: the command line.

``rq-serviceq worker NAME`` runs a supervisor (see ``supervisor.py``);
``rq-serviceq serve`` the HTTP service (``http/``, extra ``http``).  The
Redis URL comes from ``--url``, else ``RQ_REDIS_URL`` or ``REDIS_URL`` (RQ's
and the library's conventions), else ``redis://localhost:6379/0``.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from redis import Redis

from .models import validate_name
from .serviceq import DEFAULT_URL, ServiceQ
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
    serve = commands.add_parser("serve", help="run the HTTP service (API, batch pages, rq-dashboard)")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default: loopback only)")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--url", "-u", help="Redis URL (default: $RQ_REDIS_URL, $REDIS_URL, " + DEFAULT_URL + ")")
    serve.add_argument("--workers", type=int, default=1, help="server processes (default 1)")
    serve.add_argument("--access-log", action="store_true", help="log every request (off: it costs throughput)")
    args = parser.parse_args(argv)
    if args.command == "serve":
        return _serve(parser, args)

    try:
        name = validate_name(args.name)
    except ValueError as exc:
        parser.error(str(exc))
    url = args.url or os.environ.get("RQ_REDIS_URL") or os.environ.get("REDIS_URL") or DEFAULT_URL
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, format="%(asctime)s %(message)s")
    conn = Redis.from_url(url)
    if args.create:
        ServiceQ(name, connection=conn)
    else:
        try:  # a typo in NAME would otherwise start workers on a new, empty service queue
            ServiceQ.open(name, connection=conn)
        except LookupError as exc:
            parser.exit(2, f"rq-serviceq: {exc} (or pass --create)\n")
    Supervisor(conn, name, url, interval=args.interval).run()
    return 0


def _serve(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    try:
        from .http.serve import serve
    except ImportError as exc:
        parser.exit(2, f"rq-serviceq serve needs the http extra: pip install 'rq-serviceq[http]' ({exc})\n")
    try:
        serve(args.host, args.port, args.url, workers=args.workers, access_log=args.access_log)
    except ValueError as exc:
        parser.exit(2, f"rq-serviceq: {exc}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
