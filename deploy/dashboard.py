"""rq-dashboard 0.9, embedded in a tiny Flask app and set up for rq-serviceq's JSON jobs.

Run it::

    python deploy/dashboard.py --redis-url redis://redis-host:6379/0
    # then open http://127.0.0.1:9181/rq/

A URL with a password is better passed in the environment, where ``ps`` does
not show it: ``RQ_DASHBOARD_REDIS_URL``, else the ``RQ_REDIS_URL`` or ``REDIS_URL``
that workers and producers read (``rq_serviceq.store.connection``).
Under a WSGI server (``pip install gunicorn``)::

    RQ_DASHBOARD_REDIS_URL=redis://:PASSWORD@redis-host:6379/0 \
        gunicorn --chdir deploy -w 2 -b 127.0.0.1:9181 'dashboard:create_app()'

What an operator sees for a service queue NAME: the RQ queue ``NAME-pending``
with its pending tasks ("queued"), running ones ("started"), the passed
queue ("finished") and the failed queue ("failed").  A task's page shows its
remark: as "Result" when it passed, as "Exception Info" when it failed, and
in "Metadata" with its batch id, service queue, retry count and outcome.
Retries waiting for their due time are in rq-serviceq's own retry set, not in
any RQ registry, so the dashboard lists them nowhere (their job pages say
"scheduled").

Why each setting below is there:

- ``rq_serviceq.contrib.dashboard.install(app)``: ServiceQ jobs are JSON (no
  pickle is ever read from Redis); rq-dashboard assumes pickle unless told
  (``rq_dashboard.web.config.serializer``, a process-wide global: do not mix
  pickle and JSON queues in one dashboard process), and its Requeue, Requeue
  All and worker list read pickle even then.  ``install`` sets the global and
  replaces those views on this app, HTML-escapes the text its job page shows,
  and takes state-changing actions only as the dashboard's own buttons send
  them (a POST with ``X-Requested-With``), so that another site's page cannot
  make a logged-in browser requeue everything.  Its docstring says why each.
- ``RQ_DASHBOARD_REDIS_URL``: the one Flask config key rq-dashboard reads for
  its connection(s).  A string or a list of URLs (one dashboard "instance" per
  URL, selected by the number in the dashboard's URLs: ``/rq/0/...``).
  ``setup_rq_connection(app)`` must be called after it is set, because the
  blueprint reads the connection from ``app.redis_conn``.
- ``RQ_DASHBOARD_DISABLE_DELETE``: the dashboard's "empty"/"delete" buttons
  remove job hashes behind rq-serviceq's back.  The batch still ends right
  (its audit counts a removed task failed, ``NO_RETRY | removed from the
  queue outside rq-serviceq``), but a deleted pending task never runs, and a
  deleted passed or failed one drops out of its report's task lists (the
  counts keep it).  Off by
  default here; ``--allow-delete`` turns them on.
- Requeue is on (``--no-requeue`` refuses it with HTTP 403): a failed task
  put back on ``NAME-pending`` becomes a new task ``<id>-r1`` of the current
  batch (or of a new one) when a worker claims it, counted once; the batch it
  failed in keeps its report, and a task is requeued once only.
- HTTP Basic Auth: rq-dashboard has none of its own and can requeue jobs.
  It is added on *this* app, not on the shared blueprint, because a Flask
  blueprint cannot take new hooks once registered (a second ``create_app`` in
  the same process, as in tests, would fail).  Put TLS in front of it.
"""

from __future__ import annotations

import argparse
import hmac
import os
from collections.abc import Sequence

import rq_dashboard
import rq_dashboard.web
from flask import Flask, Response, request

from rq_serviceq.contrib.dashboard import REQUEUE_ENDPOINTS, install
from rq_serviceq.store.connection import connect
from rq_serviceq.store.connection import redis_url as serviceq_redis_url

URL_PREFIX = "/rq"


def create_app(
    redis_url: str | Sequence[str] | None = None,
    *,
    url_prefix: str = URL_PREFIX,
    username: str | None = None,
    password: str | None = None,
    allow_delete: bool = False,
    allow_requeue: bool = True,
    poll_interval_ms: int = 2500,
) -> Flask:
    """A Flask app serving rq-dashboard at ``url_prefix``, reading JSON-serialized (ServiceQ) jobs.

    ``redis_url`` defaults to ``$RQ_DASHBOARD_REDIS_URL``, then ``$RQ_REDIS_URL``,
    ``$REDIS_URL`` and localhost, the order workers and producers follow.
    ``username``/``password`` default to ``$RQ_DASHBOARD_USERNAME``/``$RQ_DASHBOARD_PASSWORD``;
    without a password the dashboard is open, so bind it to localhost or a private network.
    """
    if redis_url is None:
        redis_url = serviceq_redis_url(os.environ.get("RQ_DASHBOARD_REDIS_URL"))
    username = username if username is not None else os.environ.get("RQ_DASHBOARD_USERNAME")
    password = password if password is not None else os.environ.get("RQ_DASHBOARD_PASSWORD")

    app = Flask(__name__)
    app.config.from_object(rq_dashboard.default_settings)
    app.config["RQ_DASHBOARD_REDIS_URL"] = redis_url
    app.config["RQ_DASHBOARD_DISABLE_DELETE"] = not allow_delete
    app.config["RQ_DASHBOARD_POLL_INTERVAL"] = poll_interval_ms
    app.register_blueprint(rq_dashboard.blueprint, url_prefix=url_prefix)
    rq_dashboard.web.setup_rq_connection(app)  # opens app.redis_conn from RQ_DASHBOARD_REDIS_URL
    # The first Redis as rq-serviceq reads its URL (rq-dashboard's reading of redis+sentinel:// drops the user).
    app.redis_conn = connect(redis_url if isinstance(redis_url, str) else redis_url[0])
    install(app)  # JSON jobs throughout, the job page's text escaped, actions only from its own buttons

    if password:
        _require_basic_auth(app, username or "", password)
    if not allow_requeue:
        _refuse_requeue(app)

    @app.get("/")
    def index() -> Response:  # a bare host name lands on the dashboard
        return app.redirect(url_prefix.rstrip("/") + "/")

    return app


def _require_basic_auth(app: Flask, username: str, password: str) -> None:
    @app.before_request
    def check() -> Response | None:
        auth = request.authorization
        given_user = (auth.username or "") if auth else ""
        given_password = (auth.password or "") if auth else ""
        # compare_digest: no timing hint about how much of the password was right.
        if auth and hmac.compare_digest(given_user, username) and hmac.compare_digest(given_password, password):
            return None
        return Response("Login required", 401, {"WWW-Authenticate": 'Basic realm="rq-serviceq dashboard"'})


def _refuse_requeue(app: Flask) -> None:
    @app.before_request
    def check() -> Response | None:
        if request.endpoint in REQUEUE_ENDPOINTS:
            return Response(
                "Requeue is turned off on this dashboard (--no-requeue). "
                "rq-serviceq requeue-failed NAME pushes a batch's failed tasks again.\n",
                403,
                {"Content-Type": "text/plain; charset=utf-8"},
            )
        return None


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="rq-dashboard for rq-serviceq (JSON-serialized jobs)")
    parser.add_argument(
        "--redis-url",
        action="append",
        help="Redis URL; repeat for several Redis servers "
        "(default: $RQ_DASHBOARD_REDIS_URL, $RQ_REDIS_URL, $REDIS_URL, or redis://localhost:6379/0)",
    )
    parser.add_argument("--bind", default="127.0.0.1", help="address to listen on (default: localhost only)")
    parser.add_argument("--port", type=int, default=9181)
    parser.add_argument("--url-prefix", default=URL_PREFIX)
    parser.add_argument("--allow-delete", action="store_true", help="enable the dashboard's delete/empty buttons")
    parser.add_argument(
        "--no-requeue", action="store_true", help="refuse the Requeue buttons (HTTP 403); they are on by default"
    )
    # Requeue used to be off unless asked for; it is on now, and the old flag is kept for old command lines.
    parser.add_argument("--allow-requeue", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    redis_url = args.redis_url[0] if args.redis_url and len(args.redis_url) == 1 else args.redis_url
    app = create_app(
        redis_url, url_prefix=args.url_prefix, allow_delete=args.allow_delete, allow_requeue=not args.no_requeue
    )
    print(f"rq-serviceq dashboard on http://{args.bind}:{args.port}{args.url_prefix}/")
    # Flask's development server: fine for an operator's console; use gunicorn for anything shared.
    app.run(host=args.bind, port=args.port)


if __name__ == "__main__":
    main()
