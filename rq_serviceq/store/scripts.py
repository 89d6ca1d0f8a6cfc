"""Lua scripts: every transition that must be atomic across workers and machines.

Each script is a file in ``lua/`` that opens with its contract, machine-readable::

    -- KEYS: state queue leases ...        the keys it touches, by name (``KEY_NAMES``)
    -- ARGV: job_prefix lease ...          the named values it reads (``ARG_NAMES``, ``RULE_NAMES``)
    --- @include "end_task"                a helper of ``lua/includes/`` it calls

From that header ``source`` builds the script as Redis runs it: a generated prologue that unpacks only
the declared KEYS and ARGV into the table ``k`` (with ``k.now``, Redis' own clock, and ``S``, the
statuses), then the included helpers, transitively and each once, dependencies first, then the script.
Its own arguments follow the named ones, from ``ARGV[A]``.  ``tests/unit/test_structure.py`` checks that a
script and its includes read exactly what the header declares, and that each typed wrapper below takes
exactly the values its script reads, as required parameters: a caller that forgets one (a task failed
168 h ahead in RQ's registry because ``ttl`` was left out) is a type error.  The settings of the scripts
that end or retry tasks (``Rules``) come as Python validated them: a value stored by hand in the state
hash (``retry_limit=abc``) loads as its default there, and Lua never parses one, so it never dies on one.
A setting that is None (the breaker's, when off) comes as '', which the prologue's tonumber() makes nil.

Each script takes Redis' own clock (``TIME``), so workers whose clocks
disagree still agree on when a retry is due.  Floats are returned as strings
because Redis truncates Lua numbers to integers.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Generator, Iterable, Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from operator import attrgetter
from typing import Any

import redis
from redis import Redis
from redis.client import Pipeline
from redis.commands.core import Script

from rq_serviceq.models import Settings, Status
from rq_serviceq.store import keys as k
from rq_serviceq.store.connection import own_connection
from rq_serviceq.store.durable import Durable, NotReplicated, replicated
from rq_serviceq.store.replies import counter, text

# The names a script's header may declare, in the order its KEYS and ARGV take them.
KEY_NAMES = ("state", "queue", "retry", "leases", "started", "finished", "failed", "finalize", "bell", "batches",
             "rq_queues", "suspended", "workers", "worker", "journal", "events", "totals", "rate", "rq_workers",
             "intermediate")  # fmt: skip
ARG_NAMES = ("job_prefix", "batch_prefix", "ttl", "stamp", "lease", "worker_name", "finalize_lease", "name",
             "results_prefix", "journal_prefix")  # fmt: skip
# The settings the scripts that end or retry tasks read (``Rules``), the breaker's included (SETTLE trips it).
RULE_NAMES = ("result_ttl", "retry_limit", "resting_period", "loop_backoff", "failure_ratio", "min_tasks",
              "consecutive_failures")  # fmt: skip
# What a caller gives (the wrapper's parameters of these names); every other named value follows from the Keys.
GIVEN = ("worker_name", "ttl", "lease", "finalize_lease")
_NUMBERS = {"ttl", "lease", "finalize_lease", *RULE_NAMES}  # ARGV entries the prologue converts with tonumber()

PUSH, CLAIM, SETTLE, RELEASE = "push", "claim", "settle", "release"
EXTEND_LEASES, SET_STATUS, STOP, STOP_SLICE = "extend_leases", "set_status", "stop", "stop_slice"
RECONCILE, FINISH, RECLAIM, LEAVE = "reconcile", "finish", "reclaim", "leave"

_LUA = resources.files(__package__) / "lua"
_INCLUDE = re.compile(r'^--- @include "(\w+)"$', re.M)


@dataclass(frozen=True)
class Contract:
    """What a script's header declares: its KEYS and named ARGV in order, and the helpers it includes."""

    keys: tuple[str, ...]
    args: tuple[str, ...]
    includes: tuple[str, ...]  # transitively, dependencies first, each once

    def given(self) -> set[str]:
        """The wrapper's parameters this contract asks for (the key of ``worker`` is the worker's name)."""
        wanted = {name for name in GIVEN if name in self.args}
        if "worker" in self.keys or "journal" in self.keys:
            wanted.add("worker_name")
        if any(name in RULE_NAMES for name in self.args):
            wanted.add("rules")
        return wanted


def _declared(text: str, field: str, allowed: Sequence[str], where: str) -> tuple[str, ...]:
    found = re.search(rf"^-- {field}:(.*)$", text, re.M)
    if found is None:
        raise ValueError(f"{where} declares no {field}")
    names = tuple(found.group(1).split())
    unknown = [name for name in names if name not in allowed]
    if unknown or list(names) != sorted(names, key=allowed.index):
        raise ValueError(f"{where}: {field} {unknown or names} (known, in order: {' '.join(allowed)})")
    return names


def _includes(text: str, seen: list[str]) -> list[str]:
    """The helpers ``text`` includes, transitively, in post-order: each is defined before a helper using it."""
    for name in _INCLUDE.findall(text):
        if name not in seen:
            _includes(include_text(name), seen)
            seen.append(name)
    return seen


@cache
def include_text(name: str) -> str:
    return (_LUA / "includes" / f"{name}.lua").read_text()


@cache
def script_text(name: str) -> str:
    return (_LUA / f"{name}.lua").read_text()


@cache
def contract(name: str) -> Contract:
    """The contract a script's header declares (a ValueError names a malformed one)."""
    lua = script_text(name)
    keys = _declared(lua, "KEYS", KEY_NAMES, f"{name}.lua")
    args = _declared(lua, "ARGV", ARG_NAMES + RULE_NAMES, f"{name}.lua")
    return Contract(keys, args, tuple(_includes(lua, [])))


def names() -> list[str]:
    """Every script's name."""
    return sorted(p.name.removesuffix(".lua") for p in _LUA.iterdir() if p.name.endswith(".lua"))


def prologue(c: Contract) -> str:
    """The Lua that turns the declared KEYS and ARGV into ``k`` (and ``A``, the script's first own ARGV)."""
    fields = [f"{name} = KEYS[{i}]" for i, name in enumerate(c.keys, 1)]
    fields += [
        f"{name} = tonumber(ARGV[{i}])" if name in _NUMBERS else f"{name} = ARGV[{i}]"
        for i, name in enumerate(c.args, 1)
    ]
    fields.append("now = tonumber(t[1]) + tonumber(t[2]) / 1000000")
    if "stamp" in c.args:  # RQ's own date fields, on Redis' clock too (the ARGV slot stays, for producers)
        fields[len(c.keys) + c.args.index("stamp")] = "stamp = _iso(tonumber(t[1]), tonumber(t[2]))"
    statuses = ", ".join(f"{s.name} = '{s.value}'" for s in Status)
    return (
        "local t = redis.call('TIME')\n"
        + (_ISO if "stamp" in c.args else "")
        + "local k = {" + ",\n  ".join(fields) + "}\n"
        + f"local A = {len(c.args) + 1}\n"
        + f"local S = {{{statuses}}}\n"
    )  # fmt: skip


# Seconds and microseconds since the epoch as RQ writes dates (``rq.utils.utcformat``), with days turned into
# a civil date by Howard Hinnant's days-from-civil algorithm, inverted: Redis' Lua has no os.date.
_ISO = """local function _iso(s, us)
  local days, rem = math.floor(s / 86400), s % 86400
  local z = days + 719468
  local era = math.floor(z / 146097)
  local doe = z - era * 146097
  local yoe = math.floor((doe - math.floor(doe / 1460) + math.floor(doe / 36524) - math.floor(doe / 146096)) / 365)
  local doy = doe - (365 * yoe + math.floor(yoe / 4) - math.floor(yoe / 100))
  local mp = math.floor((5 * doy + 2) / 153)
  local d, m = doy - math.floor((153 * mp + 2) / 5) + 1, mp < 10 and mp + 3 or mp - 9
  local y = yoe + era * 400 + (m <= 2 and 1 or 0)
  return string.format('%04d-%02d-%02dT%02d:%02d:%02d.%06dZ', y, m, d, math.floor(rem / 3600),
    math.floor(rem % 3600 / 60), rem % 60, us)
end
"""


@cache
def source(name: str) -> str:
    """A script as Redis runs it: the generated prologue, the helpers it includes, then the script."""
    c = contract(name)
    return "\n".join((prologue(c), *(include_text(i) for i in c.includes), script_text(name)))


@dataclass(frozen=True)
class Rules:
    """The settings a script that ends or retries tasks reads (``RULE_NAMES``), from validated ``Settings``."""

    result_ttl: int
    retry_limit: int
    resting_period: float
    loop_backoff: float
    failure_ratio: float | None
    min_tasks: int | None
    consecutive_failures: int | None

    @classmethod
    def of(cls, settings: Settings) -> Rules:
        return cls(*(getattr(settings, name) for name in RULE_NAMES))


@dataclass(frozen=True)
class Ending:
    """What every script that ends tasks reads (``includes/end_task.lua``), as one parameter of its wrapper:
    whose step it is, how long an ended task stays scored in RQ's registries, how long batch-end work the
    step wins is leased to the caller, and the settings the tasks follow."""

    worker_name: str  # '' for a caller that is no worker
    ttl: int  # the service queue's report_ttl
    finalize_lease: float
    rules: Rules

    @classmethod
    def of(cls, worker_name: str, settings: Settings, finalize_lease: float) -> Ending:
        return cls(worker_name, settings.report_ttl, finalize_lease, Rules.of(settings))

    def given(self) -> dict[str, Any]:
        return {"worker_name": self.worker_name, "ttl": self.ttl, "finalize_lease": self.finalize_lease,
                "rules": self.rules}  # fmt: skip


def layout(name: str, keys: k.Keys, **given: Any) -> tuple[list[str], list[Any]]:
    """Script ``name``'s KEYS and named ARGV, as its header declares them; ``given`` must be exactly
    what it asks for (``Contract.given``).  Its own arguments follow these."""
    c = contract(name)
    if set(given) != c.given():
        raise TypeError(f"script {name!r} takes {sorted(c.given())}, not {sorted(given)}")
    worker_name = given.get("worker_name", "")
    special = {
        "rq_queues": k.RQ_QUEUES,
        "rq_workers": k.RQ_WORKERS,
        "suspended": k.SUSPENDED,
        "worker": k.worker_key(worker_name) if worker_name else keys.base + "no-worker",
        "journal": keys.journal(worker_name) if worker_name else keys.base + "no-journal",
    }
    rules = given.get("rules")
    values = {
        "job_prefix": k.JOB_PREFIX,
        "batch_prefix": keys.batch_prefix,
        "stamp": "",  # unread: the prologue takes Redis' clock (the slot is kept, for producers' layout)
        "name": keys.name,
        "results_prefix": k.RESULTS_PREFIX,
        "journal_prefix": keys.journal_prefix,
        **{rule: _rule_value(getattr(rules, rule)) for rule in RULE_NAMES if rules is not None},
        **given,
    }
    return [special[n] if n in special else getattr(keys, n) for n in c.keys], [values[n] for n in c.args]


def _rule_value(value: float | None) -> str:
    return "" if value is None else repr(value)


_scripts: dict[str, Script] = {}


def _run(conn: Redis | Pipeline, name: str, keys: k.Keys, given: dict[str, Any], args: Sequence[Any] = ()) -> Any:
    """Run a script by SHA (loading it once), on a connection or inside a pipeline.  Only the typed
    wrappers below call it: each script's reply is unpacked in exactly one place."""
    key_list, named = layout(name, keys, **given)
    return _script(conn, name)(keys=key_list, args=[*named, *args], client=conn)


def _script(conn: Redis | Pipeline, name: str) -> Script:
    """Script ``name``, made once per process (its SHA is the same on every Redis)."""
    script = _scripts.get(name)
    if script is None:
        script = _scripts[name] = Script(conn, source(name))
    return script


# --- one typed wrapper per script --------------------------------------------------------------


@dataclass(frozen=True)
class PushChunk:
    """One PUSH call's own arguments: up to ~1,000 tasks as (task id, job data, description)."""

    new_batch_id: str  # the batch to open if none is active
    origin: str  # the RQ queue name
    tasks: list[tuple[str, bytes, str]]


@dataclass(frozen=True)
class Pushed:
    batch_id: str  # the batch the chunk joined or opened ('' when the service queue was deleted)
    opened: bool
    deleted: bool  # nothing was written: the service queue no longer exists


def push(
    conn: Redis, keys: k.Keys, finalize_lease: float, chunks: Sequence[PushChunk], durable: Durable | None
) -> list[Pushed]:
    """PUSH each chunk atomically; several chunks share one pipelined round trip, one is a bare EVALSHA.
    A batch it opens has its begin work leased to the pusher for ``finalize_lease``.  With ``durable``, a
    WAIT follows on the same connection; too few replicas raise ``NotReplicated`` (``.pushed``: the replies)."""
    given = {"finalize_lease": finalize_lease}

    def args(chunk: PushChunk) -> list[Any]:
        return [chunk.new_batch_id, chunk.origin, *(x for task in chunk.tasks for x in task)]

    if len(chunks) == 1 and durable is None:
        replies = [_run(conn, PUSH, keys, given, args(chunks[0]))]
    else:
        with conn.pipeline(transaction=False) as pipe:
            for chunk in chunks:
                _run(pipe, PUSH, keys, given, args(chunk))
            if durable is not None:
                pipe.execute_command(*durable.command())  # type: ignore[no-untyped-call, unused-ignore]
            replies = pipe.execute()
    pushed = [_pushed(reply) for reply in replies[: len(chunks)]]
    if durable is not None:
        try:
            replicated(replies[-1], durable)
        except NotReplicated as exc:
            exc.pushed = pushed
            raise
    return pushed


def _pushed(reply: list[Any]) -> Pushed:
    bid, opened, _now = reply
    return Pushed(text(bid), int(opened) > 0, int(opened) < 0)


def push_streamed(
    conn: Redis,
    keys: k.Keys,
    finalize_lease: float,
    groups: Iterable[Sequence[PushChunk]],
    durable: Durable | None,
) -> Generator[tuple[Sequence[PushChunk], list[Pushed | None]], None, None]:
    """PUSH group after group of chunks on a connection of its own, each group sent before the replies of
    the one before it are read: Redis runs one group while Python packs the next, where with a pipeline
    per group they took turns (each was about half of a million-task push).  Every reply is read and
    yielded in order with its group, so the caller learns exactly what was written; an error reply or a
    lost connection is raised once the groups before it are yielded (the group after it may have been
    sent, and its chunks are atomic: written whole, or not at all)."""
    script = _script(conn, PUSH)
    key_list, named = layout(PUSH, keys, finalize_lease=finalize_lease)
    head = [b"EVALSHA", script.sha.encode(), b"%d" % len(key_list), *(_as_bytes(x) for x in (*key_list, *named))]
    if not conn.script_exists(script.sha)[0]:
        conn.script_load(script.script)
    pool = conn.connection_pool
    connection = own_connection(pool)
    waiting: list[Sequence[PushChunk]] = []  # the group sent whose replies are not read yet
    pending = iter(groups)
    error: BaseException | None = None
    try:
        while error is None:
            try:
                group = next(pending)
            except StopIteration:
                break
            except BaseException as exc:  # a bad task, or the caller's generator failing: what was sent is told
                error = exc
                break
            packed = b"".join(_packed(head, chunk) for chunk in group)
            connection.send_packed_command([packed], check_health=not waiting)
            if waiting:
                sent = waiting.pop()
                replies, error = _replies(connection, len(sent))
                yield sent, replies
            waiting.append(group)
        if waiting:
            sent = waiting.pop()
            replies, failed = _replies(connection, len(sent))
            error = error or failed
            yield sent, replies
        if durable is not None and error is None:  # every group read: WAIT covers all this connection wrote
            connection.send_packed_command([_resp(durable.command())])
            replicated(connection.read_response(), durable)
    except NotReplicated:
        raise
    except BaseException:
        connection.disconnect()  # replies may be left unread on it
        raise
    finally:
        pool.release(connection)
    if error is not None:
        raise error


def _replies(connection: Any, count: int) -> tuple[list[Pushed | None], redis.exceptions.ResponseError | None]:
    """``count`` PUSH replies, None for a chunk Redis refused (full, say: a chunk is written whole or not at
    all), and the first refusal, raised by the caller once the chunks written are told."""
    replies: list[Pushed | None] = []
    error = None
    for _ in range(count):
        try:
            replies.append(_pushed(connection.read_response()))
        except redis.exceptions.ResponseError as exc:
            replies.append(None)
            error = error or exc
    return replies, error


def _packed(head: list[bytes], chunk: PushChunk) -> bytes:
    """One EVALSHA of PUSH in RESP: redis-py's packer spent some 3 us an argument, a chunk has 3,000."""
    parts = [chunk.new_batch_id.encode(), chunk.origin.encode()]
    for task_id, data, description in chunk.tasks:
        parts += (task_id.encode(), data, description.encode())
    return _resp([*head, *parts])


def _resp(args: Sequence[bytes]) -> bytes:
    """A command in RESP, packed here: every command ``push_streamed`` writes on its own connection."""
    return b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%b\r\n" % (len(a), a) for a in args)


def _as_bytes(value: Any) -> bytes:
    return value if isinstance(value, bytes) else str(value).encode()


@dataclass(frozen=True)
class Claimed:
    now: float
    status: str  # the service queue's, or SUSPENDED (`rq suspend`), or DELETED
    active_batch: str
    wake_at: float | None  # when the next retry, lease or batch work falls due
    finalize: str  # batch work handed to the caller ('' for none)
    state: list[bytes]  # the state hash, flat
    tasks: list[tuple[str, str, list[bytes]]]  # (task id, claim token, job hash flat)
    in_flight: int  # leased tasks and batch work not yet done, anywhere


def claim(
    conn: Redis,
    keys: k.Keys,
    ending: Ending,
    lease: float,
    count: int,
    new_batch_id: str,
) -> Claimed:
    """CLAIM up to ``count`` tasks under ``lease`` (``new_batch_id`` opens a batch should a requeued task need one)."""
    given = {**ending.given(), "lease": lease}
    now, status, active, wake, finalize, state, tasks, in_flight = _run(conn, CLAIM, keys, given, [count, new_batch_id])
    wake_text = text(wake)
    return Claimed(
        now=float(now),
        status=text(status),
        active_batch=text(active),
        wake_at=float(wake_text) if wake_text else None,
        finalize=text(finalize),
        state=state,
        tasks=[(text(task_id), text(token), flat) for task_id, token, flat in tasks],
        in_flight=int(in_flight),
    )


@dataclass(slots=True)  # not frozen: one per task, and a frozen dataclass costs 4x as much to build
class Settled:
    task_id: str
    result: str  # passed | failed | retry | stale
    due: float | None
    retries: int


@dataclass(frozen=True)
class SettleResult:
    now: float
    tasks: list[Settled]
    ended_batches: list[str]
    pause_gen: int = 0  # the service queue's pause generation after the step (``counter``: damaged reads as 0)
    breaker: str = ""  # why the breaker paused the service queue in this step ('' when it did not)
    replicas: int | None = None  # replicas WAIT counted after the step (None: not asked for, durable_replicas 0)


def settle(
    conn: Redis,
    keys: k.Keys,
    ending: Ending,
    outcomes: Sequence[tuple[str, str, str, str]],
    keep_journal: int,
    durable: Durable | None,
) -> SettleResult:
    """SETTLE attempts' outcomes: (task id, claim token, verdict pass|retry|fail, remark) each; the breaker
    (``ending.rules``) may pause the service queue in the same step.  The worker's journal is deleted, or
    cut to its last ``keep_journal`` entries while the worker's next group runs."""
    args = [keep_journal, *(x for outcome in outcomes for x in outcome)]
    replicas = None
    if durable is None:
        now, rows, ended, gen, tripped = _run(conn, SETTLE, keys, ending.given(), args)
    else:
        with conn.pipeline(transaction=False) as pipe:
            _run(pipe, SETTLE, keys, ending.given(), args)
            pipe.execute_command(*durable.command())  # type: ignore[no-untyped-call, unused-ignore]
            (now, rows, ended, gen, tripped), replicas = pipe.execute()
    return SettleResult(
        float(now),
        [_settled(row) for row in rows],
        [text(b) for b in ended],
        counter(text(gen)),
        text(tripped),
        None if replicas is None else int(replicas),
    )


def _settled(row: list[Any]) -> Settled:
    task_id, result, due, retries = row  # bytes, bytes, bytes ('' for none), an integer or b''
    return Settled(text(task_id), text(result), float(due) if due else None, int(retries) if retries else 0)


@dataclass(frozen=True)
class Released:
    ended_batches: list[str]  # batches whose last tasks, stopped, this failed


def release(
    conn: Redis,
    keys: k.Keys,
    ending: Ending,
    claims: Sequence[tuple[str, str]],
) -> Released:
    """RELEASE claimed tasks that never started: (task id, claim token) each."""
    return Released([text(b) for b in _run(conn, RELEASE, keys, ending.given(), [x for pair in claims for x in pair])])


@dataclass(frozen=True)
class Left:
    left: bool  # False: work appeared since the claim, and the worker stays registered


def leave(conn: Redis, keys: k.Keys, worker_name: str) -> Left:
    """LEAVE RQ's registry of the pending queue's workers (a burst worker with nothing to do), unless work appeared."""
    return Left(bool(_run(conn, LEAVE, keys, {"worker_name": worker_name})))


@dataclass(frozen=True)
class Extended:
    count: int


def extend_leases(
    conn: Redis, keys: k.Keys, lease: float, task_ids: Sequence[str], batch_work: Sequence[str]
) -> Extended:
    """EXTEND_LEASES of running tasks and of batch work (finalize-zset members) a live process holds."""
    given = {"lease": lease}
    return Extended(int(_run(conn, EXTEND_LEASES, keys, given, [len(task_ids), *task_ids, *batch_work])))


@dataclass(frozen=True)
class StatusChange:
    status: str
    pause_gen: int  # bumped by a pause: workers compare it with the one their claim saw


def set_status(conn: Redis, keys: k.Keys, paused: bool) -> StatusChange:
    """SET_STATUS: pause, or resume where work stopped."""
    status, gen = _run(conn, SET_STATUS, keys, {}, [Status.PAUSED if paused else "RESUME"])
    return StatusChange(text(status), int(gen))


@dataclass(frozen=True)
class Stopped:
    batch_id: str | None  # the batch stopped (None when none was active)
    pause_gen: int


def stop(conn: Redis, keys: k.Keys) -> Stopped:
    """STOP the active batch (its tasks are failed by ``stop_slice``)."""
    batch_id, gen = _run(conn, STOP, keys, {})
    return Stopped(text(batch_id) or None, int(gen))


@dataclass(frozen=True)
class StopSlice:
    cursor: str  # pass back for the next slice; 'done' after a whole pass
    ended: str | None  # the batch, when this slice ended it


def stop_slice(
    conn: Redis,
    keys: k.Keys,
    ending: Ending,
    batch_id: str,
    cursor: str,
    size: int,
) -> StopSlice:
    """STOP_SLICE: fail up to ``size`` tasks of a stopped batch that are not running."""
    nxt, ended = _run(conn, STOP_SLICE, keys, ending.given(), [batch_id, cursor, size])
    return StopSlice(text(nxt), text(ended) or None)


@dataclass(frozen=True)
class AuditSlice:
    cursor: str  # '0' when the pass is over, '' when another process's pass is under way or ran lately
    failed: int
    given_back: int
    ended: str | None


def reconcile(
    conn: Redis,
    keys: k.Keys,
    ending: Ending,
    batch_id: str,
    cursor: str,
    size: int,
) -> AuditSlice:
    """RECONCILE one slice of a batch's open tasks with what RQ's tools did to them."""
    nxt, failed, back, ended = _run(conn, RECONCILE, keys, ending.given(), [batch_id, cursor, size])
    return AuditSlice(text(nxt), int(failed), int(back), text(ended) or None)


@dataclass(frozen=True)
class Finished:
    done: bool  # this call did it (False: it had been done already)


def finish(conn: Redis, keys: k.Keys, batch_id: str, status: str) -> Finished:
    """FINISH a batch's end work (``status`` FINISHED|STOPPED), or its begin work (``status`` 'BEGUN')."""
    return Finished(bool(int(_run(conn, FINISH, keys, {}, [batch_id, status]))))


@dataclass(frozen=True)
class Reclaimed:
    held: int  # tasks the dead worker held, now claimable


def reclaim(conn: Redis, keys: k.Keys, worker_name: str, journal: Sequence[bytes], journal_ttl: int) -> Reclaimed:
    """RECLAIM what worker ``worker_name``, known to be dead, held; ``journal``: the entries of its spool,
    put in its journal (kept ``journal_ttl`` seconds) in the same step."""
    return Reclaimed(int(_run(conn, RECLAIM, keys, {"worker_name": worker_name}, [journal_ttl, *journal])))


# --- read-only scripts (lua/reads/) -----------------------------------------------------------
# They write nothing, so they take no context: only the key shapes keys.py gives and what they read.
READ_SLICE = 200  # service queues one READ_QUEUES call reads (a few ms of Redis time: bench/metrics.py)
_READ_SHAPES: tuple[Callable[[k.Keys], str], ...] = tuple(
    attrgetter(name)
    for name in ("state", "totals", "queue", "retry", "leases", "supervisors", "workers", "batch_prefix")
)


@dataclass(frozen=True)
class QueueRead:
    """One service queue's figures as stored: numbers Redis counted, and the text of the fields read."""

    name: str
    totals: dict[str, str]
    status: str | None
    worker_count: str | None
    batch_id: str | None  # the active batch, else the last one
    ledger: list[str | None]  # submitted, passed, failed, pending of that batch (empty without one)
    queued: int
    waiting_retries: int
    in_flight: int
    supervisors: int
    live_workers: int


def read_queues(conn: Redis, names: Sequence[str], per_call: int = READ_SLICE) -> list[QueueRead]:
    """READ_QUEUES: many service queues' figures, ``per_call`` queues a call, every call in one round trip."""
    script = _scripts.get("reads/queues")
    if script is None:
        lua = resources.files(__package__) / "lua" / "reads" / "queues.lua"
        script = _scripts["reads/queues"] = Script(conn, lua.read_text())
    shapes = [part for key_of in _READ_SHAPES for part in k.shape(key_of)]
    with conn.pipeline(transaction=False) as pipe:
        for i in range(0, len(names), per_call):
            script(args=[*shapes, k.RQ_WORKER_PREFIX, *names[i : i + per_call]], client=pipe)
        replies = pipe.execute()
    return [_queue_read(row) for reply in replies for row in json.loads(_text_lossy(reply))]


def _text_lossy(value: Any) -> str:
    """A hand-written field that is not UTF-8 reads as replacement characters (then as a bad number), not an error."""
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _queue_read(row: list[Any]) -> QueueRead:
    name, totals, state, queued, waiting, in_flight, supervisors, live, ledger = row
    flat = totals or []  # cjson writes an empty list as {}
    status, worker_count, active, last = (value or None for value in state)
    return QueueRead(
        name=name,
        totals=dict(zip(flat[::2], flat[1::2], strict=True)),
        status=status,
        worker_count=worker_count,
        batch_id=active or last,
        ledger=[value or None for value in ledger or []],
        queued=queued,
        waiting_retries=waiting,
        in_flight=in_flight,
        supervisors=supervisors,
        live_workers=live,
    )
