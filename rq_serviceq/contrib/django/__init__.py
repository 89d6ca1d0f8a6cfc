"""Django integration: ``INSTALLED_APPS += ["rq_serviceq.contrib.django"]``.

Settings (all optional)::

    SERVICEQ = {
        "REDIS_URL": "redis://localhost:6379/0",    # else $RQ_REDIS_URL, $REDIS_URL, localhost
        "ALLOWED_MODULES": ["notes.tasks"],          # -> RQ_SERVICEQ_ALLOWED_MODULES for every worker
        "QUEUES": {                                  # defaults a service queue gets when it is created
            "deliveries": {"task_function": "notes.tasks.record_delivery", "worker_count": 2, "retry_limit": 3},
        },
    }

``get_serviceq(name)`` returns the facade on that Redis; ``manage.py serviceq_worker NAME``
runs the supervisor, whose workers are :class:`DjangoServiceQWorker`: ``django.setup()``
in each worker process, so task functions and callbacks can use the ORM.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from redis import Redis

from rq_serviceq import configure
from rq_serviceq.serviceq import ServiceQ
from rq_serviceq.store.connection import connect, redis_url
from rq_serviceq.task.imports import ALLOWED_ENV
from rq_serviceq.worker.launcher import WORKER_CLASS_ENV
from rq_serviceq.worker.worker import ServiceQWorker

WORKER_CLASS = "rq_serviceq.contrib.django.DjangoServiceQWorker"
SETTING_KEYS = ("REDIS_URL", "ALLOWED_MODULES", "QUEUES")


def _django_settings() -> Any:
    from django.conf import settings

    return settings


def serviceq_settings() -> dict[str, Any]:
    """``settings.SERVICEQ``, checked: a typo in a key must not be silently ignored."""
    from django.core.exceptions import ImproperlyConfigured

    raw = getattr(_django_settings(), "SERVICEQ", {}) or {}
    if not isinstance(raw, Mapping):
        raise ImproperlyConfigured("SERVICEQ must be a dict")
    unknown = sorted(set(raw) - set(SETTING_KEYS))
    if unknown:
        raise ImproperlyConfigured(
            f"SERVICEQ has unknown key(s) {', '.join(unknown)}; known: {', '.join(SETTING_KEYS)}"
        )
    for name, defaults in (raw.get("QUEUES") or {}).items():
        bad = sorted(set(defaults) - set(configure.KNOWN))
        if bad:
            known = ", ".join(configure.KNOWN)
            raise ImproperlyConfigured(
                f"SERVICEQ['QUEUES'][{name!r}] has unknown setting(s) {', '.join(bad)}; known: {known}"
            )
    return dict(raw)


def url() -> str:
    return redis_url(serviceq_settings().get("REDIS_URL"))


@lru_cache(maxsize=8)
def _connection(url: str) -> Redis:
    return connect(url)  # redis+sentinel:// too


def connection() -> Redis:
    """One connection pool per URL for the whole process (views share it)."""
    return _connection(url())


def get_serviceq(name: str) -> ServiceQ:
    """The service queue ``name``; created with its ``SERVICEQ["QUEUES"]`` defaults if it does not exist.

    Defaults apply at creation only: afterwards the settings in Redis (changed by
    ``scale()``, the CLI or another process) are the truth every worker shares.
    """
    conn = connection()
    defaults = (serviceq_settings().get("QUEUES") or {}).get(name)
    existed = ServiceQ.known(name, conn)
    sq = ServiceQ(name, connection=conn)
    if defaults and not existed:
        configure.apply(sq, defaults)
    return sq


def export_environment() -> None:
    """What worker processes read from the environment: the allow-list, the worker class, the settings module.

    Called by the app's ``ready()``, so that workers started from this process
    (``start()``, ``auto_start``, the supervisor) are Django workers too.
    """
    allowed = serviceq_settings().get("ALLOWED_MODULES")
    if allowed:
        os.environ[ALLOWED_ENV] = allowed if isinstance(allowed, str) else ",".join(allowed)
    os.environ.setdefault(WORKER_CLASS_ENV, WORKER_CLASS)


class DjangoServiceQWorker(ServiceQWorker):
    """A ServiceQWorker that sets Django up first, and closes stale database connections around tasks.

    ``DJANGO_SETTINGS_MODULE`` comes from the environment (``manage.py`` sets it, and
    workers inherit it from their supervisor).  Connections are checked as Django
    checks them between requests, so ``CONN_MAX_AGE`` and a database restart behave
    in a worker as they do in a web process.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        import django

        if not os.environ.get("DJANGO_SETTINGS_MODULE"):
            raise RuntimeError("DjangoServiceQWorker needs DJANGO_SETTINGS_MODULE in the environment")
        django.setup()
        super().__init__(*args, **kwargs)

    def execute_job(self, job: Any, queue: Any) -> None:
        from django.db import close_old_connections

        close_old_connections()
        try:
            super().execute_job(job, queue)
        finally:
            close_old_connections()
