"""Functions defined outside the user's task module (tests/user_tasks.py), which it imports, aliases and
wraps.  No path through tests.user_tasks may run them: each leaves a mark in Redis if it ever runs."""

from __future__ import annotations

import os
from typing import Any

from redis import Redis

EXECUTED = "test:executed"  # a list: one entry for each call that should never have happened


def mark(*args: Any) -> bool:
    Redis.from_url(os.environ.get("RQ_REDIS_URL") or os.environ["REDIS_URL"]).rpush(EXECUTED, repr(args)[:200])
    return True


class Marker:
    """A base class from elsewhere: its method is inherited, not defined, by tests.user_tasks.Derived."""

    @staticmethod
    def mark(*args: Any) -> bool:
        return mark("Marker.mark", *args)
