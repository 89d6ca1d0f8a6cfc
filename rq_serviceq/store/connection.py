"""Where Redis is: one rule for producers, the CLI, workers and the dashboard.

RQ's CLI (and so every worker) reads ``RQ_REDIS_URL``; Heroku-style platforms
set ``REDIS_URL``.  A producer that read only one of them while its workers
read the other would, sharing one deploy env file, silently talk to
localhost.  So everything here reads ``RQ_REDIS_URL`` first, then ``REDIS_URL``.
"""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import quote

from redis import Redis
from redis.connection import SSLConnection

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


def connection_url(conn: Redis, hide_password: bool = False) -> str:
    """A redis:// URL that reaches the same server and database as ``conn``."""
    kw = conn.connection_pool.connection_kwargs
    db = kw.get("db", 0)
    user = kw.get("username") or ""
    password = kw.get("password") or ""
    auth = ""
    if password:
        auth = f"{quote(user, safe='')}:{'***' if hide_password else quote(password, safe='')}@"
    if kw.get("path"):
        return f"unix://{auth}{kw['path']}?db={db}"
    scheme = "rediss" if issubclass(conn.connection_pool.connection_class, SSLConnection) else "redis"
    return f"{scheme}://{auth}{kw.get('host', 'localhost')}:{kw.get('port', 6379)}/{db}"


def own_connection(pool: Any) -> Any:
    """A connection of ``pool`` held apart from its commands (the journal's, a streamed push): the caller
    writes packed commands on it without waiting and reads the replies later, then gives it back."""
    try:
        return pool.get_connection()
    except TypeError:  # redis-py < 5.3 wants a command name
        return pool.get_connection("EVALSHA")
