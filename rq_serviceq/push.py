"""push → pending: writing tasks as RQ jobs, a chunk per round trip.

Each task becomes an ordinary RQ job hash (JSON-serialized, so non-Python
producers and rq-dashboard can read it) on the RQ queue ``NAME-pending``.  A
chunk is written in one MULTI/EXEC pipeline: the job hashes, then the PUSH
script that opens or joins the batch and queues the ids.  Building the hash
directly, rather than through ``rq.Job`` objects, keeps Python's share of a
push small; ``tests/test_push.py`` checks that RQ's own ``Job.fetch`` reads
what we write.
"""

from __future__ import annotations

import json
import uuid
import zlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import islice
from typing import Any

from redis import Redis
from rq.utils import utcformat

from . import keys as k
from . import scripts
from .models import Settings

# What RQ would call if a plain `rq worker` took a ServiceQ job: a refusal that says what to run.
PLACEHOLDER_FUNC = "rq_serviceq.job.perform_outside_serviceq_worker"
CHUNK_SIZE = 1000
MAX_TASK_BYTES = 512 * 1024
_DATA_HEAD = b'["' + PLACEHOLDER_FUNC.encode() + b'", null, ['
_DATA_TAIL = b"], {}]"


@dataclass(frozen=True)
class PushResult:
    task_ids: list[str]
    batch_id: str
    opened: bool


def encode_task(task: Any, max_bytes: int = MAX_TASK_BYTES) -> bytes:
    """The task as JSON, refused early (before anything is written) if it is not JSON."""
    try:
        raw = json.dumps(task, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"task must be JSON-serializable (dicts, lists, str, numbers, bool, None): {exc}") from None
    if len(raw) > max_bytes:
        raise ValueError(f"task is {len(raw)} bytes of JSON, over the service queue's {max_bytes}-byte limit")
    return raw.encode()


def job_fields(task_json: bytes, queue_name: str, description: str, stamp: str) -> dict[str, bytes | str]:
    """An RQ job hash for one task, as ``rq.job.Job.to_dict`` would write it."""
    data = _DATA_HEAD + task_json + _DATA_TAIL  # == JSONSerializer.dumps([func, None, [task], {}])
    return {
        "created_at": stamp,
        "enqueued_at": stamp,
        "data": zlib.compress(data),
        "origin": queue_name,
        "description": description,
        "status": "queued",
        "worker_name": "",
    }


def push_tasks(conn: Redis, keys: k.Keys, tasks: Iterable[Any], settings: Settings) -> list[PushResult]:
    """Push tasks chunk by chunk; one round trip per chunk.

    A list is validated whole before anything is written, so one bad task
    changes nothing; a generator is validated chunk by chunk so that a million
    tasks need not sit in memory.  A chunk is atomic; a later chunk can land in
    a newer batch if the batch ends in between, which the result reports.
    """
    label = settings.task_function or "(no task function set)"
    limit = settings.max_task_bytes
    ctx = scripts.Context(keys, finalize_lease=settings.callback_timeout + scripts.LEASE_SECONDS)
    if isinstance(tasks, Sequence):  # validate everything first: one bad task writes nothing
        chunks: Iterable[list[bytes]] = _chunks([encode_task(task, limit) for task in tasks], CHUNK_SIZE)
    else:
        chunks = ([encode_task(task, limit) for task in chunk] for chunk in _chunks(tasks, CHUNK_SIZE))
    return [_push_chunk(conn, ctx, encoded, label) for encoded in chunks]


def _push_chunk(conn: Redis, ctx: scripts.Context, encoded: list[bytes], func_label: str) -> PushResult:
    keys = ctx.keys
    stamp = utcformat(datetime.now(UTC))
    ids = [uuid.uuid4().hex for _ in encoded]
    with conn.pipeline(transaction=True) as pipe:
        for task_id, task_json in zip(ids, encoded, strict=True):
            description = f"{func_label}({_short(task_json)})"
            pipe.hset(k.job_key(task_id), mapping=job_fields(task_json, keys.queue_name, description, stamp))
        scripts.run(pipe, scripts.PUSH, ctx, [uuid.uuid4().hex, *ids])
        batch_id, opened, _now = pipe.execute()[-1]
    return PushResult(ids, batch_id.decode(), bool(int(opened)))


def _short(task_json: bytes, limit: int = 120) -> str:
    text = task_json.decode()
    return text if len(text) <= limit else text[:limit] + "..."


def _chunks(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    it = iter(items)
    while chunk := list(islice(it, size)):
        yield chunk
