"""The progress feed: batch events the Lua scripts append to a capped Redis stream.

A ``watch`` command, the batch web page or a metrics exporter follows one
stream per service queue (XREAD, blocking if asked) instead of polling five
keys per refresh.  The scripts write an event for each step that changes a
batch (a push, a settle of a claimed group, a pause, a stop, a batch's end),
so following the feed costs nothing while nothing happens.  The stream keeps
about the last 10,000 events (``XADD MAXLEN ~``): a reader that falls further
behind reads the ledger (``get_status_info``) to catch up.
"""

from __future__ import annotations

import logging
from typing import Any

from redis import Redis

from rq_serviceq.models import BatchEvent
from rq_serviceq.store import keys as k
from rq_serviceq.store.replies import text

_COUNTERS = (*k.Ledger.COUNTS, "retried")  # a progress event carries the ledger after its step
logger = logging.getLogger("rq_serviceq")
_warned: dict[str, None] = {}  # malformed entries already warned of (a follower may read one again), oldest first


def read(conn: Redis, keys: k.Keys, since: str = "$", block: float | None = None, count: int = 100) -> list[BatchEvent]:
    """Events after ``since`` ('$': only new ones, '0': the oldest kept, else an event id), at most
    ``count``; waits up to ``block`` seconds for the first one (None: do not wait)."""
    block_ms = None if block is None else max(1, int(block * 1000))
    while True:
        reply: list[Any] = conn.xread({keys.events: since}, count=count, block=block_ms) or []  # type: ignore[assignment]
        entries = [entry for _stream, got in reply for entry in got]
        events = [event for event in (_parsed(*entry) for entry in entries) if event is not None]
        if events or not entries:
            return events
        since = text(entries[-1][0])  # only malformed entries: read on past them, or a follower would stop there


def newest_id(conn: Redis, keys: k.Keys) -> str:
    """The feed's newest entry id ('0-0' for an empty or missing feed): where a follower starts."""
    newest: Any = conn.xrevrange(keys.events, count=1)
    return text(newest[0][0]) if newest else "0-0"


def _parsed(entry_id: Any, fields: dict[Any, Any]) -> BatchEvent | None:
    """The event, or None for an entry that is not one (any Redis writer can XADD to the feed): a reader
    skips it with a warning rather than stop following the feed."""
    try:
        return parse(entry_id, fields)
    except (ValueError, TypeError, IndexError) as exc:
        eid = text(entry_id)
        if eid not in _warned:
            logger.warning("skipping malformed progress-feed entry %s (%s: %s)", eid, type(exc).__name__, exc)
            _warned[eid] = None
            if len(_warned) > 1000:
                del _warned[next(iter(_warned))]
        return None


def parse(entry_id: Any, fields: dict[Any, Any]) -> BatchEvent:
    values = {text(key): text(val) for key, val in fields.items()}
    eid = text(entry_id)
    counters = {name: int(values[name]) for name in _COUNTERS if name in values}
    return BatchEvent(
        id=eid,
        type=values.get("type", ""),
        batch_id=values.get("batch", ""),
        time=int(eid.split("-")[0]) / 1000,
        status=values.get("status"),
        until=float(values["until"]) if "until" in values else None,
        remark=values.get("remark"),
        reason=values.get("reason"),
        **counters,
    )
