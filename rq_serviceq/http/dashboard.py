"""rq-dashboard (a Flask blueprint) for the service's own ``/rq``, set up for rq-serviceq's JSON jobs.

The same settings as ``deploy/dashboard.py`` (which explains each): the JSON
serializer (process-wide in rq-dashboard), delete buttons off, requeue
refused because it bypasses the batch ledger.  Login is the service's token,
checked in front of the mount (``auth.TokenGate``).
"""

from __future__ import annotations

from typing import Any

from flask import Flask, Response, request
from rq.serializers import JSONSerializer

REQUEUE_ENDPOINTS = frozenset({"rq_dashboard.requeue_job_view", "rq_dashboard.requeue_all"})


def dashboard_app(redis_url: str, poll_interval_ms: int = 2500) -> Any:
    """The WSGI app; mount it (through a WSGI-in-ASGI adapter) where the dashboard should live."""
    import rq_dashboard  # type: ignore[import-untyped]
    import rq_dashboard.web  # type: ignore[import-untyped]

    rq_dashboard.web.config.serializer = JSONSerializer
    # Out of the blueprint's way: mounted at /rq, the blueprint's /static would otherwise be shadowed.
    app = Flask("rq_serviceq.http.dashboard", static_url_path="/app-static")
    app.config.from_object(rq_dashboard.default_settings)
    app.config["RQ_DASHBOARD_REDIS_URL"] = redis_url
    app.config["RQ_DASHBOARD_DISABLE_DELETE"] = True
    app.config["RQ_DASHBOARD_POLL_INTERVAL"] = poll_interval_ms
    app.register_blueprint(rq_dashboard.blueprint, url_prefix="/")
    rq_dashboard.web.setup_rq_connection(app)

    @app.before_request
    def refuse_requeue() -> Response | None:
        if request.endpoint in REQUEUE_ENDPOINTS:
            return Response(
                "Requeue is disabled: it bypasses rq-serviceq's batch ledger. "
                "Use POST /serviceqs/NAME/requeue-failed instead.\n",
                403,
                {"Content-Type": "text/plain; charset=utf-8"},
            )
        return None

    return app
