"""The demo batch: the seed's worked example, run end to end.

``python -m rq_serviceq.demo`` pushes the seed's seven tasks to a service
queue with three worker processes and prints the verbose worker log and the
batch report.  It uses ``RQ_REDIS_URL`` or ``REDIS_URL`` when set (the order
``ServiceQ()`` follows), and otherwise starts a throwaway redis-server of its
own, so it never writes to a Redis you did not point it at.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from rq_serviceq import ServiceQ, connect, current_qtask
from rq_serviceq.store.connection import url_from_env
from rq_serviceq.testing import RedisServer

TASKS = [{"name": f"Tuhin{i}", "gender": "male", "country": "india"} for i in range(1, 8)]


def send_message(task: dict[str, Any]) -> tuple[bool, str]:
    """Pretend to send a WhatsApp message, failing the way the seed's example does."""
    attempt = (current_qtask() or {}).get("total_retry_attempts", 0)
    if task["name"] == "Tuhin3":
        return False, "NO_RETRY | user do not have whatsapp number"
    if task["name"] == "Tuhin4":
        return (True, "SUCCESS | the task was finally successful") if attempt >= 3 else (False, "RETRY | try later")
    if task["name"] == "Tuhin6":
        return False, "RETRY | send for retry"
    return True, "SUCCESS | the task was successful"


def print_report(report: dict[str, Any]) -> None:
    """Batch-end callback: runs once, in the worker that finished the batch."""
    print(f"batch-end callback: {report['total_success']} passed, {report['total_failed']} failed", flush=True)


def run(url: str) -> dict[str, Any]:
    svcq = ServiceQ("demo-drag", connection=connect(url))
    svcq.delete()  # start clean: the demo may have run against this Redis before
    svcq = ServiceQ("demo-drag", connection=connect(url))
    svcq.set_worker_config(worker_count=3, waiting_period=0.5, resting_period=0.2, auto_start=True)
    svcq.set_retry_config(retry_limit=5, loop_backoff=0.1)
    svcq.set_task_function(send_message)
    svcq.set_batch_end_callback(print_report)
    svcq.verbose()
    svcq.push_many(TASKS)
    report = svcq.wait_for_batch(timeout=120)
    svcq.join(timeout=30)
    return report


def main() -> int:
    url = url_from_env()
    if url:
        report = run(url)
    else:
        with RedisServer() as server:
            report = run(server.url)
    print(json.dumps(report, indent=2))
    return 0 if (report["total_success"], report["total_failed"]) == (5, 2) else 1


if __name__ == "__main__":
    sys.exit(main())
