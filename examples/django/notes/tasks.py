"""Task function and batch-end callback: they run in worker processes and use the ORM."""

from __future__ import annotations

import os
from typing import Any

from rq_serviceq import NoRetry, current_qtask

from .models import BatchRecord, Delivery


def record_delivery(task: dict[str, Any]) -> tuple[bool, str]:
    if not task.get("phone"):
        raise NoRetry("no phone number")
    qtask = current_qtask() or {}
    # update_or_create: a task is run at least once, so writing it twice must be harmless.
    Delivery.objects.update_or_create(
        task_id=qtask["task_id"], defaults={"phone": task["phone"], "text": task["text"], "worker_pid": os.getpid()}
    )
    return True, "SUCCESS | stored"


def record_batch(report: dict[str, Any]) -> None:
    BatchRecord.objects.update_or_create(
        batch_id=report["batch_id"], defaults={"passed": report["total_success"], "failed": report["total_failed"]}
    )
