"""Property-based tests: the remark parser, the retry schedule, and the ledger under any interleaving."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redis import Redis

from rq_serviceq import ServiceQ
from rq_serviceq.batch.ledger import settle
from rq_serviceq.job import ServiceQJob
from rq_serviceq.task.remarks import Directive, Outcome, Verdict, outcome_of_return, parse_directive
from rq_serviceq.worker.claim import claim, release
from rq_serviceq.worker.leases import TASK_LEASE
from tests.conftest import text

FIXTURES = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
spaces = st.text(alphabet=" \t", max_size=3)


@given(
    directive=st.sampled_from(list(Directive)),
    style=st.sampled_from([str.upper, str.lower, str.title]),
    sep=st.sampled_from(["_", " ", "-"]),
    before=spaces,
    after=spaces,
    message=st.text(max_size=30),
)
def test_any_spelling_of_a_directive_parses(
    directive: Directive, style: Callable[[str], str], sep: str, before: str, after: str, message: str
) -> None:
    remark = f"{before}{style(directive.value.replace('_', sep))}{after}|{message}"
    assert parse_directive(remark) is directive


@given(value=st.one_of(st.none(), st.integers(), st.text(), st.lists(st.booleans()), st.tuples(st.text())))
def test_parser_never_raises_and_only_true_passes(value: object) -> None:
    outcome = outcome_of_return(value)
    assert isinstance(outcome.remark, str)
    assert outcome.verdict is Verdict.RETRY  # nothing but True or (True, remark) passes


@FIXTURES
@given(
    resting=st.floats(min_value=0, max_value=1000, allow_nan=False),
    backoff=st.floats(min_value=0, max_value=1000, allow_nan=False),
    limit=st.integers(min_value=0, max_value=5),
)
def test_retry_schedule_follows_the_formula(conn: Redis, resting: float, backoff: float, limit: int) -> None:
    conn.flushdb()
    sq = ServiceQ("prop", connection=conn)
    sq.set_worker_config(worker_count=0, resting_period=resting)
    sq.set_retry_config(retry_limit=limit, loop_backoff=backoff)
    sq.push({"n": 1})
    for n in range(1, limit + 2):
        got = claim(conn, sq.keys, "w", sq.settings, 1, TASK_LEASE)
        (job,) = got.jobs
        result = settle(conn, sq.keys, "w", got.settings, [(job, Outcome(Verdict.RETRY, "RETRY | x"))])
        row = result.tasks[0]
        if n <= limit:
            assert row.result == "retry" and row.retries == n
            assert row.due is not None and abs(row.due - (result.now + resting + (n - 1) * backoff)) < 1e-3
            conn.zadd(sq.keys.retry, {job.id: 0})  # make it due now rather than wait
        else:
            assert row.result == "failed" and row.retries == limit
    assert sq.get_batch_report()["failed_tasks"][0]["total_retry_attempts"] == limit


op = st.one_of(
    st.tuples(st.just("claim"), st.integers(0, 2), st.integers(1, 5)),
    st.tuples(st.just("settle"), st.integers(0, 2), st.lists(st.sampled_from(list(Verdict)), max_size=5)),
    st.tuples(st.just("release"), st.integers(0, 2), st.integers(0, 5)),
    st.tuples(st.just("lose_leases"), st.integers(0, 2), st.just(0)),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(n_tasks=st.integers(1, 12), limit=st.integers(0, 2), ops=st.lists(op, max_size=40))
def test_ledger_is_consistent_under_any_interleaving(
    conn: Redis, make_sq: Callable[..., ServiceQ], n_tasks: int, limit: int, ops: list[tuple[str, int, Any]]
) -> None:
    """Three workers claim, settle (some after losing their leases), give back and vanish, in any order."""
    conn.flushdb()
    sq = ServiceQ("prop", connection=conn)
    sq.set_worker_config(worker_count=0)
    sq.set_retry_config(retry_limit=limit)
    ids = sq.push_many([{"i": i} for i in range(n_tasks)])
    batch_id = sq.current_batch_id()
    held: dict[int, list[ServiceQJob]] = {0: [], 1: [], 2: []}
    ends: list[str] = []

    for action, w, arg in ops:
        name = f"w{w}"
        if action == "claim":
            got = claim(conn, sq.keys, name, sq.settings, arg, TASK_LEASE)
            held[w] += got.jobs
        elif action == "settle" and held[w]:
            jobs, held[w] = held[w][: len(arg)], held[w][len(arg) :]
            pairs = zip(jobs, arg[: len(jobs)], strict=True)
            outcomes = [(job, Outcome(verdict, f"{verdict.value.upper()} | x")) for job, verdict in pairs]
            ends += settle(conn, sq.keys, name, sq.settings, outcomes).ended_batches
        elif action == "release":
            jobs, held[w] = held[w][:arg], held[w][arg:]
            ends += release(conn, sq.keys, name, sq.settings, [(j.id, j.claim) for j in jobs], TASK_LEASE)
        elif action == "lose_leases":  # every claimed task's worker is presumed lost
            for task_id in conn.zrange(sq.keys.leases, 0, -1):
                conn.zadd(sq.keys.leases, {text(task_id): 0})

    for task_id in conn.zrange(sq.keys.leases, 0, -1):  # the three workers are gone for good
        conn.zadd(sq.keys.leases, {text(task_id): 0})
    for _ in range(10 * n_tasks * (limit + 2)):  # a fresh worker finishes the batch
        got = claim(conn, sq.keys, "finisher", sq.settings, 5, TASK_LEASE)
        if not got.jobs:
            break
        outcome = Outcome(Verdict.PASS, "SUCCESS | done")
        ends += settle(conn, sq.keys, "finisher", got.settings, [(job, outcome) for job in got.jobs]).ended_batches

    assert ends == [batch_id], "the batch must end exactly once"
    report = sq.get_batch_report(batch_id)
    passed = [q["task_id"] for q in report["passed_tasks"]]
    failed = [q["task_id"] for q in report["failed_tasks"]]
    assert len(passed) == len(set(passed)) and len(failed) == len(set(failed))
    assert not set(passed) & set(failed)
    assert set(passed) | set(failed) == set(ids)
    assert report["total_submitted"] == n_tasks == report["total_success"] + report["total_failed"]
    assert report["total_pending"] == 0
    assert all(q["total_retry_attempts"] <= limit for q in report["passed_tasks"] + report["failed_tasks"])
