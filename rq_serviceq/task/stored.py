"""How a task is kept in its RQ job hash, and read back from it.

RQ's ``data`` field is the serialized call, ``[func, instance, args, kwargs]``; with the task inside, it is some
70 bytes longer than the task, so even a short task's ``data`` passes 64 bytes. Redis' default
``hash-max-listpack-value`` is 64, and a single longer value turns the whole hash into a hash table. That costs
a queued task about 320 bytes, or 35% of its memory.

So where the task is at most ``PIECES`` times ``PIECE_BYTES`` (512) bytes of JSON, PUSH, given RQ's call as
ever (``HEAD``, the task, ``TAIL``), keeps the call without its task (``STUB``: the placeholder function, no
arguments) as ``data``, and the task's JSON in fields of at most 64 bytes, ``sq_task``, ``sq_task2`` and so on
(``lua/includes/task_fields.lua``). Readers that go through ``ServiceQJob`` (the worker, the reports, the
requeue, rq-dashboard's pages by way of ``contrib.dashboard``) get back the call PUSH was given, byte for byte
(``call_data``); RQ's plain ``Job`` reads the stub, the placeholder with no arguments. A longer task keeps its
whole call in ``data``, zlib-compressed, because its hash is a hash table either way; so does a call that a
producer in another language spells otherwise, and a hash written before the pieces.
"""

from __future__ import annotations

import contextlib
import json
import zlib
from collections.abc import Mapping, Sequence
from typing import Any

# What RQ would call if a plain `rq worker` took a ServiceQ job: a refusal that says what to run.
PLACEHOLDER_FUNC = "rq_serviceq.job.perform_outside_serviceq_worker"
PIECE_BYTES = 64  # Redis' default hash-max-listpack-value
PIECES = 8  # a task's fields at most: a task of up to 512 bytes of JSON keeps its hash compact
FIELDS = tuple(f"sq_task{n if n > 1 else ''}" for n in range(1, PIECES + 1))  # sq_task, sq_task2, ...
_FIELD_BYTES = tuple(name.encode() for name in FIELDS)
READ = ("data", *FIELDS)  # the fields ``task_of`` reads a task from, in its order
# RQ's call without its task, as push.lua writes it (62 bytes: compact, to stay within 64).
STUB = b'["' + PLACEHOLDER_FUNC.encode() + b'",null,[],{}]'
# The first bytes of a task PUSH is given bare: an object, a string, true, false or null.  No RQ call (a JSON
# list) and no zlib stream begins with one, so the script tells a bare task from a call by it.
BARE_FIRST = frozenset(b'{"tfn')
HEAD = b'["' + PLACEHOLDER_FUNC.encode() + b'", null, ['
TAIL = b"], {}]"


def job_data(task_json: bytes) -> bytes:
    """What PUSH is given as a task's data (``lua/includes/task_fields.lua``): a task of at most 64 bytes of JSON
    that begins with one of ``BARE_FIRST`` as itself, the one piece it is kept as; any other, RQ's serialized
    call (``== JSONSerializer.dumps([func, None, [task], {}])``), which the script cuts into pieces where the
    task fits them, and compresses (RQ reads either) where it does not, since its hash is then a hash table."""
    if len(task_json) <= PIECE_BYTES and task_json and task_json[0] in BARE_FIRST:
        return task_json
    data = HEAD + task_json + TAIL
    return zlib.compress(data) if len(task_json) > PIECES * PIECE_BYTES else data


def call_data(data: bytes, pieces: Sequence[bytes]) -> bytes:
    """RQ's whole ``data`` of a task (decompressed where it is a zlib stream: RQ writes either): put together from
    its pieces (the values of ``FIELDS`` it has, in order) where ``data`` is the ``STUB`` they go with.  A
    ``data`` that anyone wrote since (RQ's ``Job.save`` of changed arguments, a hand repair) is the call, as RQ's
    plain readers take it too; RQ's own rewrites of an unchanged job write the stub or the same call."""
    if data[:1] != b"[":  # no JSON call: a zlib stream, which RQ tries on every value
        with contextlib.suppress(zlib.error):
            data = zlib.decompress(data)
    if pieces and data == STUB:
        return HEAD + (pieces[0] if len(pieces) == 1 else b"".join(pieces)) + TAIL
    return data


def pieces_of(raw: Mapping[bytes, Any]) -> list[bytes]:
    """The values of ``FIELDS`` a job hash as read (field names as bytes) has, in order."""
    return [value for name in _FIELD_BYTES if (value := raw.get(name)) is not None]


def in_order(pieces: list[tuple[bytes, bytes]]) -> list[bytes]:
    """The values of (field, value) pairs of ``FIELDS``, in the order of ``FIELDS`` (which is the fields' own)."""
    return [pieces[0][1]] if len(pieces) == 1 else [value for _, value in sorted(pieces)]


def task_of(values: Sequence[bytes | None]) -> Any:
    """The task in a job hash's values of ``READ`` (None where absent), None for a hash without data.
    Raises what reading damaged data raises (``report.UNREADABLE``)."""
    data, pieces = values[0], values[1:]
    if not data:
        return None
    return json.loads(call_data(data, [piece for piece in pieces if piece is not None]))[2][0]
