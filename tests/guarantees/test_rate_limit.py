"""The start budget (issue 18): a rate limit per service queue across every worker, enforced inside the
claim on Redis' clock, and a provider's pushback (``Retry(after=...)``, ``Throttle(after=...)``)."""

from __future__ import annotations

import subprocess
from collections.abc import Callable

import pytest
from click.testing import CliRunner
from pydantic import ValidationError
from redis import Redis

from bench.rate import busiest_second
from rq_serviceq import Retry, ServiceQ
from rq_serviceq.cli import cli
from tests import tasks
from tests.conftest import drain, text, wait_until


def _starts(conn: Redis) -> list[tuple[float, str]]:
    """(Redis time, task number) of every attempt's start, in time order."""
    rows = [text(x).split(":") for x in conn.lrange("test:starts", 0, -1)]
    return sorted((float(t), i) for t, i in rows)


def test_a_rate_limit_spaces_the_starts_of_several_workers(
    make_sq: Callable[..., ServiceQ], conn: Redis, spawn_cli_worker: Callable[..., subprocess.Popen[bytes]]
) -> None:
    sq = make_sq("paced", worker_count=0)
    sq.set_worker_config(rate_limit=20.0, rate_burst=5)
    sq.set_task_function(tasks.timed)
    sq.push_many([{"i": i, "seconds": 0} for i in range(60)])
    workers = [spawn_cli_worker("paced-pending", "--burst") for _ in range(2)]
    assert all(w.wait(60) == 0 for w in workers)
    times = [t for t, _ in _starts(conn)]
    assert len(times) == 60
    assert busiest_second(times) <= 20 + 5
    # after the burst of 5, one start every 1/20 s: 55 more take 2.75 s
    assert 2.75 * 0.95 <= times[-1] - times[0] <= 2.75 * 1.25
    assert sq.get_batch_report()["total_success"] == 60


def test_status_info_shows_the_limit_and_that_it_holds_the_queue_back(
    make_sq: Callable[..., ServiceQ],
    redis_url: str,
    spawn_cli_worker: Callable[..., subprocess.Popen[bytes]],
) -> None:
    sq = make_sq("paced", worker_count=0)
    sq.set_worker_config(rate_limit=4.0, rate_burst=1)
    sq.set_task_function(tasks.timed)
    sq.push_many([{"i": i, "seconds": 0} for i in range(40)])
    spawn_cli_worker("paced-pending")
    wait_until(lambda: sq.get_status_info()["total_success"] >= 8, timeout=20)
    info = sq.get_status_info()
    assert (info["rate_limit"], info["rate_burst"], info["held_back"]) == (4.0, 1, True)
    assert 2.0 <= info["start_rate"] <= 6.0
    assert info["eta_seconds"] >= info["total_pending"] / 4.0 * 0.99  # no sooner than the limit allows
    status = CliRunner().invoke(cli, ["status", "paced", "--url", redis_url])
    assert "start budget   rate limit 4/s (burst 1), claiming" in status.output and "held back" in status.output


def test_a_change_of_the_limit_applies_to_the_next_claim(
    make_sq: Callable[..., ServiceQ], conn: Redis, spawn_cli_worker: Callable[..., subprocess.Popen[bytes]]
) -> None:
    sq = make_sq("paced", worker_count=0)
    sq.set_worker_config(rate_limit=0.1)  # a start every 10 s: the worker sleeps past its 5 s heartbeat
    sq.set_task_function(tasks.timed)
    sq.push_many([{"i": i, "seconds": 0} for i in range(30)])
    spawn_cli_worker("paced-pending", "--burst")
    wait_until(lambda: conn.llen("test:starts") >= 1, timeout=20)
    secs, micros = conn.time()
    lifted = secs + micros / 1e6
    sq.set_worker_config(rate_limit=None)  # rings the bell: the sleeping worker claims at once
    wait_until(lambda: sq.get_status_info()["total_success"] == 30, timeout=10)
    assert max(t for t, _ in _starts(conn)) - lifted < 2.0


@pytest.mark.parametrize("bad", [0, -1.0, True, "10", float("inf"), float("nan"), 10**7])
def test_a_bad_rate_limit_is_refused_and_changes_nothing(make_sq: Callable[..., ServiceQ], bad: object) -> None:
    sq = make_sq("paced", worker_count=0)
    sq.set_worker_config(rate_limit=5.0)
    with pytest.raises(ValidationError, match="rate_limit"):
        sq.set_worker_config(rate_limit=bad, concurrency=3)  # type: ignore[arg-type]
    assert (sq.settings.rate_limit, sq.settings.concurrency) == (5.0, 1)
    with pytest.raises(ValidationError, match="rate_burst"):
        sq.set_worker_config(rate_burst=0)


def test_a_limit_written_by_hand_that_is_no_number_limits_nothing(
    make_sq: Callable[..., ServiceQ], conn: Redis
) -> None:
    sq = make_sq("paced", worker_count=0)
    sq.set_task_function(tasks.timed)
    conn.hset(sq.keys.state, mapping={"rate_limit": "fast", "rate_burst": "-3"})
    sq.push_many([{"i": i, "seconds": 0} for i in range(50)])
    drain(sq)
    assert sq.get_batch_report()["total_success"] == 50
    assert sq.settings.rate_limit is None


def test_retry_after_holds_that_task_back_only(make_sq: Callable[..., ServiceQ], conn: Redis) -> None:
    sq = make_sq("pushback", worker_count=0)
    sq.set_retry_config(retry_limit=2)
    sq.set_task_function(tasks.pushes_back)
    sq.push_many([{"i": 0, "retry_after": 1.0}] + [{"i": i} for i in range(1, 20)])
    drain(sq)
    starts = _starts(conn)
    first, again = [t for t, i in starts if i == "0"]
    assert again - first >= 1.0
    assert all(t < first + 1.0 for t, i in starts if i != "0")  # the others did not wait for it
    passed = {q["task"]["i"]: q for q in sq.get_batch_report()["passed_tasks"]}
    assert passed[0]["total_retry_attempts"] == 1 and len(passed) == 20


def test_retry_after_counts_against_the_retry_limit(make_sq: Callable[..., ServiceQ]) -> None:
    sq = make_sq("pushback", worker_count=0)
    sq.set_task_function(tasks.pushes_back)  # retry_limit 0: the first Retry is the last attempt
    sq.push({"i": 0, "retry_after": 30})
    drain(sq)
    failed = sq.get_batch_report()["failed_tasks"]
    assert [(q["remark"], q["total_retry_attempts"]) for q in failed] == [("RETRY | provider busy", 0)]


def test_throttle_holds_every_start_of_the_service_queue(make_sq: Callable[..., ServiceQ], conn: Redis) -> None:
    sq = make_sq("pushback", worker_count=0)
    sq.set_retry_config(retry_limit=1)
    sq.set_task_function(tasks.pushes_back)
    sq.push_many([{"i": 0, "throttle": 1.0}] + [{"i": i} for i in range(1, 10)])
    drain(sq)
    starts = _starts(conn)
    throttled_at = starts[0][0]
    assert starts[0][1] == "0"
    assert all(t >= throttled_at + 1.0 for t, _ in starts[1:])  # nothing started while held
    assert sq.get_batch_report()["total_success"] == 10
    kinds = [e.type for e in sq.events(since="0")]
    assert "throttled" in kinds


def test_throttle_holds_the_groups_a_threaded_worker_claimed_ahead_too(
    make_sq: Callable[..., ServiceQ], conn: Redis
) -> None:
    """On threads a worker claims its next group early and queues it behind the running one: a Throttle
    raised meanwhile holds those tasks as well, not only the rest of its own group."""
    sq = make_sq("pushback", worker_count=0, concurrency=4)
    sq.set_retry_config(retry_limit=1)
    sq.set_task_function(tasks.pushes_back)
    quick = [{"i": i, "seconds": 0.005} for i in range(1, 400)]  # the worker learns they are short
    sq.push_many([*quick[:200], {"i": 0, "seconds": 0.05, "throttle": 1.0}, *quick[200:]])
    drain(sq)
    starts = _starts(conn)
    throttled = next(t for t, i in starts if i == "0") + 0.05  # when it raised, at the earliest
    during = [i for t, i in starts if throttled + 0.02 < t < throttled + 0.95]
    assert during == []  # nothing started while held (a margin each side for the clocks' reads)
    assert sq.get_batch_report()["total_success"] == 400


def test_status_info_says_until_when_the_queue_is_throttled(
    make_sq: Callable[..., ServiceQ], conn: Redis, spawn_cli_worker: Callable[..., subprocess.Popen[bytes]]
) -> None:
    sq = make_sq("pushback", worker_count=0)
    sq.set_retry_config(retry_limit=1)
    sq.set_task_function(tasks.pushes_back)
    sq.push_many([{"i": 0, "throttle": 30.0}] + [{"i": i} for i in range(1, 5)])
    spawn_cli_worker("pushback-pending")
    wait_until(lambda: sq.get_status_info()["throttled_until"] is not None, timeout=20)
    info = sq.get_status_info()
    assert info["throttle_remark"] == "RETRY | 429 from the provider"
    assert info["total_success"] == 0
    # "held back" is a claim cut short in the last 2 s: it shows once the worker's next claim is refused,
    # which may come a moment after the throttle's settle (the read above can fall in between).
    wait_until(lambda: sq.get_status_info()["held_back"], timeout=10)
    info = sq.get_status_info()
    assert info["throttled_until"] is not None and info["total_success"] == 0
    assert info["eta_seconds"] is None or info["eta_seconds"] >= 25


@pytest.mark.parametrize("after", [-1, float("nan"), True, "5", 10**6])
def test_retry_refuses_a_wait_that_is_no_number_of_seconds(after: object) -> None:
    with pytest.raises(ValueError, match="Retry"):
        Retry(after=after)  # type: ignore[arg-type]


@pytest.mark.slow
def test_forty_a_second_across_two_supervisors_of_three_workers(
    make_sq: Callable[..., ServiceQ], conn: Redis, spawn_supervisor: Callable[..., subprocess.Popen[bytes]]
) -> None:
    """The issue's acceptance run: rate_limit=40, 3 workers under each of 2 supervisors, 1,000 tasks."""
    sq = make_sq("paced", worker_count=6, auto_start=False)
    sq.set_worker_config(rate_limit=40.0)
    sq.set_task_function(tasks.timed)
    sq.push_many([{"i": i, "seconds": 0} for i in range(1000)])
    spawn_supervisor("paced")
    spawn_supervisor("paced")
    report = sq.wait_for_batch(timeout=90)
    assert report["total_success"] == 1000
    times = [t for t, _ in _starts(conn)]
    assert len(times) == 1000
    # The claim hands out at most rate_burst (40) + 40 starts in any second, on Redis' clock; a task records
    # its start a moment after its claim, and on a loaded 2-core machine one worker's start can lag its
    # claim while another's does not, so a window of starts may hold a task claimed just outside it (CI
    # counted 81 once).  Two starts is 50 ms of such lateness at 40/s.
    assert busiest_second(times) <= 40 + 40 + 2
    steady = (1000 - 40) / (times[-1] - times[0])  # after the first burst, one start each 1/40 s
    assert 40 * 0.95 <= steady <= 40 * 1.05
