"""The task function: runs in a worker process, inside the app's context (FlaskServiceQWorker)."""

from __future__ import annotations

import os
import sqlite3
from typing import Any

from flask import current_app

from rq_serviceq import NoRetry, current_qtask


def store_greeting(task: dict[str, Any]) -> tuple[bool, str]:
    if not task.get("name"):
        raise NoRetry("nobody to greet")
    task_id = (current_qtask() or {})["task_id"]
    with sqlite3.connect(current_app.config["DATABASE"], timeout=20) as db:  # at least once: writing twice is harmless
        db.execute("INSERT OR REPLACE INTO greeting VALUES (?, ?, ?)", (task_id, task["name"], os.getpid()))
    return True, f"SUCCESS | greeted {task['name']}"
