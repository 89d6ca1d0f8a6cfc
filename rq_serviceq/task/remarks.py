"""Turning what a task function returns into a verdict.

A task function returns ``True``, ``False``, or ``(bool, "DIRECTIVE | message")``.
The directive decides what happens to a failed attempt; the whole remark is
kept on the task for the report.  Parsing is forgiving (case, spaces) because
remarks are typed by people in many task functions; anything it cannot read
is treated as a retryable failure, the safe default for a message that may
not have been delivered.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any


class Directive(enum.StrEnum):
    SUCCESS = "SUCCESS"
    RETRY = "RETRY"
    NO_RETRY = "NO_RETRY"


class Verdict(enum.StrEnum):
    """What the ledger does with an attempt."""

    PASS = "pass"  # to the passed queue
    RETRY = "retry"  # retried while retries are left, then failed
    FAIL = "fail"  # to the failed queue at once


class NoRetry(Exception):
    """Raise from a task function to fail the task at once, without retries.

    The message becomes the remark: ``raise NoRetry("whatsapp not registered")``
    reports ``"NO_RETRY | whatsapp not registered"``.
    """


class Retry(Exception):
    """Raise from a task function to retry this task no sooner than ``after`` seconds from now, for a
    provider that answered ``Retry-After``: ``raise Retry(after=30, message="provider busy")``.

    It is a retry like any other (counted against ``retry_limit``, remark ``"RETRY | provider busy"``);
    its next attempt waits for the later of ``after`` and the usual backoff.
    """

    def __init__(self, after: float = 0.0, message: str = "") -> None:
        if isinstance(after, bool) or not isinstance(after, int | float) or not 0 <= after <= 86_400:
            raise ValueError(f"Retry(after=...) takes 0 to 86400 seconds, not {after!r}")
        super().__init__(message)
        self.after = float(after)
        self.message = message


class Throttle(Retry):
    """Raise from a task function when the provider pushes back on the whole account (a 429): this task
    is retried as with ``Retry``, and no task of the service queue starts anywhere for ``after`` seconds."""


@dataclass(frozen=True)
class Outcome:
    verdict: Verdict
    remark: str
    after: float = 0.0  # Retry/Throttle: the next attempt no sooner than this many seconds
    throttle: bool = False  # Throttle: and no start of the service queue until then

    @property
    def sent(self) -> str:
        """The verdict as SETTLE and the journal take it (``lua/includes/settle_one.lua``: ``verdict_of``)."""
        if self.throttle:
            return f"throttle:{self.after!r}"
        return f"retry:{self.after!r}" if self.after else self.verdict.value


_PASSED = Outcome(Verdict.PASS, "SUCCESS")  # what a task function's True is, for every attempt


def parse_directive(remark: str) -> Directive | None:
    """The directive part of ``"DIRECTIVE | message"``; None when there is none we know.

    ``"no retry"``, ``"No-Retry | x"`` and ``" no_retry|x"`` all read as NO_RETRY.
    """
    head = remark.split("|", 1)[0]
    token = "_".join(head.replace("-", " ").replace("_", " ").split()).upper()
    try:
        return Directive(token)
    except ValueError:
        return None


def outcome_of_return(value: Any) -> Outcome:
    """Interpret a task function's return value."""
    if value is True:  # the common case first, and one Outcome for all (it is frozen)
        return _PASSED
    if isinstance(value, bool):
        return Outcome(Verdict.RETRY, "RETRY")
    if isinstance(value, tuple) and len(value) == 2 and isinstance(value[0], bool):
        ok, remark = value
        if remark is None:
            remark = "SUCCESS" if ok else "RETRY"
        if not isinstance(remark, str):
            return _bad_return(value, "the remark must be a string")
        if ok:
            return Outcome(Verdict.PASS, remark)
        if parse_directive(remark) is Directive.NO_RETRY:
            return Outcome(Verdict.FAIL, remark)
        return Outcome(Verdict.RETRY, remark)
    return _bad_return(value, "expected True/False or a (bool, remark) tuple")


def outcome_of_exception(exc: BaseException) -> Outcome:
    """An exception is a failed attempt; ``NoRetry`` fails the task at once."""
    if isinstance(exc, NoRetry):
        return Outcome(Verdict.FAIL, f"NO_RETRY | {exc}")
    if isinstance(exc, Retry):
        message = exc.message or ("throttled" if isinstance(exc, Throttle) else "retry")
        return Outcome(Verdict.RETRY, f"RETRY | {message}", exc.after, isinstance(exc, Throttle))
    return Outcome(Verdict.RETRY, f"RETRY | {type(exc).__name__}: {exc}")


def _bad_return(value: Any, why: str) -> Outcome:
    shown = repr(value)
    if len(shown) > 200:
        shown = shown[:200] + "..."
    return Outcome(Verdict.RETRY, f"RETRY | task function returned {shown}: {why}")
