"""The HTTP service's fast encodings agree with the slow ones they replace.

The orjson codec: what the library's push would write, accept and refuse is
what the service writes, accepts and refuses; a float may only be spelled
another way.  (The one-buffer RESP packer: ``test_http_fastpath.py``.)
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rq_serviceq.batch import push
from rq_serviceq.http import codec

# What a parsed body can hold: JSON values (finite floats, any int, any str).
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


def _stdlib(body: bytes) -> Any:
    def refuse(name: str) -> Any:
        raise ValueError(name)

    return json.loads(body, parse_constant=refuse)


@settings(max_examples=400, deadline=None)
@given(json_values)
def test_encoded_tasks_read_back_as_the_library_writes_them(task: Any) -> None:
    ours = codec.encode_task(task, 1 << 20)
    theirs = push.encode_task(task, 1 << 20)
    assert json.loads(ours) == json.loads(theirs)
    if b"." not in theirs and b"e" not in theirs.lower():  # no float: byte for byte the same
        assert ours == theirs


@settings(max_examples=400, deadline=None)
@given(json_values)
def test_bodies_parse_as_the_standard_library_parses_them(value: Any) -> None:
    for body in (json.dumps(value).encode(), json.dumps(value, ensure_ascii=False).encode()):
        assert codec.loads(body) == _stdlib(body)


@pytest.mark.parametrize(
    "body",
    [
        b"18446744073709551616",  # 2**64: orjson would make it a float
        b"[-9999999999999999999, -9223372036854775809]",  # below -2**63: orjson would make them floats
        b'{"n": -123456789012345678901234567890}',
        b'"\\ud800"',  # a lone surrogate: orjson refuses, json.loads accepts
        b"\xef\xbb\xbf[1]",  # a UTF-8 byte-order mark
        '"caf\u00e9"'.encode("utf-16"),
    ],
)
def test_where_orjson_differs_the_standard_library_decides(body: bytes) -> None:
    assert codec.loads(body) == _stdlib(body)
    value = codec.loads(body)
    assert json.loads(codec.encode_task(value, 1000)) == json.loads(push.encode_task(value, 1000))


@pytest.mark.parametrize("body", [b"NaN", b"[1, Infinity]", b"-Infinity", b"1e400", b"[-1e999]", b"{", b"[1,]"])
def test_not_json_is_refused(body: bytes) -> None:
    """Infinite floats never come out of ``loads``, so ``encode_task`` never meets one (orjson would write null)."""
    with pytest.raises(ValueError):
        codec.loads(body)


def test_refusals_are_the_librarys_own() -> None:
    deep: Any = 1
    for _ in range(push.MAX_TASK_DEPTH + 1):
        deep = [deep]
    for task, limit in [({"blob": "x" * 300}, 200), (deep, 10_000), ("caf\u00e9" * 40, 200)]:
        with pytest.raises(push.PushError) as ours:
            codec.encode_task(task, limit)
        with pytest.raises(push.PushError) as theirs:
            push.encode_task(task, limit)
        assert str(ours.value) == str(theirs.value)
    assert codec.encode_task("\x7f\u00e9", 100) == push.encode_task("\x7f\u00e9", 100)  # escaped as json.dumps does


def test_task_ids_are_uuid4_hex() -> None:
    ids = push.uuid4_hexes(2000)
    assert len(set(ids)) == 2000
    for task_id in ids:
        parsed = uuid.UUID(task_id)
        assert (parsed.hex, parsed.version, parsed.variant) == (task_id, 4, uuid.RFC_4122)
