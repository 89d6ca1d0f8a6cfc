"""Where Redis is: one rule for producers, the CLI, workers and the dashboard.

RQ's CLI (and so every worker) reads ``RQ_REDIS_URL``; Heroku-style platforms
set ``REDIS_URL``.  A producer that read only one of them while its workers
read the other would, sharing one deploy env file, silently talk to
localhost.  So everything here reads ``RQ_REDIS_URL`` first, then ``REDIS_URL``.
"""

from __future__ import annotations

import os

from redis import Redis

DEFAULT_URL = "redis://localhost:6379/0"
ENV_VARS = ("RQ_REDIS_URL", "REDIS_URL")


def url_from_env() -> str | None:
    """``RQ_REDIS_URL``, else ``REDIS_URL``, else None (for callers that do something else then)."""
    return next((os.environ[var] for var in ENV_VARS if os.environ.get(var)), None)


def redis_url(url: str | None = None) -> str:
    """The explicit ``url``, else ``RQ_REDIS_URL``, else ``REDIS_URL``, else ``redis://localhost:6379/0``."""
    return url or url_from_env() or DEFAULT_URL


def connect(url: str | None = None) -> Redis:
    """A connection to the Redis :func:`redis_url` names."""
    return Redis.from_url(redis_url(url))
