"""How a task function's return value or exception becomes a verdict (no Redis needed)."""

from __future__ import annotations

import pytest

from rq_serviceq.task.remarks import (
    Directive,
    NoRetry,
    Verdict,
    outcome_of_exception,
    outcome_of_return,
    parse_directive,
)


@pytest.mark.parametrize(
    ("remark", "directive"),
    [
        ("SUCCESS | sent", Directive.SUCCESS),
        ("success|sent", Directive.SUCCESS),
        ("  Retry   |  queue full", Directive.RETRY),
        ("NO_RETRY | not on whatsapp", Directive.NO_RETRY),
        ("no retry | x", Directive.NO_RETRY),
        ("No-Retry|x", Directive.NO_RETRY),
        (" no_retry ", Directive.NO_RETRY),
        ("DONE | ?", None),
        ("", None),
        ("just words", None),
    ],
)
def test_directive_parsing_forgives_case_and_spaces(remark: str, directive: Directive | None) -> None:
    assert parse_directive(remark) is directive


@pytest.mark.parametrize(
    ("value", "verdict", "remark"),
    [
        (True, Verdict.PASS, "SUCCESS"),
        (False, Verdict.RETRY, "RETRY"),
        ((True, "SUCCESS | sent"), Verdict.PASS, "SUCCESS | sent"),
        ((True, "RETRY | odd but true wins"), Verdict.PASS, "RETRY | odd but true wins"),
        ((False, "NO_RETRY | no number"), Verdict.FAIL, "NO_RETRY | no number"),
        ((False, "no retry|no number"), Verdict.FAIL, "no retry|no number"),
        ((False, "RETRY | busy"), Verdict.RETRY, "RETRY | busy"),
        ((False, "SUCCESS | contradicts"), Verdict.RETRY, "SUCCESS | contradicts"),
        ((False, "whatever"), Verdict.RETRY, "whatever"),
        ((False, None), Verdict.RETRY, "RETRY"),
    ],
)
def test_return_values(value: object, verdict: Verdict, remark: str) -> None:
    outcome = outcome_of_return(value)
    assert (outcome.verdict, outcome.remark) == (verdict, remark)


@pytest.mark.parametrize("value", [None, 1, "ok", [True, "x"], (True,), (1, "x"), (True, "a", "b"), {"ok": True}])
def test_wrong_shapes_are_failed_attempts_that_say_why(value: object) -> None:
    outcome = outcome_of_return(value)
    assert outcome.verdict is Verdict.RETRY
    assert outcome.remark.startswith("RETRY | task function returned ")


def test_remark_that_is_not_a_string() -> None:
    outcome = outcome_of_return((False, 42))
    assert outcome.verdict is Verdict.RETRY and "remark must be a string" in outcome.remark


def test_exceptions() -> None:
    retry = outcome_of_exception(ValueError("bad input"))
    assert (retry.verdict, retry.remark) == (Verdict.RETRY, "RETRY | ValueError: bad input")
    final = outcome_of_exception(NoRetry("whatsapp not registered"))
    assert (final.verdict, final.remark) == (Verdict.FAIL, "NO_RETRY | whatsapp not registered")
