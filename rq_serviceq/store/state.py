"""A service queue's settings and status in Redis.

Config lives in one hash so that a ``ServiceQ("drag")`` built in a web app, a
worker on another machine and the CLI all see the same id and the same config
(the seed's "sync serviceQ object with redis").
"""

from __future__ import annotations

import logging
import time
import types
import uuid
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import ValidationError
from redis import Redis

from rq_serviceq.models import Settings
from rq_serviceq.store import keys as k
from rq_serviceq.store.replies import decode_hash as decode_hash
from rq_serviceq.store.replies import text as text


def _plain_type(annotation: Any) -> type:
    """What to parse a stored string as: ``int`` for ``Annotated[StrictInt, ...]``, ``float`` for ``Timeout | None``."""
    while True:
        origin = get_origin(annotation)
        if origin is Annotated:
            annotation = get_args(annotation)[0]
        elif origin in (Union, types.UnionType):
            annotation = next(arg for arg in get_args(annotation) if arg is not type(None))
        else:
            return annotation  # type: ignore[no-any-return]


# How each setting reads back from the hash, from the model's own field types: adding a setting is one edit.
_FIELD_TYPES = {name: _plain_type(field.annotation) for name, field in Settings.model_fields.items()}
_SETTING_FIELDS = set(_FIELD_TYPES)
_REQUIRED_FIELDS = {name for name, field in Settings.model_fields.items() if field.is_required()}
_warned: set[tuple[str, str]] = set()  # (field, stored value) already logged: workers load settings per claim

logger = logging.getLogger("rq_serviceq")


class ServiceQDeleted(LookupError):
    """The service queue was deleted while this process was working it."""


def settings_from_hash(fields: dict[str, str]) -> Settings:
    """Settings as stored; a stored value out of today's ranges falls back to its default.

    Older versions accepted values that are refused now (``worker_count=10**9``), and a
    hand may write anything into the hash.  Refusing to load them would stop every
    worker and leave ``ServiceQ(name)`` unable to attach and set a sane value.
    """
    values = {name: _typed(name, raw) for name, raw in fields.items() if name in _SETTING_FIELDS}
    try:
        return Settings.model_validate(values)
    except ValidationError as exc:
        bad = {str(err["loc"][0]) for err in exc.errors() if err["loc"]}
        if not bad or bad & _REQUIRED_FIELDS:
            raise
        _warn_once(values, bad)
        return Settings.model_validate({name: value for name, value in values.items() if name not in bad})


def _typed(name: str, raw: str) -> Any:
    kind = _FIELD_TYPES[name]
    if kind is bool:
        return raw == "1"
    if kind in (int, float):
        if not raw:
            return None  # "" is how None is stored (task_timeout=None: no limit)
        try:
            return kind(raw)
        except ValueError:
            return raw  # validation refuses it, and it falls back to its default
    return raw or None


def _warn_once(values: dict[str, Any], bad: set[str]) -> None:
    for seen in {(name, repr(values.get(name))) for name in bad} - _warned:
        _warned.add(seen)
        logger.warning("stored setting %s=%s is out of range; using the default instead", *seen)


def settings_to_hash(settings: Settings) -> dict[str, str]:
    out: dict[str, str] = {}
    for name, value in settings.model_dump().items():
        if isinstance(value, bool):
            out[name] = "1" if value else "0"
        else:
            out[name] = "" if value is None else repr(value) if isinstance(value, float) else str(value)
    return out


def attach(conn: Redis, name: str) -> Settings:
    """Create the service queue in Redis, or join the one already there.

    HSETNX per field makes creation idempotent and race-free: two processes
    attaching at once end up with one id and one config.
    """
    keys = k.Keys(name)
    fresh = Settings(id=uuid.uuid4().hex, name=name, created_at=time.time())
    with conn.pipeline(transaction=True) as pipe:
        for field, value in settings_to_hash(fresh).items():
            pipe.hsetnx(keys.state, field, value)
        pipe.hsetnx(keys.state, "status", "CREATED")
        pipe.sadd(k.NAMES, name)
        pipe.hgetall(keys.state)
        raw = pipe.execute()[-1]
    return settings_from_hash(decode_hash(raw))


def load(conn: Redis, name: str) -> Settings:
    raw = conn.hgetall(k.Keys(name).state)
    if not raw:
        raise LookupError(f"no service queue named {name!r} on this Redis")
    return settings_from_hash(decode_hash(raw))


# Settings a worker waiting on the start budget sleeps on: a change rings the bell, so it takes effect at once.
_WAKE_ON = {"rate_limit", "rate_burst"}
BELL_SIZE = 64  # lua/includes/ring.lua keeps the bell at this many rings


def save(conn: Redis, settings: Settings, fields: set[str]) -> None:
    values = settings_to_hash(settings)
    keys = k.Keys(settings.name)
    with conn.pipeline(transaction=True) as pipe:
        pipe.hset(keys.state, mapping={f: values[f] for f in fields})
        if fields & _WAKE_ON:
            pipe.rpush(keys.bell, *["x"] * BELL_SIZE)
            pipe.ltrim(keys.bell, 0, BELL_SIZE - 1)
        pipe.execute()


def status(conn: Redis, name: str) -> str:
    return text(conn.hget(k.Keys(name).state, "status") or b"CREATED")
