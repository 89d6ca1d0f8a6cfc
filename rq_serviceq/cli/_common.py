"""What every command shares: ``--url``, ``--json``, opening a service queue, errors, tables.

Errors a user can cause or fix (an unknown queue, a bad value, Redis down) end the
command with one line on stderr and a non-zero exit code, never a traceback:
exit 2 for what was typed or given (as click does for a usage error), exit 1 for
what went wrong around it (Redis unreachable, a timeout).  A traceback means a bug.
"""

from __future__ import annotations

import functools
import json
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

import click
import pydantic
import redis
from redis import Redis

from rq_serviceq.models import validate_name
from rq_serviceq.serviceq import ServiceQ
from rq_serviceq.store.connection import DEFAULT_URL, connect, connection_url, redis_url, url_for
from rq_serviceq.task.imports import RefusedPath, UnresolvablePath

F = TypeVar("F", bound=Callable[..., Any])
USAGE, FAILURE = 2, 1


class CliError(click.ClickException):
    """A one-line error with the exit code of its kind."""

    def __init__(self, message: str, exit_code: int = USAGE) -> None:
        super().__init__(" ".join(message.split()))  # one line, whatever the message held
        self.exit_code = exit_code  # type: ignore[misc]


def one_line_validation(exc: pydantic.ValidationError) -> str:
    """pydantic's error, one line: ``worker_count: Input should be less than or equal to 1000 (got 5000)``."""
    parts = []
    for err in exc.errors():
        where = ".".join(str(x) for x in err["loc"]) or "value"
        parts.append(f"{where}: {err['msg']} (got {err.get('input')!r})")
    return "; ".join(parts)


def explain(exc: BaseException) -> CliError | None:
    """The CliError an expected exception becomes; None for anything else (a bug: let it show)."""
    if isinstance(exc, click.ClickException):
        return None
    if isinstance(exc, pydantic.ValidationError):
        return CliError(f"invalid setting: {one_line_validation(exc)}")
    if isinstance(exc, redis.exceptions.ConnectionError | redis.exceptions.TimeoutError):
        return CliError(str(exc) if "cannot reach Redis" in str(exc) else f"cannot reach Redis: {exc}", FAILURE)
    if isinstance(exc, redis.exceptions.RedisError):
        return CliError(f"Redis refused: {exc}", FAILURE)
    if isinstance(exc, RefusedPath | UnresolvablePath):
        return CliError(str(exc))
    if isinstance(exc, LookupError):
        return CliError(str(exc.args[0]) if exc.args else str(exc))
    if isinstance(exc, ValueError):
        return CliError(str(exc))
    if isinstance(exc, TimeoutError):
        return CliError(str(exc), FAILURE)
    return None


class ServiceQGroup(click.Group):
    """A click group whose commands turn expected errors into one line and an exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except Exception as exc:
            error = explain(exc)
            if error is None:
                raise
            raise error from None


def url_option(func: F) -> F:
    return click.option(
        "--url",
        "-u",
        metavar="URL",
        help=f"Redis URL (default: $RQ_REDIS_URL, else $REDIS_URL, else {DEFAULT_URL})",
    )(func)


def json_option(func: F) -> F:
    return click.option("--json", "as_json", is_flag=True, help="print JSON (for scripts) instead of text")(func)


def name_argument(func: F) -> F:
    return click.argument("name", metavar="NAME", callback=_check_name)(func)


def _check_name(ctx: click.Context, param: click.Parameter, value: str) -> str:
    try:
        return validate_name(value)
    except ValueError as exc:
        raise CliError(str(exc)) from None  # one line, not click's usage block: the name was typed, not the syntax


def connection(url: str | None) -> Redis:
    return connect(redis_url(url))


def where(conn: Redis) -> str:
    return connection_url(conn, hide_password=True)


def open_queue(name: str, url: str | None, create: bool = False) -> ServiceQ:
    """The service queue; an unknown name is an error unless ``create`` (a typo must not create one)."""
    conn = connect(url_for(name, url))  # its route, where RQ_SERVICEQ_ROUTES gives one
    try:
        if create:
            return ServiceQ(name, connection=conn)
        return ServiceQ.open(name, connection=conn)
    except LookupError:  # the library's hint is Python's (``ServiceQ(name)``): a shell wants the flag
        raise CliError(f"no service queue named {name!r} on {where(conn)}; pass --create to create it") from None
    except redis.exceptions.ConnectionError as exc:
        raise unreachable(conn, exc) from None


def unreachable(conn: Redis, exc: redis.exceptions.ConnectionError) -> CliError:
    """The error for a Redis that did not answer, naming it (password hidden): which server matters once
    URLs come from the environment or the routes."""
    return CliError(f"cannot reach Redis at {where(conn)}: {exc}", FAILURE)


def emit_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, default=str))


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], indent: str = "") -> None:
    """Columns padded to their widest cell: readable on a terminal, ``cut``-able in a pipe."""
    cells = [[str(h) for h in headers]] + [["-" if c is None else str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    for row in cells:
        click.echo(indent + "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())


def when(epoch: float | None) -> str:
    return "-" if epoch is None else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(epoch))


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"


def stdout_is_terminal() -> bool:
    return sys.stdout.isatty()


@contextmanager
def failing_as(message: str) -> Iterator[None]:
    """Prefix an expected error with what was being done (``pushed 8,000 of 20,000 tasks; then ...``)."""
    try:
        yield
    except Exception as exc:
        error = explain(exc)
        if error is None:
            raise
        raise CliError(f"{message}: {error.message}", error.exit_code) from None


def pass_errors(func: F) -> F:
    """For commands run outside the group (Django, Flask): the same one-line errors."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except Exception as exc:
            error = explain(exc)
            if error is None:
                raise
            raise error from None

    return wrapper  # type: ignore[return-value]
