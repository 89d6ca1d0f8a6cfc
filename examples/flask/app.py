"""A Flask app that pushes greetings to a service queue; workers store them in SQLite.

cd examples/flask
flask --app app.py init-db
flask --app app.py serviceq worker greetings      # the supervisor and its workers
flask --app app.py run                            # POST /greetings, GET /greetings/status
"""

from __future__ import annotations

import os
import sqlite3
import tempfile
from typing import Any

import click
from flask import Flask, jsonify, request

from rq_serviceq.contrib.flask import ServiceQ

serviceq = ServiceQ()


def create_app(config: dict[str, Any] | None = None) -> Flask:
    app = Flask(__name__)
    app.config.update(
        # In the temp directory (not the app's instance/ folder), so the example leaves nothing in the clone.
        DATABASE=os.environ.get("EXAMPLE_DB", os.path.join(tempfile.gettempdir(), "rq-serviceq-flask-example.sqlite3")),
        # SERVICEQ_REDIS_URL="redis://localhost:6379/0",   # default: $RQ_REDIS_URL, $REDIS_URL, localhost
        SERVICEQ_ALLOWED_MODULES=["greetings"],
        SERVICEQ_QUEUES={
            "greetings": {"task_function": "greetings.store_greeting", "worker_count": 2, "retry_limit": 1,
                          "auto_start": False},
        },
    )  # fmt: skip
    app.config.update(config or {})
    serviceq.init_app(app)

    @app.post("/greetings")
    def push() -> Any:
        task_ids = serviceq.get("greetings").push_many(request.get_json())
        return jsonify(task_ids=task_ids), 202

    @app.get("/greetings/status")
    def status() -> Any:
        return jsonify(serviceq.get("greetings").get_status_info())

    @app.get("/greetings/report")
    def report() -> Any:
        return jsonify(serviceq.get("greetings").get_batch_report())

    @app.cli.command("init-db")
    def init_db() -> None:
        """Create the greetings table."""
        create_tables(app.config["DATABASE"])
        click.echo(f"created {app.config['DATABASE']}")

    return app


def create_tables(path: str) -> None:
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE IF NOT EXISTS greeting (task_id TEXT PRIMARY KEY, name TEXT, pid INTEGER)")


app = create_app()
