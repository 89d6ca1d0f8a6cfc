"""The progress feed: what a watcher following ServiceQ.events() sees."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import pytest

from rq_serviceq import ServiceQ
from rq_serviceq.models import BatchEvent
from tests import tasks
from tests.conftest import drain, text


def _types(events: list[BatchEvent]) -> list[str]:
    return [e.type for e in events]


def test_a_batch_reads_off_the_feed(make_sq: Callable[..., ServiceQ]) -> None:
    sq = make_sq("drag", worker_count=0)
    sq.set_retry_config(retry_limit=1)
    sq.set_task_function(tasks.returns)
    sq.push_many([{"value": True}, {"value": [False, "RETRY | busy"]}, {"value": [False, "NO_RETRY | no"]}])
    drain(sq)
    report = sq.wait_for_batch(timeout=10)
    feed = sq.events(since="0")
    assert _types(feed)[0] == "opened" and _types(feed)[-2:] == ["ended", "finished"]
    assert {e.batch_id for e in feed} == {report["batch_id"]}
    progress = [e for e in feed if e.type == "progress"]
    assert progress[0].submitted == 3 and progress[0].pending == 3
    last = progress[-1]
    assert (last.passed, last.failed, last.pending) == (report["total_success"], report["total_failed"], 0)
    assert sum(e.retried or 0 for e in progress) == 1  # the RETRY task was scheduled once
    assert feed[-1].status == "FINISHED"
    assert feed == sorted(feed, key=lambda e: e.time)


def test_pause_resume_stop_are_events_and_a_follower_wakes(make_sq: Callable[..., ServiceQ]) -> None:
    sq = make_sq("drag", worker_count=0)
    sq.push({"x": 1})
    start = sq.events(since="0")[-1].id
    seen: list[BatchEvent] = []
    follower = threading.Thread(target=lambda: seen.extend(sq.events(since=start, block=10)))
    follower.start()
    sq.pause()
    follower.join(10)
    assert _types(seen) == ["paused"]
    sq.resume()
    sq.stop()
    after = sq.events(since=seen[-1].id)
    assert _types(after)[:2] == ["resumed", "stopped"] and _types(after)[-2:] == ["ended", "finished"]
    assert after[-1].status == "STOPPED"
    assert sq.events(since="$", block=0.05) == []  # nothing new: an empty answer, not an error


def test_batches_lists_the_history_newest_first(make_sq: Callable[..., ServiceQ]) -> None:
    sq = make_sq("drag", worker_count=0)
    sq.set_task_function(tasks.returns)
    firsts = []
    for _ in range(2):
        sq.push({"value": True})
        firsts.append(sq.current_batch_id())
        drain(sq)
        sq.wait_for_batch(timeout=10)
    history = sq.batches()
    assert [b["batch_id"] for b in history] == firsts[::-1]
    assert all(b["status"] == "FINISHED" and b["total_success"] == 1 for b in history)
    assert "passed_tasks" not in history[0]


def test_a_malformed_feed_entry_is_skipped_with_a_warning(
    make_sq: Callable[..., ServiceQ], caplog: pytest.LogCaptureFixture
) -> None:
    sq = make_sq("drag", worker_count=0)
    sq.push({"x": 1})
    start = sq.events(since="0")[-1].id
    bad = sq.connection.xadd(sq.keys.events, {"type": "progress", "batch": "b", "passed": "lots"})
    sq.push({"x": 2})
    with caplog.at_level(logging.WARNING, logger="rq_serviceq"):
        after = sq.events(since=start)
    assert after and text(bad) not in {e.id for e in after}
    assert after[-1].batch_id == sq.current_batch_id()
    assert "skipping malformed progress-feed entry" in caplog.text
    sq.connection.xadd(sq.keys.events, {"type": "progress", "submitted": "-"})  # the newest entry, malformed
    assert sq.events(since=after[-1].id) == []  # and a follower reads past it, not stopping there
