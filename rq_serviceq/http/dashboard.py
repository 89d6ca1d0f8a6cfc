"""rq-dashboard (a Flask blueprint) for the service's own ``/rq``, set up for rq-serviceq's JSON jobs.

The same set-up as ``deploy/dashboard.py``: ``rq_serviceq.contrib.dashboard.install`` (the
JSON serializer, Requeue and the worker list reading JSON, the job page's text escaped,
state-changing actions only from the dashboard's own buttons).  Delete and empty stay off:
they remove job hashes behind the batch ledger (a deleted pending task is then counted failed,
``NO_RETRY | removed from the queue outside rq-serviceq``).  Requeue is on: a requeued failed
task becomes a new task of the current batch, counted once (``contrib/dashboard.py`` says
how), and it grants nothing the token does not already give (``POST
/serviceqs/NAME/requeue-failed``).  Login is the service's token, checked in front of the
mount (``auth.TokenMiddleware``).
"""

from __future__ import annotations

from typing import Any

from flask import Flask

from rq_serviceq.contrib.dashboard import install
from rq_serviceq.store.connection import connect


def dashboard_app(redis_url: str, poll_interval_ms: int = 2500) -> Any:
    """The WSGI app; mount it (through a WSGI-in-ASGI adapter) where the dashboard should live."""
    import rq_dashboard  # type: ignore[import-untyped]
    import rq_dashboard.web  # type: ignore[import-untyped]

    # Out of the blueprint's way: mounted at /rq, the blueprint's /static would otherwise be shadowed.
    app = Flask("rq_serviceq.http.dashboard", static_url_path="/app-static")
    app.config.from_object(rq_dashboard.default_settings)
    app.config["RQ_DASHBOARD_REDIS_URL"] = redis_url
    app.config["RQ_DASHBOARD_DISABLE_DELETE"] = True
    app.config["RQ_DASHBOARD_POLL_INTERVAL"] = poll_interval_ms
    app.register_blueprint(rq_dashboard.blueprint, url_prefix="/")
    rq_dashboard.web.setup_rq_connection(app)
    app.redis_conn = connect(redis_url)  # type: ignore[attr-defined]  # rq-dashboard's own reading of a redis+sentinel:// URL drops the user
    install(app)
    return app
