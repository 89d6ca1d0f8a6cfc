"""Redis replies as text: redis-py hands back bytes (and Lua flat lists for hashes); every reader turns
them into ``str`` the same way, here."""

from __future__ import annotations

from typing import Any


def text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def decode_hash(raw: Any) -> dict[str, str]:
    """A hash from HGETALL (a dict, or a flat list when it comes out of Lua) as text."""
    if isinstance(raw, dict):
        return {text(key): text(val) for key, val in raw.items()}
    items = [text(x) for x in raw]
    return dict(zip(items[::2], items[1::2], strict=True))
