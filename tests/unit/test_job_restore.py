"""ServiceQJob reads the job hashes rq-serviceq writes itself (``_restore_plain``): to the same job as RQ's restore."""

from __future__ import annotations

import json
import re
import zlib
from collections.abc import Callable
from typing import Any

import pytest
from redis import Redis
from rq.job import Job
from rq.serializers import JSONSerializer

from rq_serviceq import ServiceQ
from rq_serviceq.job import ServiceQJob
from rq_serviceq.serviceq import encode_task
from rq_serviceq.store import scripts
from rq_serviceq.store.scripts import include_text
from rq_serviceq.task import stored
from rq_serviceq.worker.claim import claim
from rq_serviceq.worker.leases import TASK_LEASE


def _hash(conn: Redis, task_id: str) -> dict[bytes, Any]:
    raw: dict[bytes, Any] = conn.hgetall(f"rq:job:{task_id}")  # type: ignore[assignment]
    return raw


def _both(conn: Redis, task_id: str, raw: dict[bytes, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The job as ServiceQJob reads ``raw``, and as RQ's own restore reads it (with the same dates)."""
    mine = ServiceQJob.blank(task_id, conn)
    mine.restore(dict(raw))
    rqs = ServiceQJob.blank(task_id, conn)
    rqs.sq = mine.sq
    rqs._restore_by_rq(dict(raw))
    rqs.enqueued_at = rqs.enqueued_at or rqs.created_at
    rqs.webhooks = []
    return vars(mine), vars(rqs)


def test_a_queued_and_a_claimed_task_read_as_rq_reads_them(make_sq: Callable[..., ServiceQ], conn: Redis) -> None:
    sq = make_sq("drag", worker_count=0)
    first, second = sq.push_many([{"to": "+4915112345678", "n": 1}, {"n": 2}])
    queued = _hash(conn, second)
    mine, rqs = _both(conn, second, queued)
    assert mine == rqs
    got = claim(conn, sq.keys, "w", sq.settings, 1, TASK_LEASE)
    assert [job.id for job in got.jobs] == [first]
    claimed = _hash(conn, first)
    assert {b"started_at", b"worker_name", b"sq_claim"} <= set(claimed)
    mine, rqs = _both(conn, first, claimed)
    assert mine == rqs
    assert mine["started_at"] is not None and mine["worker_name"] == "w" and mine["_status"] == "started"


@pytest.mark.parametrize(
    "change",
    [
        {b"data": "compressed"},
        {b"description": b"tests.tasks.returns({'n': 1})"},
        {b"status": None},
        {b"created_at": None},
        {b"ended_at": b"2026-12-03T10:00:00.123456Z"},
    ],
    ids=["zlib-data", "description", "no-status", "no-created-at", "ended"],
)
def test_variants_of_such_a_hash_read_as_rq_reads_them(
    make_sq: Callable[..., ServiceQ], conn: Redis, change: dict[bytes, Any]
) -> None:
    sq = make_sq("drag", worker_count=0)
    (task_id,) = sq.push_many([{"n": 1}])
    raw = _hash(conn, task_id)
    for field, value in change.items():
        if value is None:
            raw.pop(field)
        else:
            raw[field] = zlib.compress(raw[field]) if value == "compressed" else value
    mine, rqs = _both(conn, task_id, raw)
    if b"created_at" in change:  # absent, both take now(): a moment apart
        assert abs((mine.pop("created_at") - rqs.pop("created_at")).total_seconds()) < 5
        mine.pop("enqueued_at"), rqs.pop("enqueued_at")
    assert mine == rqs


def test_a_hash_with_any_other_field_is_read_by_rqs_restore(
    make_sq: Callable[..., ServiceQ], conn: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    sq = make_sq("drag", worker_count=0)
    (task_id,) = sq.push_many([{"n": 1}])
    raw = _hash(conn, task_id)
    raw[b"meta"] = b'{"k": 1}'
    monkeypatch.setattr(ServiceQJob, "_restore_plain", lambda self, raw: pytest.fail("read as plain"))
    job = ServiceQJob.blank(task_id, conn)
    job.restore(raw)
    assert job.meta == {"k": 1}


def test_a_hash_without_data_is_no_job(conn: Redis) -> None:
    from rq.exceptions import NoSuchJobError

    with pytest.raises(NoSuchJobError):
        ServiceQJob.blank("x", conn).restore({b"origin": b"drag-pending"})


def test_a_task_keeps_its_hash_compact_and_reads_whole(make_sq: Callable[..., ServiceQ], conn: Redis) -> None:
    """Under Redis' default settings a task of up to 512 bytes of JSON keeps its job hash in the compact listpack
    encoding (half the bytes of a hash table); ServiceQJob reads the whole call back, RQ's plain Job the placeholder
    with no arguments, and a longer task keeps its whole call in ``data`` for both."""
    sq = make_sq("drag", worker_count=0)
    work = [{"n": 1}, {"user_id": 12345, "action": "resize", "size": [640, 480]}, {"s": "caf\u00e9 \u2603" * 30},
            {"long": "x" * 600}]  # fmt: skip
    ids = sq.push_many(work)
    assert [conn.object("encoding", f"rq:job:{i}") for i in ids] == [b"listpack"] * 3 + [b"hashtable"]
    assert [ServiceQJob.fetch(i, connection=conn).task for i in ids] == work  # type: ignore[attr-defined]
    plain = [Job.fetch(i, connection=conn, serializer=JSONSerializer) for i in ids]
    assert [(job.func_name, job.args) for job in plain[:3]] == [(stored.PLACEHOLDER_FUNC, [])] * 3
    assert plain[3].args == [work[3]]
    with pytest.raises(RuntimeError, match="ServiceQWorker"):
        plain[0].perform()  # what a plain `rq worker -S rq.serializers.JSONSerializer` would run


def test_a_hash_with_the_whole_call_in_data_reads_the_same(make_sq: Callable[..., ServiceQ], conn: Redis) -> None:
    """A job hash written before tasks were kept in pieces (or by a producer in another language)."""
    sq = make_sq("drag", worker_count=0)
    (task_id,) = sq.push_many([{"n": 1}])
    raw = _hash(conn, task_id)
    for name in stored.FIELDS:
        raw.pop(name.encode(), None)
    raw[b"data"] = b'["rq_serviceq.job.perform_outside_serviceq_worker", null, [{"n": 1}], {}]'
    mine, rqs = _both(conn, task_id, raw)
    assert mine == rqs
    job = ServiceQJob.blank(task_id, conn)
    job.restore(raw)
    assert job.task == {"n": 1}


def test_the_scripts_keep_tasks_as_python_reads_them() -> None:
    """The pieces' names and the call's spelling in ``task_fields.lua`` are ``task.stored``'s."""
    lua = include_text("task_fields")
    assert f"local TASK_HEAD = '{stored.HEAD.decode()}'" in lua and f"local TASK_TAIL = '{stored.TAIL.decode()}'" in lua
    assert f"local TASK_STUB = '{stored.STUB.decode()}'" in lua and len(stored.STUB) <= stored.PIECE_BYTES
    assert "local TASK_PIECES = {" + ", ".join(f"'{name}'" for name in stored.FIELDS) + "}" in lua
    assert f"local TASK_PIECE_BYTES = {stored.PIECE_BYTES}" in lua
    bare = re.search(r"for _, c in ipairs\(\{(.*?)\}\) do BARE", lua)
    assert bare and {ord(c.strip()[1]) for c in bare.group(1).split(",")} == stored.BARE_FIRST
    assert json.loads(stored.STUB) == [stored.PLACEHOLDER_FUNC, None, [], {}]


@pytest.mark.parametrize(
    "task",
    [{"n": 1}, [1, 2], "short", 7, {"user_id": 12345, "action": "resize", "size": [640, 480], "tag": "bench"},
     {"s": "x" * 500}, {"long": "y" * 600}],
    ids=["object", "list", "string", "number", "two-pieces", "eight-pieces", "over-512"],
)  # fmt: skip
def test_rqs_call_and_the_bare_task_are_kept_alike(make_sq: Callable[..., ServiceQ], conn: Redis, task: Any) -> None:
    """A producer in another language gives PUSH RQ's call (docs/producers.md); rq-serviceq's push gives a short
    task bare: the job hashes are the same, and so is the task read back."""
    sq = make_sq("drag", worker_count=0)
    encoded = encode_task(task)
    (ours,) = sq.push_many([task])
    theirs = "f" * 32
    call = stored.HEAD + encoded + stored.TAIL
    chunk = scripts.PushChunk("b" * 32, sq.keys.queue_name, [(theirs, call, "")])
    scripts.push(conn, sq.keys, 0.0, [chunk], None)
    kept = [{f: v for f, v in _hash(conn, i).items() if f != b"created_at"} for i in (ours, theirs)]
    calls = [stored.call_data(h.pop(b"data"), stored.pieces_of(h)) for h in kept]  # ours compressed when long
    assert kept[0] == kept[1] and calls[0] == calls[1] == call
    assert ServiceQJob.fetch(ours, connection=conn).task == ServiceQJob.fetch(theirs, connection=conn).task == task  # type: ignore[attr-defined]


def test_a_call_saved_since_is_the_task_for_every_reader(make_sq: Callable[..., ServiceQ], conn: Redis) -> None:
    """RQ's ``Job.save`` of changed arguments writes ``data`` alone: that call, not the pieces beside the stub,
    is then the task, for ServiceQJob as for RQ's plain Job."""
    sq = make_sq("drag", worker_count=0)
    (task_id,) = sq.push_many([{"n": 1}])
    job = ServiceQJob.fetch(task_id, connection=conn)
    assert job.args == [{"n": 1}]  # read first: RQ builds the call anew from what it read
    job.args = [{"n": 2}]
    job.save()
    assert conn.hexists(f"rq:job:{task_id}", "sq_task")  # left in place by RQ's save
    assert ServiceQJob.fetch(task_id, connection=conn).task == {"n": 2}  # type: ignore[attr-defined]
    assert Job.fetch(task_id, connection=conn, serializer=JSONSerializer).args == [{"n": 2}]
    plain = Job.fetch(task_id, connection=conn, serializer=JSONSerializer)
    plain.save()  # RQ's own rewrite of an unchanged job (rq requeue does one) keeps the task
    assert ServiceQJob.fetch(task_id, connection=conn).task == {"n": 2}  # type: ignore[attr-defined]
