"""Redis replies as text: redis-py hands back bytes (and Lua flat lists for hashes); every reader turns
them into ``str`` the same way, here."""

from __future__ import annotations

from datetime import UTC, datetime
from functools import lru_cache
from typing import Any


def text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def decode_hash(raw: Any) -> dict[str, str]:
    """A hash from HGETALL (a dict, or a flat list when it comes out of Lua) as text."""
    if isinstance(raw, dict):
        return {text(key): text(val) for key, val in raw.items()}
    items = [text(x) for x in raw]
    return dict(zip(items[::2], items[1::2], strict=True))


def counter(raw: str | None) -> int:
    """A counter of the state hash (``pause_gen``) as the scripts read it (``lua/includes/bump.lua``): a
    value damaged by hand counts as 0, rather than stopping every worker's claims."""
    return int(raw) if raw is not None and raw.isascii() and raw.isdigit() and int(raw) < 2**53 else 0


def rq_date(value: bytes | str | None) -> datetime | None:
    """An RQ date field (``2026-01-31T12:00:00.000000Z``, ``utcformat``'s) as an aware datetime; None for none
    or garbage.  ``fromisoformat``: RQ's own ``strptime`` was a tenth of a claimed task's cost.  A group's
    tasks share their dates (one push chunk's ``created_at``, one claim's ``started_at``), so the last few
    are remembered (datetimes are immutable): two dates parsed a task had become a twentieth of its cost."""
    if not value:
        return None
    return _date(value if isinstance(value, bytes) else value.encode())


@lru_cache(maxsize=16)
def _date(value: bytes) -> datetime | None:
    try:
        return datetime.fromisoformat(value.decode()).replace(tzinfo=UTC)
    except (ValueError, UnicodeDecodeError):
        return None
