"""The seed's verbose worker log, through :mod:`logging`.

Workers write ``epoch  |  worker_id  |  message`` lines to stdout when a service
queue is ``verbose()``, as the seed did.  They go through the logger
``rq_serviceq.worker_log`` (level INFO, the worker's id in ``record.worker_id``)
so that a deployment can send them elsewhere: give that logger a handler of your
own (Django's ``LOGGING``, ``logging.config.dictConfig``, or in code) and the
default stdout handler is not added; or set ``RQ_SERVICEQ_LOG_FORMAT=json`` for
one JSON object per line on stdout.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from typing import TextIO

LOGGER_NAME = "rq_serviceq.worker_log"
FORMAT_ENV = "RQ_SERVICEQ_LOG_FORMAT"  # "seed" (default) or "json"

logger = logging.getLogger(LOGGER_NAME)


class SeedFormatter(logging.Formatter):
    """``epoch  |  worker_id  |  message``: the seed's line, epoch with milliseconds."""

    def format(self, record: logging.LogRecord) -> str:
        return f"{record.created:.3f}  |  {getattr(record, 'worker_id', '-')}  |  {record.getMessage()}"


class JsonFormatter(logging.Formatter):
    """One JSON object per line, for log shippers: time, worker_id, level, message."""

    def format(self, record: logging.LogRecord) -> str:
        fields = {
            "time": round(record.created, 3),
            "worker_id": getattr(record, "worker_id", None),
            "level": record.levelname,
            "message": record.getMessage(),
        }
        return json.dumps(fields)


class _StdoutHandler(logging.StreamHandler[TextIO]):
    """Writes to whatever ``sys.stdout`` is at the time (a test's capture, a redirected stream)."""

    @property  # type: ignore[override,unused-ignore]  # a property over the base class attribute
    def stream(self) -> TextIO:
        return sys.stdout

    @stream.setter
    def stream(self, value: TextIO) -> None:
        pass


def _default_handler() -> logging.Handler:
    handler = _StdoutHandler()
    handler.setFormatter(JsonFormatter() if os.environ.get(FORMAT_ENV, "").lower() == "json" else SeedFormatter())
    handler._rq_serviceq_default = True  # type: ignore[attr-defined]
    return handler


def _ensure_handler() -> None:
    """Add the stdout handler unless someone configured the logger: their handler wins."""
    if logger.level == logging.NOTSET:
        logger.setLevel(logging.INFO)  # verbose() is the switch; root's WARNING must not mute it
    if logger.handlers:
        return
    logger.addHandler(_default_handler())
    logger.propagate = False  # else a root handler (RQ's, an app's basicConfig) prints each line twice


def worker_log(enabled: bool, worker_id: str, message: str) -> None:
    if enabled:
        _ensure_handler()
        logger.info(message, extra={"worker_id": worker_id})
