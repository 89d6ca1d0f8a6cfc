"""``set_durability(replicas=N)``: a push is acknowledged, and a settle recorded, only once WAIT says N
replicas have it (issue 19), against a real primary and replica the suite starts."""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest
from pydantic import ValidationError
from redis import Redis

from rq_serviceq import NotReplicated, ServiceQ
from rq_serviceq.testing import SentinelCluster
from tests import tasks
from tests.conftest import drain


@pytest.mark.slow  # the default suite's time (about 5 minutes); CI runs it
def test_a_durable_push_is_on_the_replica_when_it_returns(sentinel_cluster: SentinelCluster) -> None:
    primary = Redis.from_url(sentinel_cluster.primary.url)  # the cluster's client() decodes replies
    primary.flushdb()
    replica = Redis.from_url(sentinel_cluster.replica.url)
    sq = ServiceQ("durable", connection=primary)
    sq.set_worker_config(worker_count=0, auto_start=False)
    sq.set_durability(replicas=1, timeout=5.0)
    sq.set_task_function(tasks.returns)
    for count in (1, 1_500, 9_000):  # a bare call, a pipelined group, streamed groups
        before = replica.llen(sq.keys.queue)
        sq.push_many([{"value": True} for _ in range(count)])
        assert replica.llen(sq.keys.queue) == before + count  # WAIT: the replica has every one of them
    drain(sq)
    assert sq.get_batch_report()["total_success"] == 10_501
    primary.flushdb()


def test_too_few_replicas_raise_with_what_was_written(
    make_sq: Callable[..., ServiceQ], conn: Redis, caplog: pytest.LogCaptureFixture
) -> None:
    """The suite's own Redis has no replica: every durable write falls short, and says so."""
    sq = make_sq("durable", worker_count=0)
    sq.set_durability(replicas=1, timeout=0.05)
    sq.set_task_function(tasks.returns)
    with pytest.raises(NotReplicated, match=r"0 of the 1 replicas asked for confirmed it within 0\.05 s") as raised:
        sq.push_many([{"value": True} for _ in range(30)])
    assert len(raised.value.task_ids) == 30 and conn.llen(sq.keys.queue) == 30  # written on the primary
    with caplog.at_level(logging.WARNING, logger="rq_serviceq"):
        drain(sq)
    assert sq.get_batch_report()["total_success"] == 30
    assert "0 of 1 replicas confirmed it within 0.05 s" in caplog.text


def test_a_bad_durability_is_refused_and_changes_nothing(make_sq: Callable[..., ServiceQ]) -> None:
    sq = make_sq("durable", worker_count=0)
    for bad in ({"replicas": 17}, {"replicas": -1}, {"replicas": True}, {"timeout": 0}, {"timeout": "1"}):
        with pytest.raises(ValidationError):
            sq.set_durability(**bad)
    assert (sq.settings.durable_replicas, sq.settings.durable_timeout) == (0, 1.0)
