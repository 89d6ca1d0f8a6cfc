"""Lua scripts: every transition that must be atomic across workers and machines.

Each script is a file in ``lua/`` that opens with what it takes and returns.
All share one calling convention: the same KEYS (every key of the service
queue a transition may touch) and the same first ARGV (prefixes, TTL, the
caller's worker), declared once here as ``KEY_NAMES``/``ARG_NAMES``, from which
both ``Context`` and the Lua header that unpacks them are generated.
``lua/_lib.lua`` holds the steps several transitions share: opening a batch,
counting a task's end in its batch ledger exactly once, failing a task,
settling an outcome.

Each script takes Redis' own clock (``TIME``), so workers whose clocks
disagree still agree on when a retry is due.  Floats are returned as strings
because Redis truncates Lua numbers to integers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from importlib import resources
from typing import Any

from redis import Redis
from redis.client import Pipeline
from redis.commands.core import Script
from rq.utils import utcformat

from . import keys as k
from .models import DEFAULT_REPORT_TTL, Status

LEASE_SECONDS = 15.0  # how long a claimed task or batch-end job stays a worker's without a sign of life

# The calling convention, declared once: the Lua header that unpacks KEYS and ARGV
# into the table ``k`` is generated from these, and so are Context's lists.
KEY_NAMES = ("state", "queue", "retry", "leases", "started", "finished", "failed", "finalize", "bell", "batches",
             "rq_queues", "suspended", "workers", "worker", "events", "totals")  # fmt: skip
ARG_NAMES = ("job_prefix", "batch_prefix", "ttl", "stamp", "lease", "worker_name", "finalize_lease", "name",
             "results_prefix")  # fmt: skip
_NUMBERS = {"ttl", "lease", "finalize_lease"}  # ARGV entries the header converts with tonumber()

PUSH, CLAIM, SETTLE, RELEASE = "push", "claim", "settle", "release"
EXTEND_LEASES, SET_STATUS, STOP, STOP_SLICE = "extend_leases", "set_status", "stop", "stop_slice"
RECONCILE, FINISH, RECLAIM = "reconcile", "finish", "reclaim"


@dataclass(frozen=True)
class Context:
    """The KEYS and leading ARGV every script gets (``KEY_NAMES``, ``ARG_NAMES``)."""

    keys: k.Keys
    worker_name: str = ""
    ttl: int = DEFAULT_REPORT_TTL
    lease: float = LEASE_SECONDS
    finalize_lease: float = LEASE_SECONDS  # how long batch-end work (report, callback) may take

    def key_list(self) -> list[str]:
        q = self.keys
        special = {
            "rq_queues": k.RQ_QUEUES,
            "suspended": k.SUSPENDED,
            "worker": k.worker_key(self.worker_name) if self.worker_name else q.base + "no-worker",
        }
        return [special[name] if name in special else getattr(q, name) for name in KEY_NAMES]

    def arg_list(self) -> list[Any]:
        stamp = utcformat(datetime.now(UTC))  # RQ's date format, for RQ's own fields
        values = {
            "job_prefix": k.JOB_PREFIX,
            "batch_prefix": self.keys.batch_prefix,
            "stamp": stamp,
            "name": self.keys.name,
            "results_prefix": k.RESULTS_PREFIX,
        }
        return [values[name] if name in values else getattr(self, name) for name in ARG_NAMES]


def header() -> str:
    """The Lua that turns KEYS and ARGV into ``k`` (and ``A``, the first script-specific ARGV)."""
    fields = [f"{name} = KEYS[{i}]" for i, name in enumerate(KEY_NAMES, 1)]
    fields += [
        f"{name} = tonumber(ARGV[{i}])" if name in _NUMBERS else f"{name} = ARGV[{i}]"
        for i, name in enumerate(ARG_NAMES, 1)
    ]
    fields.append("now = tonumber(t[1]) + tonumber(t[2]) / 1000000")
    statuses = ", ".join(f"{s.name} = '{s.value}'" for s in Status)
    return (
        "local t = redis.call('TIME')\n"
        + "local k = {" + ",\n  ".join(fields) + "}\n"
        + f"local A = {len(ARG_NAMES) + 1}\n"
        + f"local S = {{{statuses}}}\n"
    )  # fmt: skip


@cache
def source(name: str) -> str:
    """A script as Redis runs it: the generated header, the shared library, then the script."""
    lua = resources.files(__package__) / "lua"
    return "\n".join((header(), (lua / "_lib.lua").read_text(), (lua / f"{name}.lua").read_text()))


_scripts: dict[str, Script] = {}


def run(conn: Redis | Pipeline, name: str, ctx: Context, args: Sequence[Any] = ()) -> Any:
    """Run a script by SHA (loading it once), on a connection or inside a pipeline."""
    script = _scripts.get(name)
    if script is None:
        script = _scripts[name] = Script(conn, source(name))
    return script(keys=ctx.key_list(), args=[*ctx.arg_list(), *args], client=conn)
