"""Where Redis is: one rule for producers, the CLI, workers and the dashboard.

RQ's CLI (and so every worker) reads ``RQ_REDIS_URL``; Heroku-style platforms
set ``REDIS_URL``.  A producer that read only one of them while its workers
read the other would, sharing one deploy env file, silently talk to
localhost.  So everything here reads ``RQ_REDIS_URL`` first, then ``REDIS_URL``.

A Redis run under Sentinel is named by one URL form wherever a Redis URL is
taken (``redis+sentinel://[[user]:password@]host:port[,host:port...]/service[/db]``,
options as query parameters): the connection asks the sentinels for the
service's primary, and asks again when that primary fails or turns replica
(redis-py's ``SentinelConnectionPool``).  ``connection_url`` gives the
Sentinel URL back, so that processes started from a connection (workers,
``start()``) find the primary the same way, never a server it used to be on.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlencode

from redis import BlockingConnectionPool, ConnectionPool, Redis
from redis.connection import SSLConnection
from redis.sentinel import Sentinel, SentinelConnectionPool, SentinelManagedConnection

DEFAULT_URL = "redis://localhost:6379/0"
ENV_VARS = ("RQ_REDIS_URL", "REDIS_URL")
SENTINEL_SCHEME = "redis+sentinel"
SENTINEL_PORT = 26379
# A sentinel that hangs must not hang the lookup of the primary: the next sentinel is asked instead.
SENTINEL_TIMEOUT = 2.0
_SENTINEL_FORM = f"{SENTINEL_SCHEME}://[[user]:password@]host:port[,host:port...]/service_name[/db]"
_FLOAT_OPTIONS = ("socket_timeout", "socket_connect_timeout", "sentinel_socket_timeout",
                  "sentinel_socket_connect_timeout")  # fmt: skip
_TEXT_OPTIONS = ("sentinel_username", "sentinel_password")
# The class `rq worker --connection-class` takes so that `-u redis+sentinel://...` works (launcher.py).
SENTINEL_AWARE_CLASS = "rq_serviceq.store.connection.SentinelAwareRedis"


def url_from_env() -> str | None:
    """``RQ_REDIS_URL``, else ``REDIS_URL``, else None (for callers that do something else then)."""
    return next((os.environ[var] for var in ENV_VARS if os.environ.get(var)), None)


def redis_url(url: str | None = None) -> str:
    """The explicit ``url``, else ``RQ_REDIS_URL``, else ``REDIS_URL``, else ``redis://localhost:6379/0``."""
    return url or url_from_env() or DEFAULT_URL


ROUTES_ENV = "RQ_SERVICEQ_ROUTES"


def routes() -> dict[str, str]:
    """Which Redis each service queue lives on, where a deployment spreads them over several servers:
    ``RQ_SERVICEQ_ROUTES``, a JSON object of service queue name -> Redis URL (or ``@path`` to a file holding
    one); a queue it does not name lives on the default Redis (:func:`redis_url`).  Producers, supervisors,
    the HTTP service and the CLI read the same variable, so they agree on where each queue is."""
    raw = os.environ.get(ROUTES_ENV, "").strip()
    if not raw:
        return {}
    try:
        text = Path(raw[1:]).read_text() if raw.startswith("@") else raw
        table = json.loads(text)
    except (OSError, ValueError) as exc:
        raise ValueError(f"{ROUTES_ENV}: neither a JSON object nor @file holding one ({exc})") from None
    if not isinstance(table, dict) or not all(isinstance(v, str) and v for v in table.values()):
        raise ValueError(
            f'{ROUTES_ENV} must map service queue names to Redis URLs, e.g. {{"drag": "redis://a:6379/0"}}'
        )
    return {str(name): url for name, url in table.items()}


def url_for(name: str, url: str | None = None) -> str:
    """Where service queue ``name`` lives: the explicit ``url``, else its route, else the default Redis."""
    return url or routes().get(name) or redis_url()


def is_sentinel_url(url: str) -> bool:
    return url.lower().startswith(SENTINEL_SCHEME + "://")


@dataclass(frozen=True)
class SentinelTarget:
    """What a ``redis+sentinel://`` URL names: the sentinels, the service they watch, how to log in to each."""

    sentinels: list[tuple[str, int]]
    service_name: str
    db: int = 0
    username: str | None = None
    password: str | None = None
    options: dict[str, Any] = field(default_factory=dict)  # the query options, parsed

    def sentinel_kwargs(self) -> dict[str, Any]:
        """How to reach a sentinel: its own login, a short timeout unless the URL says otherwise."""
        opts = self.options
        timeout = opts.get("sentinel_socket_timeout", opts.get("socket_timeout", SENTINEL_TIMEOUT))
        connect_timeout = opts.get("sentinel_socket_connect_timeout", opts.get("socket_connect_timeout", timeout))
        return {
            "socket_timeout": timeout,
            "socket_connect_timeout": connect_timeout,
            "username": opts.get("sentinel_username"),
            "password": opts.get("sentinel_password"),
        }

    def connection_kwargs(self, **overrides: Any) -> dict[str, Any]:
        """How to reach the primary: the URL's login and db, its socket options, then the caller's."""
        kw: dict[str, Any] = {"db": self.db, "username": self.username, "password": self.password,
                              "connection_class": SentinelConnection}  # fmt: skip
        kw |= {key: self.options[key] for key in ("socket_timeout", "socket_connect_timeout") if key in self.options}
        return kw | overrides


class SentinelConnection(SentinelManagedConnection):
    """redis-py's Sentinel connection, but one that drops its socket when a read is interrupted, as a plain
    ``Connection`` does: redis-py's keeps it (``disconnect_on_error=False``), so a worker's stop signal
    raised inside a blocking BLPOP left that reply pending, and the next command on the connection read it
    as its own (a ZRANGE answered None)."""

    def read_response(self, *args: Any, disconnect_on_error: bool = True, **kwargs: Any) -> Any:  # type: ignore[override]
        return super().read_response(*args, disconnect_on_error=disconnect_on_error, **kwargs)


def harden(conn: Redis) -> Redis:
    """Give a connection made through Sentinel elsewhere (RQ's CLI from its ``SENTINEL`` settings) the
    connections of :class:`SentinelConnection` from now on; any other connection is left as it is."""
    pool = conn.connection_pool
    if isinstance(pool, SentinelConnectionPool) and pool.connection_class is SentinelManagedConnection:
        pool.connection_class = SentinelConnection
        # and those made already (RQ's CLI has used its connection): the subclass adds no state
        for made in (*getattr(pool, "_available_connections", ()), *getattr(pool, "_in_use_connections", ())):
            if type(made) is SentinelManagedConnection:
                made.__class__ = SentinelConnection
    return conn


class SentinelURLError(ValueError):
    """A ``redis+sentinel://`` URL that does not parse; the message shows it with its password hidden."""


def parse_sentinel_url(url: str) -> SentinelTarget:
    """The parts of ``redis+sentinel://[[user]:password@]host:port[,host:port...]/service_name[/db][?opts]``.

    Options: ``sentinel_password``, ``sentinel_username`` (the sentinels' own login), ``socket_timeout``,
    ``socket_connect_timeout`` (both kinds of connection), ``sentinel_socket_timeout``,
    ``sentinel_socket_connect_timeout`` (the sentinels' only).  Anything else is an error: a misspelt
    option ignored would leave a setting silently off."""
    if not is_sentinel_url(url):
        raise SentinelURLError(f"not a {SENTINEL_SCHEME}:// URL: {_hidden(url)}")
    rest = url[len(SENTINEL_SCHEME) + 3 :]
    rest, _, query = rest.partition("?")
    rest, _, fragment = rest.partition("#")
    netloc, slash, path = rest.partition("/")
    auth, at, hosts = netloc.rpartition("@")

    def bad(why: str) -> SentinelURLError:
        return SentinelURLError(f"bad Sentinel URL {_hidden(url)}: {why} (the form is {_SENTINEL_FORM})")

    if fragment:
        raise bad("a URL fragment (#...) means nothing here")
    username = password = None
    if at:
        user, colon, secret = auth.partition(":")
        username = unquote(user) or None
        password = unquote(secret) if colon else None  # "name@": a user name, as redis:// URLs read it
    sentinels = [_host_port(part, bad) for part in hosts.split(",")]
    parts = path.split("/") if slash else []
    if parts and parts[-1] == "":
        parts.pop()  # a trailing slash
    if not parts or not parts[0]:
        raise bad("no service name (the name in the sentinels' `sentinel monitor NAME ...`)")
    if len(parts) > 2:
        raise bad(f"too many path parts {path!r}")
    service = unquote(parts[0])
    db = 0
    if len(parts) == 2:
        if not parts[1].isdigit():
            raise bad(f"the db must be a number, not {parts[1]!r}")
        db = int(parts[1])
    return SentinelTarget(sentinels, service, db, username, password, _options(query, bad))


def _host_port(part: str, bad: Any) -> tuple[str, int]:
    part = part.strip()
    if part.startswith("["):  # [::1]:26379
        host, close, tail = part[1:].partition("]")
        if not close or (tail and not tail.startswith(":")):
            raise bad(f"bad host {part!r}")
        port_text = tail[1:]
    else:
        host, _, port_text = part.partition(":")
    if not host:
        raise bad("a sentinel without a host" if part else "an empty sentinel address")
    if not port_text:
        return host, SENTINEL_PORT
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise bad(f"bad port {port_text!r} for {host}")
    return host, int(port_text)


def _options(query: str, bad: Any) -> dict[str, Any]:
    options: dict[str, Any] = {}
    try:
        parsed = parse_qs(query, keep_blank_values=True, strict_parsing=bool(query))
    except ValueError:
        raise bad(f"bad query {query!r}") from None
    for name, values in parsed.items():
        if len(values) > 1:
            raise bad(f"{name} given more than once")
        if name in _FLOAT_OPTIONS:
            try:
                value = float(values[0])
            except ValueError:
                value = -1.0
            if not value > 0:
                raise bad(f"{name} must be a number of seconds above 0, not {values[0]!r}")
            options[name] = value
        elif name in _TEXT_OPTIONS:
            options[name] = values[0] or None
        else:
            raise bad(f"unknown option {name!r} (known: {', '.join((*_TEXT_OPTIONS, *_FLOAT_OPTIONS))})")
    return options


def _hidden(url: str) -> str:
    """``url`` with its passwords shown as ***: it goes into error messages and logs."""
    head, sep, tail = url.partition("://")
    if sep and "@" in tail.split("/", 1)[0]:
        auth, _, after = tail.partition("@")
        if ":" in auth:
            auth = auth.split(":", 1)[0] + ":***"
        tail = f"{auth}@{after}"
    base, q, query = (head + sep + tail).partition("?")
    if q:
        pairs = [p.split("=", 1)[0] + "=***" if p.lower().startswith("sentinel_password=") else p
                 for p in query.split("&")]  # fmt: skip
        return f"{base}?{'&'.join(pairs)}"
    return base


def sentinel_for(target: SentinelTarget) -> Sentinel:
    return Sentinel(target.sentinels, sentinel_kwargs=target.sentinel_kwargs())  # type: ignore[no-untyped-call, unused-ignore]


class SentinelAwareRedis(Redis):
    """``Redis`` whose ``from_url`` also takes ``redis+sentinel://``: the class ``rq worker
    --connection-class`` is given, so that RQ's own CLI reaches the primary from ``-u``/``RQ_REDIS_URL``."""

    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> Any:
        if is_sentinel_url(url):
            target = parse_sentinel_url(url)
            manager: Any = sentinel_for(target)  # redis-py leaves Sentinel untyped
            return manager.master_for(target.service_name, redis_class=cls, **target.connection_kwargs(**kwargs))
        return super().from_url(url, **kwargs)


class BlockingSentinelConnectionPool(SentinelConnectionPool, BlockingConnectionPool):
    """A Sentinel pool that, full, waits ``timeout`` seconds for a connection rather than failing at once:
    what the HTTP service's threads share (``BlockingConnectionPool``), with the primary found by Sentinel."""


def connect(url: str | None = None, **options: Any) -> Redis:
    """A connection to the Redis :func:`redis_url` names (a ``redis+sentinel://`` URL: its primary)."""
    url = redis_url(url)
    if is_sentinel_url(url):
        target = parse_sentinel_url(url)
        manager: Any = sentinel_for(target)
        master: Redis = manager.master_for(target.service_name, **target.connection_kwargs(**options))
        return master
    return Redis.from_url(url, **options)


def connection_pool(url: str | None = None, *, blocking: bool = False, **options: Any) -> ConnectionPool:
    """A pool for :func:`redis_url`'s Redis (blocking: threads wait for a free connection up to ``timeout``)."""
    url = redis_url(url)
    if is_sentinel_url(url):
        target = parse_sentinel_url(url)
        pool_class: Any = BlockingSentinelConnectionPool if blocking else SentinelConnectionPool
        pool: ConnectionPool = pool_class(
            target.service_name, sentinel_for(target), **target.connection_kwargs(**options)
        )
        return pool
    if blocking:
        return BlockingConnectionPool.from_url(url, **options)
    return ConnectionPool.from_url(url, **options)


def connection_url(conn: Redis, hide_password: bool = False) -> str:
    """A URL that reaches the same server and database as ``conn``: for a connection through Sentinel, the
    ``redis+sentinel://`` URL (the primary it is on now may not be the primary tomorrow)."""
    pool = conn.connection_pool
    if isinstance(pool, SentinelConnectionPool):
        return _sentinel_url(pool, hide_password)
    kw = pool.connection_kwargs
    db = kw.get("db", 0)
    auth = _auth(kw, hide_password)
    if kw.get("path"):
        return f"unix://{auth}{kw['path']}?db={db}"
    scheme = "rediss" if issubclass(pool.connection_class, SSLConnection) else "redis"
    return f"{scheme}://{auth}{kw.get('host', 'localhost')}:{kw.get('port', 6379)}/{db}"


def _auth(kw: dict[str, Any], hide_password: bool) -> str:
    user = kw.get("username") or ""
    password = kw.get("password") or ""
    if not password:
        return f"{quote(user, safe='')}@" if user else ""
    return f"{quote(user, safe='')}:{'***' if hide_password else quote(password, safe='')}@"


def _sentinel_url(pool: SentinelConnectionPool, hide_password: bool) -> str:
    kw = pool.connection_kwargs
    manager: Sentinel = pool.sentinel_manager
    hosts = []
    for sentinel in manager.sentinels:
        skw = sentinel.connection_pool.connection_kwargs
        host = str(skw.get("host", "localhost"))
        hosts.append(f"[{host}]:{skw.get('port')}" if ":" in host else f"{host}:{skw.get('port')}")
    query: dict[str, Any] = {}
    for key in ("socket_timeout", "socket_connect_timeout"):
        if kw.get(key) is not None:
            query[key] = f"{kw[key]:g}"
    skw = manager.sentinel_kwargs
    # The sentinels' timeouts follow the primary's unless set apart (None, as RQ's settings leave them: a
    # URL cannot say "none", so the default stands in).
    timeout, connect_timeout = kw.get("socket_timeout"), kw.get("socket_connect_timeout")
    sentinel_timeout, sentinel_connect = skw.get("socket_timeout"), skw.get("socket_connect_timeout")
    if sentinel_timeout is not None and sentinel_timeout != (SENTINEL_TIMEOUT if timeout is None else timeout):
        query["sentinel_socket_timeout"] = f"{sentinel_timeout:g}"
    if sentinel_connect is not None and sentinel_connect != (connect_timeout or sentinel_timeout):
        query["sentinel_socket_connect_timeout"] = f"{sentinel_connect:g}"
    if skw.get("username"):
        query["sentinel_username"] = skw["username"]
    if skw.get("password"):
        query["sentinel_password"] = "***" if hide_password else skw["password"]
    tail = f"?{urlencode(query, safe='*')}" if query else ""
    service = quote(pool.service_name, safe="")
    return f"{SENTINEL_SCHEME}://{_auth(kw, hide_password)}{','.join(hosts)}/{service}/{kw.get('db', 0)}{tail}"


def own_connection(pool: Any) -> Any:
    """A connection of ``pool`` held apart from its commands (the journal's, a streamed push): the caller
    writes packed commands on it without waiting and reads the replies later, then gives it back."""
    try:
        return pool.get_connection()
    except TypeError:  # redis-py < 5.3 wants a command name
        return pool.get_connection("EVALSHA")
