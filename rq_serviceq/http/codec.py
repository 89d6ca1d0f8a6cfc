"""What a request brings and an answer carries: bodies checked and parsed, tasks encoded, answers as JSON.

The FastAPI routes and the fast path (``_fast/fastpath.py``) both check a
body here, so they refuse it with the same status and words: not JSON (400),
wrong content type (415), too big (413), a bad service queue name (422).

JSON on the hot paths: bodies parsed and tasks encoded with orjson, the standard library's verdicts kept.

Measured on a 1,000-task body: orjson parses it in a quarter of ``json.loads``'
time and encodes each task some twenty times faster than ``json.dumps``, which
builds a new encoder on every call.  Where the two libraries would disagree,
the standard library decides, so the service accepts, refuses and writes what
the library's own push (``encode_task``) would:

- integers beyond 64 bits: orjson reads them as floats, so a body with a run
  of 20 digits, or of 19 after a minus sign (orjson's negative integers stop at
  -2**63: ``-9999999999999999999`` would be ``-1e+19``), is parsed by ``json.loads``;
- a body orjson refuses (NaN, a lone surrogate, a byte-order mark, a number out
  of a float's range, ...) is parsed by ``json.loads``, whose verdict and message
  stand; NaN, Infinity and out-of-range numbers are not JSON there either;
- a task whose orjson encoding is not printable ASCII (``json.dumps`` escapes
  the rest), is over the size limit or may nest too deep is encoded by
  the library's ``encode_task``, which spells it as ``json.dumps`` does and words the refusal.

The one visible difference: a float may be spelled another way (``0.00001`` for
``1e-05``), with the same value.
"""

from __future__ import annotations

import json
import math
from typing import Any

import orjson
from fastapi import HTTPException

from rq_serviceq.models import validate_name
from rq_serviceq.serviceq import MAX_TASK_DEPTH
from rq_serviceq.serviceq import encode_task as library_encode

# every digit a "0", a minus sign kept, the rest spaces
_DIGITS = bytes(0x30 if 0x30 <= i <= 0x39 else i if i == 0x2D else 0x20 for i in range(256))
_LONG_NUMBER = b"0" * 20  # 2**64 has 20 digits; any integer orjson reads exactly has at most 19 of them
_LONG_NEGATIVE = b"-" + b"0" * 19  # -(2**63) has 19: orjson reads a 19-digit one below it as a float
_SLICE = 1 << 20


def loads(body: bytes | bytearray) -> Any:
    """The body's JSON value; ``ValueError`` (or ``RecursionError``) naming what is wrong if it is not JSON."""
    if not _has_long_number(body):
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError:
            pass  # the standard library decides, and says why
    return json.loads(body, parse_constant=_not_json, parse_float=_finite)


def _has_long_number(body: bytes | bytearray) -> bool:
    """Whether a run of digits orjson would not read exactly may be in ``body``.

    Looked for a slice at a time (overlapping by a number's length, so no run is
    cut in two): translating the whole body at once was one more copy of it, of
    up to SERVICEQ_MAX_BODY_BYTES, for every request in flight.
    """
    if len(body) <= _SLICE:  # a single task's body, mostly: no copy but the translation
        return _long_run(body.translate(_DIGITS))
    view = memoryview(body)
    slices = (view[start : start + _SLICE + len(_LONG_NUMBER)] for start in range(0, len(body), _SLICE))
    return any(_long_run(piece.tobytes().translate(_DIGITS)) for piece in slices)


def _long_run(shape: bytes | bytearray) -> bool:
    return _LONG_NUMBER in shape or _LONG_NEGATIVE in shape


def _not_json(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} is out of a float's range")
    return value


def encode_task(task: Any, max_bytes: int) -> bytes:
    """A task from ``loads`` as JSON bytes, as the library's ``encode_task`` writes them (it refuses, and words why).

    orjson's output keeps the buffer it was written in: 4 KiB for a task of a
    few bytes, 64 KiB for one of 6 KB, 1 MiB for one of 70 KB (tracemalloc).
    A batch holds every task's encoding until it is pushed, and the
    auto-batcher each waiting one, so the bytes are copied to their own size
    (a memcpy, under a microsecond for 6 KB).

    Only for values ``loads`` made: orjson writes an infinite float as ``null``,
    and ``loads`` never makes one.
    """
    try:
        raw = orjson.dumps(task)
    except orjson.JSONEncodeError:
        return library_encode(task, max_bytes)
    plain = raw.isascii() and b"\x7f" not in raw  # json.dumps escapes everything else
    if plain and len(raw) <= max_bytes and raw.count(b"[") + raw.count(b"{") <= MAX_TASK_DEPTH:
        return bytes(memoryview(raw))  # a copy of its own size: orjson's bytes keep their writer's buffer
    return library_encode(task, max_bytes)


def dumps(value: Any) -> bytes:
    """A response body (ids and messages: no value where orjson and ``json.dumps`` differ)."""
    return orjson.dumps(value)


# --- a request's inputs, checked the same way on both paths ----------------------------------------
def checked_name(name: str) -> str:
    """The path's service queue name, or a 422 saying what a name may be (inline: a dependency costs more)."""
    try:
        return validate_name(name)
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from None


def is_json_media(content_type: str | None) -> bool:
    """Whether a Content-Type header says JSON (``application/json`` or ``...+json``, parameters aside): the
    body check below and the pages' cross-site rule (``auth.cross_site``) agree on it."""
    media = (content_type or "").split(";")[0].strip().lower()
    return media == "application/json" or media.endswith("+json")


def check_body_headers(content_type: str | None, content_length: str, limit: int) -> None:
    """415 unless the body is JSON; 413 if it says it is over ``limit`` bytes (before reading a byte of it)."""
    if not is_json_media(content_type):
        sent = f"not {content_type!r}" if content_type else "none was sent"
        raise HTTPException(415, f"Content-Type must be application/json ({sent})")
    check_length(content_length, limit)


def check_length(content_length: str, limit: int) -> None:
    """413 if the body says it is over ``limit`` bytes (the seed's routes check only this: any Content-Type)."""
    if content_length.isdigit() and int(content_length) > limit:
        raise HTTPException(413, f"body of {content_length} bytes is over SERVICEQ_MAX_BODY_BYTES ({limit})")


def too_big(limit: int) -> HTTPException:
    """The 413 for a body found over ``limit`` while it arrives (one without a Content-Length, or lying)."""
    return HTTPException(413, f"body is over SERVICEQ_MAX_BODY_BYTES ({limit})")


def parse_json(body: bytes | bytearray) -> Any:
    """400 for an empty body or one that is not JSON, naming why."""
    if not body or body.isspace():
        raise HTTPException(400, "body is empty: send a JSON value")
    try:
        return loads(body)
    except (ValueError, RecursionError) as exc:
        raise HTTPException(400, f"body is not valid JSON: {exc}") from None
