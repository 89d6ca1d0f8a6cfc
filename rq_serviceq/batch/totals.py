"""Running totals of a service queue, kept in Redis for metrics (``rq:serviceq:NAME:totals``).

Why a hash of totals rather than counting at scrape time: a scrape must cost the
same whatever a queue's size or history.  Summing batch ledgers per scrape is
not monotonic (reports expire after ``report_ttl``, so a Prometheus counter
would jump back), and counting from the progress feed in the exporter is per
exporter process (two exporters disagree, a restart starts from zero) and
loses what a trimmed feed dropped.  So the Lua scripts add each call's counts
(``pushed``, ``passed``, ``failed``, ``retried``, ``lost``: a worker death
noticed when its task's lease ran out, the job field ``sq_lost``) once per
script call, next to the progress feed (``tally`` in ``lua/includes/events.lua``),
``breaker_trips`` as the breaker pauses the queue (``lua/includes/breaker.lua``), and
the end of a batch adds its duration and callback failures here.  A scrape
reads one hash per service queue; every exporter reads the same numbers.
"""

from __future__ import annotations

import math

from redis import Redis

from rq_serviceq.store import keys as k
from rq_serviceq.store.replies import decode_hash

# Upper bounds (seconds) of the batch duration histogram's buckets; +Inf is implied.
DURATION_BUCKETS = (1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0, 21600.0, 86400.0)
COUNTERS = ("pushed", "passed", "failed", "retried", "lost")
BUCKET_PREFIX = "duration_le_"


def bucket_field(seconds: float) -> str:
    """The field of the first bucket a duration falls in (buckets are stored non-cumulative)."""
    bound = next((b for b in DURATION_BUCKETS if seconds <= b), math.inf)
    return f"{BUCKET_PREFIX}{'inf' if bound == math.inf else repr(bound)}"


def batch_ended(conn: Redis, keys: k.Keys, batch_id: str, status: str) -> None:
    """Count a batch that just finished (called once: by the caller whose FINISH ended it)."""
    start, end = conn.hmget(keys.batch(batch_id), k.Ledger.START_TIME, k.Ledger.END_TIME)
    with conn.pipeline(transaction=True) as pipe:
        pipe.hincrby(keys.totals, f"batches_{status.lower()}", 1)
        if start and end:
            seconds = max(0.0, float(end) - float(start))
            pipe.hincrby(keys.totals, bucket_field(seconds), 1)
            pipe.hincrby(keys.totals, "duration_count", 1)
            pipe.hincrbyfloat(keys.totals, "duration_sum", seconds)
        pipe.execute()


def callback_failed(conn: Redis, keys: k.Keys, which: str) -> None:
    """``which`` is "begin" or "end": a batch callback failed for good (its field says ``failed: ...``)."""
    conn.hincrby(keys.totals, f"{which}_callback_failures", 1)


def read(conn: Redis, name: str) -> dict[str, float]:
    """Every total of a service queue as a number (missing ones are 0 to the caller)."""
    return {field: float(value) for field, value in decode_hash(conn.hgetall(k.Keys(name).totals)).items()}
