"""Apply a mapping of settings to a service queue: the CLI's ``config`` and Django's and Flask's
per-queue defaults share this, so that a setting has one name and one range everywhere.

Everything is checked before anything is written, so a typo in one key (or a value
out of its range) leaves the service queue as it was.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rq_serviceq.models import BreakerConfig, Settings
from rq_serviceq.serviceq import ServiceQ
from rq_serviceq.task.imports import import_path_of

WORKER = ("worker_count", "waiting_period", "resting_period", "auto_start", "concurrency", "rate_limit", "rate_burst")
RETRY = ("retry_limit", "loop_backoff")
REPORT = ("report_ttl", "report_inline_limit", "result_ttl")
LIMITS = ("task_timeout", "callback_timeout", "max_task_bytes")
DURABILITY = ("durable_replicas", "durable_timeout")
PATHS = ("task_function", "batch_begin_callback", "batch_end_callback", "worker_push_update_callback")
OTHER = ("schedule", "verbose")
BREAKER = ("failure_ratio", "min_tasks", "consecutive_failures")
KNOWN = (*WORKER, *RETRY, *REPORT, *LIMITS, *DURABILITY, *PATHS, *OTHER, *BREAKER)


def check(sq: ServiceQ, values: Mapping[str, Any]) -> None:
    """Raise (ValueError, pydantic's ValidationError) for an unknown key or a value out of range."""
    unknown = sorted(set(values) - set(KNOWN))
    if unknown:
        raise ValueError(f"unknown setting(s) {', '.join(unknown)} for {sq.name!r}; known: {', '.join(KNOWN)}")
    numbers = {key: value for key, value in values.items() if key not in PATHS}
    current = sq.settings
    Settings.model_validate({**current.model_dump(), **numbers})
    breaker(current, values)
    for key in PATHS:
        if values.get(key) is not None:
            import_path_of(values[key])


def breaker(current: Settings, values: Mapping[str, Any]) -> BreakerConfig | None:
    """The breaker ``values`` make of the current one (None when they name none of its keys), checked.

    Unlike ``set_breaker``, which replaces the whole breaker, a key given here changes that key only; a
    ``failure_ratio`` turned off (None) takes its ``min_tasks`` along unless that is given too."""
    given = {key: values[key] for key in BREAKER if key in values}
    if not given:
        return None
    merged = {key: getattr(current, key) for key in BREAKER} | given
    if merged["failure_ratio"] is None and "min_tasks" not in given:
        merged["min_tasks"] = None
    return BreakerConfig.of(**merged)


def apply(sq: ServiceQ, values: Mapping[str, Any]) -> None:
    """Set every key of ``values`` (a setting name of the facade, e.g. ``worker_count``) on ``sq``."""
    check(sq, values)
    given = dict(values)
    groups = ((WORKER, sq.set_worker_config), (RETRY, sq.set_retry_config), (REPORT, sq.set_report_config))
    for names, setter in (*groups, (LIMITS, sq.set_limits)):
        chosen = {key: given[key] for key in names if key in given}
        if chosen:
            setter(**chosen)
    durability = {key.removeprefix("durable_"): given[key] for key in DURABILITY if key in given}
    if durability:
        sq.set_durability(**durability)
    for key in PATHS:
        if given.get(key) is not None:
            getattr(sq, "set_" + key)(given[key])
    if "schedule" in given:
        sq.set_schedule(given["schedule"])
    if "verbose" in given:
        sq.verbose() if given["verbose"] else sq.silent()
    config = breaker(sq.settings, given)
    if config is not None:
        sq.set_breaker(**config.model_dump())
