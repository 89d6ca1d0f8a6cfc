"""push → pending: writing tasks as RQ jobs, a thousand per Lua call.

Each task becomes an ordinary RQ job hash (JSON-serialized, so non-Python
producers and rq-dashboard can read it) on the RQ queue ``NAME-pending``.
One PUSH script call writes a chunk's job hashes, opens or joins the batch,
counts the tasks in its ledger and queues them: one atomic step, where a
MULTI pipeline of HSETs would have needed the ledger step to run blind.
Several chunks share a round trip through a redis pipeline.  Building the
hash directly, rather than through ``rq.Job`` objects, keeps Python's share
of a push small; ``tests/surfaces/test_worker_cli.py`` checks that RQ's own
``Job.fetch`` reads what we write.
"""

from __future__ import annotations

import json
import os
import re
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import closing
from dataclasses import dataclass
from itertools import chain, islice
from typing import Any

from redis import Redis

from rq_serviceq.models import DEFAULT_MAX_TASK_BYTES, Settings
from rq_serviceq.store import keys as k
from rq_serviceq.store import scripts
from rq_serviceq.store.durable import Durable, NotReplicated
from rq_serviceq.store.state import ServiceQDeleted
from rq_serviceq.task.stored import job_data
from rq_serviceq.worker import leases

CHUNK_SIZE = 1000
CHUNKS_PER_ROUND_TRIP = 8
MAX_TASK_DEPTH = 64  # levels of nested lists and objects in one task
_JSON_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"')
_INNERMOST = re.compile(r"\[[^\[\]{}]*\]|\{[^\[\]{}]*\}")  # a list or object with nothing nested in it
_UUID4_CLEAR = ~((0xF000 << 64) | (0xC000 << 48))  # the version and variant bits of a UUID as an int
_UUID4_SET = (4 << 76) | (0x8000 << 48)  # version 4, RFC 4122 variant
# json.dumps with any option builds a JSONEncoder per call, and its encode() a C encoder per call: two
# thirds of a million-task push's encoding, which must be done before the push writes anything.  One C
# encoder, made once, does the same work (``json.dumps(task, separators=(",", ":"), allow_nan=False)``,
# byte for byte) without the circular-reference markers, whose check a task that contains itself then
# meets as nesting too deep; where CPython's C encoder is missing, JSONEncoder.encode.
_ENCODER = json.JSONEncoder(separators=(",", ":"), allow_nan=False)
_C_ENCODER = getattr(json.encoder, "c_make_encoder", None)


def _make_dumps() -> Callable[[Any], str]:
    if _C_ENCODER is None:
        return _ENCODER.encode
    encode = _C_ENCODER(None, _ENCODER.default, json.encoder.encode_basestring_ascii, None, ":", ",", False,
                        False, False)  # fmt: skip

    def dumps(task: Any) -> str:
        if isinstance(task, str):  # JSONEncoder.encode's own shortcut: the C encoder wants a container
            return _ENCODER.encode(task)
        return "".join(encode(task, 0))

    return dumps


_dumps = _make_dumps()


class PushError(TypeError, ValueError):
    """A task was refused: not JSON, over ``max_task_bytes``, or nested too deep.

    Both a TypeError and a ValueError, the two refusals raised before this class
    existed, so ``except`` clauses written for them still work.  ``task_ids`` (in
    order) and ``batch_ids`` are what the push wrote before the refused task: nothing
    for a sequence, which is validated whole first; the chunks before it for any
    other iterable, which is read a chunk at a time so that it need not fit in memory.
    """

    def __init__(self, message: str, task_ids: Sequence[str] = (), batch_ids: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.task_ids = list(task_ids)
        self.batch_ids = list(batch_ids)


@dataclass(frozen=True)
class PushResult:
    task_ids: list[str]
    batch_id: str
    opened: bool


def written(results: Iterable[PushResult]) -> tuple[list[str], list[str]]:
    """Pushed chunks' task ids, in order, and the batches they joined or opened, each once, in order."""
    results = list(results)
    return [task_id for res in results for task_id in res.task_ids], list(dict.fromkeys(r.batch_id for r in results))


def encode_task(task: Any, max_bytes: int = DEFAULT_MAX_TASK_BYTES) -> bytes:
    """The task as JSON, refused (``PushError``) before anything is written if it could not be run.

    That is: not JSON; over ``max_bytes`` of JSON; or nested more than ``MAX_TASK_DEPTH``
    (64) levels of lists and objects.  Python's JSON reader gives out near 1,000 levels,
    fewer inside a worker's deeper stack, so a task nested deeper could be pushed and
    then never be read back.  Counting brackets first keeps the precise check off the
    common path.
    """
    try:
        raw = _dumps(task)
    except (TypeError, ValueError) as exc:
        raise PushError(f"task must be JSON-serializable (dicts, lists, str, numbers, bool, None): {exc}") from None
    except RecursionError:
        raise PushError(f"task is nested too deep: the limit is {MAX_TASK_DEPTH} levels of lists and objects") from None
    if len(raw) > max_bytes:
        raise PushError(f"task is {len(raw)} bytes of JSON, over the service queue's {max_bytes}-byte limit")
    if raw.count("[") + raw.count("{") > MAX_TASK_DEPTH and (depth := json_depth(raw)) > MAX_TASK_DEPTH:
        raise PushError(f"task is nested {depth} levels deep, over the limit of {MAX_TASK_DEPTH} levels")
    return raw.encode()


def json_depth(raw: str) -> int:
    """How deep lists and objects nest in a JSON text (brackets inside strings do not count).

    Each round deletes the innermost lists and objects, so the rounds are the depth,
    and the work of a round is in C: a wide task of shallow objects takes two or three.
    """
    outside = "".join(raw.split('"')[::2]) if '\\"' not in raw else _JSON_STRING.sub("", raw)
    depth = 0
    while (inner_gone := _INNERMOST.sub("", outside)) != outside:
        outside, depth = inner_gone, depth + 1
    return depth


def iter_push(
    conn: Redis, keys: k.Keys, tasks: Iterable[Any], settings: Settings, begin_lease: float | None = None
) -> Iterator[PushResult]:
    """Push tasks a chunk of 1,000 per PUSH call, several calls per pipelined round trip.

    A sequence is validated whole before anything is written, so one bad task
    changes nothing; any other iterable is validated chunk by chunk so that a
    million tasks need not sit in memory, and a bad task raises after the chunks
    before it were written.  Results come as they are written, so that the caller
    knows what was, whatever is raised later.  A chunk is atomic; a later chunk can
    land in a newer batch if the batch ends in between, which the result reports.

    A batch this opens has its begin callback leased to the pusher for
    ``begin_lease`` seconds (default: long enough for the callback); 0 hands it
    to the next worker that claims, for a pusher that must not run user code.
    """
    limit = settings.max_task_bytes
    lease = _begin_lease(settings, begin_lease)
    if isinstance(tasks, Sequence):  # validate everything first: one bad task writes nothing
        chunks: Iterable[list[bytes]] = _chunks(_encode_all(tasks, limit), CHUNK_SIZE)
    else:
        chunks = (_encode_all(chunk, limit, n * CHUNK_SIZE) for n, chunk in enumerate(_chunks(tasks, CHUNK_SIZE)))
    yield from _streamed(conn, keys, lease, _chunks(chunks, CHUNKS_PER_ROUND_TRIP), Durable.of(settings))


def push_encoded(
    conn: Redis, keys: k.Keys, encoded: Sequence[bytes], settings: Settings, begin_lease: float | None = None
) -> list[PushResult]:
    """``iter_push`` for tasks the caller has already encoded and checked (``encode_task``'s rules).

    For a caller that has the JSON in hand, such as the HTTP service, which
    encodes with a faster codec: encoding a task twice, once to check it and
    once to push it, was a fifth of a push's CPU.  Nothing here checks the bytes.
    """
    lease = _begin_lease(settings, begin_lease)
    groups = _chunks(_chunks(encoded, CHUNK_SIZE), CHUNKS_PER_ROUND_TRIP)
    results: list[PushResult] = []
    try:
        results.extend(_streamed(conn, keys, lease, groups, Durable.of(settings)))
    except NotReplicated as exc:  # all written: the error says what
        exc.task_ids, exc.batch_ids = written(results)
        exc.results = results
        raise
    return results


def _encode_all(tasks: Sequence[Any], limit: int, offset: int = 0) -> list[bytes]:
    """Every task encoded; a refusal names the task's position, looked for only once one is refused."""
    try:
        return [encode_task(task, limit) for task in tasks]
    except PushError as exc:
        index = next((i for i, task in enumerate(tasks) if _refused(task, limit)), None)
        if index is None:  # refused once, accepted on a second look (a task changed under us)
            raise
        raise PushError(f"task {offset + index}: {exc}") from None


def _refused(task: Any, limit: int) -> bool:
    try:
        encode_task(task, limit)
    except PushError:
        return True
    return False


def _begin_lease(settings: Settings, begin_lease: float | None) -> float:
    """How long a batch a push opens has its begin callback leased to the pusher (default: long enough
    for the callback)."""
    return leases.unrenewed(settings.callback_timeout) if begin_lease is None else begin_lease


def _streamed(
    conn: Redis, keys: k.Keys, lease: float, groups: Iterator[list[list[bytes]]], durable: Durable | None
) -> Iterator[PushResult]:
    """The groups of chunks pushed one after another; from the second on, each is sent while Redis runs
    the one before it (``scripts.push_streamed``).  One group is a plain round trip.  With ``durable``,
    ``NotReplicated`` is raised once every result is yielded."""
    first = next(groups, None)
    if first is None:
        return
    error: BaseException | None = None
    try:
        second = next(groups, None)
    except Exception as exc:  # a bad task in the second group: the first is written, as it would have been
        second, error = None, exc
    if second is None:
        only = _calls(first, keys)
        try:
            pushed = scripts.push(conn, keys, lease, only, None if error else durable)
        except NotReplicated as exc:
            yield from _results(keys, only, exc.pushed)
            raise
        yield from _results(keys, only, pushed)
        if error is not None:
            raise error
        return
    calls = (_calls(group, keys) for group in chain((first, second), groups))
    with closing(scripts.push_streamed(conn, keys, lease, calls, durable)) as streamed:  # no reply left unread
        for sent, replies in streamed:
            yield from _results(keys, sent, replies)


def _calls(chunks: list[list[bytes]], keys: k.Keys) -> list[scripts.PushChunk]:
    return [_chunk(encoded, keys.queue_name) for encoded in chunks]


def _results(
    keys: k.Keys, calls: Sequence[scripts.PushChunk], replies: Sequence[scripts.Pushed | None]
) -> Iterator[PushResult]:
    """What the chunks wrote; a chunk Redis refused (None: its error follows) wrote nothing."""
    if any(reply is not None and reply.deleted for reply in replies):
        raise ServiceQDeleted(f"service queue {keys.name!r} was deleted; nothing of this chunk was written")
    for call, reply in zip(calls, replies, strict=True):
        if reply is not None:
            yield PushResult([task_id for task_id, _, _ in call.tasks], reply.batch_id, reply.opened)


def _chunk(encoded: list[bytes], origin: str) -> scripts.PushChunk:
    """No description: RQ's readers are given one from the task function as it is when they look
    (``job.description_of``), which also saves some 130 bytes a task."""
    ids = uuid4_hexes(len(encoded))
    tasks = [(task_id, job_data(raw), "") for task_id, raw in zip(ids, encoded, strict=True)]
    return scripts.PushChunk(uuid.uuid4().hex, origin, tasks)


def uuid4_hexes(count: int) -> list[str]:
    """``count`` random version-4 UUIDs as 32 hex digits, exactly as ``uuid.uuid4().hex`` spells them.

    From one ``os.urandom`` call: a thousand ``uuid4()`` objects cost more than
    the rest of a chunk's Python work.
    """
    raw = os.urandom(16 * count)
    return [f"{(int.from_bytes(raw[i : i + 16]) & _UUID4_CLEAR) | _UUID4_SET:032x}" for i in range(0, 16 * count, 16)]


def _chunks(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    it = iter(items)
    while chunk := list(islice(it, size)):
        yield chunk
