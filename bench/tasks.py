"""Task functions and callbacks the benchmark hands to RQ and to service queues.

They live in a module (not in ``bench.__main__``) because worker processes
import them by path.  Whatever they measure they write to the Redis the worker
was given (``RQ_REDIS_URL``), under ``bench:`` keys, for the bench to read back.
"""

from __future__ import annotations

import json
import os
import time
from functools import lru_cache
from typing import Any

from redis import Redis

from rq_serviceq import current_qtask

BATCH_END_KEY = "bench:batch_end"  # HASH batch id -> Redis TIME when the batch-end callback started
RETRY_LATE_KEY = "bench:retry_late"  # LIST of (attempt start - sq_due) seconds, retries only
ATTEMPTS_KEY = "bench:attempts"  # counter of attempts (idle-CPU row)
STARTS_KEY = "bench:starts"  # LIST of Redis TIME at each attempt's start (bench/rate.py)


def _conn() -> Redis:
    return _connect(os.environ.get("BENCH_REDIS_URL") or os.environ["RQ_REDIS_URL"])


@lru_cache(maxsize=4)
def _connect(url: str) -> Redis:
    return Redis.from_url(url)


def _redis_time(raw: tuple[int, int]) -> float:
    secs, micros = raw
    return secs + micros / 1e6


# --- plain RQ -------------------------------------------------------------------------
def noop(*args: Any, **kwargs: Any) -> None:
    return None


def sleep10(*args: Any, **kwargs: Any) -> None:
    time.sleep(0.01)


def rq_retry_wait(*args: Any, **kwargs: Any) -> None:
    """Fails its first two attempts (RQ retries it: at once, then after the long interval), then passes."""
    from rq import get_current_job

    job = get_current_job()
    conn = _conn()
    conn.incr(ATTEMPTS_KEY)
    if conn.incr(f"bench:attempts:{job.id if job else 'none'}") <= 2:
        raise RuntimeError("bench: fail so that RQ retries")


# --- rq-serviceq ------------------------------------------------------------------------
def sq_noop(task: Any) -> bool:
    return True


def sq_sleep10(task: Any) -> bool:
    time.sleep(0.01)
    return True


def record_batch_end(report: dict[str, Any]) -> None:
    """Batch-end callback: Redis TIME first thing, stored under the batch id."""
    conn = _conn()
    started = _redis_time(conn.time())
    conn.hset(BATCH_END_KEY, report["batch_id"], repr(started))


def retry_once(task: Any) -> tuple[bool, str]:
    """Fails its first attempt, passes its retry; on a retry records how late it started (TIME - sq_due)."""
    qtask = current_qtask() or {}
    conn = _conn()
    with conn.pipeline(transaction=False) as pipe:
        pipe.time()
        pipe.hget(f"rq:job:{qtask['task_id']}", "sq_due")
        now_raw, due = pipe.execute()
    if qtask.get("total_retry_attempts", 0) >= 1:
        now = _redis_time(now_raw)
        late = now - float(due) if due else float("nan")
        conn.rpush(RETRY_LATE_KEY, json.dumps(late))
        return True, "SUCCESS | second attempt"
    return False, "RETRY | x"


def retry_wait(task: Any) -> tuple[bool, str]:
    """Fails its first two attempts (retry 1 due at once, retry 2 after loop_backoff), then passes."""
    qtask = current_qtask() or {}
    _conn().incr(ATTEMPTS_KEY)
    if qtask.get("total_retry_attempts", 0) < 2:
        return False, "RETRY | wait"
    return True, "SUCCESS | waited"


def sq_record_start(task: Any) -> bool:
    """A no-op that notes when it started, on Redis' clock (``python -m bench.rate``)."""
    conn = _conn()
    conn.rpush(STARTS_KEY, f"{_redis_time(conn.time()):.6f}")
    return True
