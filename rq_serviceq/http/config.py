"""The service's settings, read once from the environment at start-up.

A typo in a variable should stop the server with a message naming it, not
run it with a default the operator did not choose, hence the pydantic model.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from rq_serviceq.models import validate_name
from rq_serviceq.serviceq import CHUNK_SIZE
from rq_serviceq.store.connection import is_sentinel_url, parse_sentinel_url

DEFAULT_REDIS_URL = "redis://localhost:6379/0"

# environment variable -> field; BATCH_* are the seed's names, SERVICEQ_* this service's own.
ENV_VARS = {
    "BATCH_MAX_SIZE": "batch_max_size",
    "BATCH_MAX_DELAY_MS": "batch_max_delay_ms",
    "BATCH_AUTO_ENABLED": "batch_auto_enabled",
    "SERVICEQ_MAX_BATCH": "max_batch",
    "SERVICEQ_MAX_BODY_BYTES": "max_body_bytes",
    "SERVICEQ_DEFAULT": "default_queue",
    "SERVICEQ_AUTO_CREATE": "auto_create",
    "SERVICEQ_AUTO_CREATE_MAX": "auto_create_max",
    "SERVICEQ_API_TOKEN": "api_token",
    "SERVICEQ_REDIS_POOL": "redis_pool",
    "SERVICEQ_DURABLE_REPLICAS": "durable_replicas",
    "SERVICEQ_MAX_STREAMS": "max_streams",
}
_TRUE, _FALSE = {"1", "true", "yes", "on"}, {"0", "false", "no", "off"}


class HttpConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    redis_url: str = DEFAULT_REDIS_URL
    # A flush is one PUSH call, hence atomic, only while it fits one chunk.
    batch_max_size: Annotated[int, Field(ge=1, le=CHUNK_SIZE)] = 100
    batch_max_delay_ms: Annotated[float, Field(ge=0, le=60_000)] = 50.0
    batch_auto_enabled: bool = True
    max_batch: Annotated[int, Field(ge=1)] = 10_000
    max_body_bytes: Annotated[int, Field(ge=1024)] = 64 * 1024 * 1024
    default_queue: str = "default"
    auto_create: bool = True
    auto_create_max: Annotated[int, Field(ge=1)] = 1000  # service queues in all, beyond which a push creates none
    api_token: SecretStr | None = None
    redis_pool: Annotated[int, Field(ge=1, le=1024)] = 64  # connections, and threads that use them
    # Replicas every push this service makes waits for (WAIT), whatever the queue's own durable_replicas
    # says (the larger wins): a service that answers clients may promise more than the library's callers.
    durable_replicas: Annotated[int, Field(ge=0, le=16)] = 0
    # Event streams (GET /serviceqs/{name}/events) open at once: each holds a thread and a Redis connection
    # of its own pool, so a client opening many cannot take the requests' threads.
    max_streams: Annotated[int, Field(ge=1, le=1024)] = 32

    @field_validator("redis_url")
    @classmethod
    def _url(cls, value: str) -> str:
        if is_sentinel_url(value):
            parse_sentinel_url(value)  # a malformed one stops the server here, not in each request
        return value

    @field_validator("default_queue")
    @classmethod
    def _name(cls, value: str) -> str:
        return validate_name(value)

    @field_validator("api_token", mode="before")
    @classmethod
    def _token(cls, value: Any) -> Any:
        return value or None  # an empty SERVICEQ_API_TOKEN means none, not a token of ""

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> HttpConfig:
        """Settings from the environment; Redis URL from RQ_REDIS_URL, then REDIS_URL (as the workers')."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        url = env.get("RQ_REDIS_URL") or env.get("REDIS_URL")
        if url:
            values["redis_url"] = url
        for var, field in ENV_VARS.items():
            raw = env.get(var)
            if raw is not None and raw.strip() != "":
                values[field] = _boolean(var, raw) if field in ("batch_auto_enabled", "auto_create") else raw.strip()
        values.update({key: value for key, value in overrides.items() if value is not None})
        try:
            return cls.model_validate(values)
        except ValidationError as exc:
            fields = {field: var for var, field in ENV_VARS.items()}
            problems = "; ".join(
                f"{fields.get(str(err['loc'][0]), err['loc'][0])}: {err['msg']}" for err in exc.errors()
            )
            raise ValueError(f"bad rq-serviceq HTTP setting: {problems}") from None


def _boolean(var: str, raw: str) -> bool:
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError(f"bad rq-serviceq HTTP setting: {var}={raw!r} is not a boolean (true/false)")
