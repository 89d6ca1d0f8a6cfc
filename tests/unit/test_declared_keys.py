"""Every key a script touches is one it was handed in KEYS, or one of the documented exceptions
(docs/cluster.md): what Redis Cluster and Dragonfly need of a script, checked while the scripts run.

Each script is loaded in a guarded copy whose every ``redis.call`` first notes a key that is neither in
KEYS nor under an allowed prefix; a scenario then runs every script, and the notes must be empty.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from redis import Redis
from redis.commands.core import Script

from rq_serviceq import ServiceQ, ServiceQWorker
from rq_serviceq.batch import reads
from rq_serviceq.store import keys as k
from rq_serviceq.store import scripts
from rq_serviceq.worker import claim as claims
from rq_serviceq.worker.leases import TASK_LEASE
from rq_serviceq.worker.reconcile import reconcile
from tests import tasks
from tests.conftest import drain, text

NOTES = "test:undeclared"  # the guard's own list: written with the unguarded call, so never noted itself
# Keys a script builds from a prefix it is given, per task or batch (docs/cluster.md: "What is built").
DYNAMIC = (k.JOB_PREFIX, k.RESULTS_PREFIX)
EXCEPTIONS = {"reads/queues"}  # reads many service queues in one call: never one server's slot (docs/cluster.md)

GUARD = """local _declared = {}
for _, key in ipairs(KEYS) do _declared[key] = true end
local _prefixes = {%s}
local _raw = redis.call
local function _guarded(command, key, ...)
  if key == nil then return _raw(command) end
  if type(key) == 'string' and not _declared[key] then
    local dynamic = false
    for _, p in ipairs(_prefixes) do
      if string.sub(key, 1, #p) == p then dynamic = true end
    end
    if not dynamic then _raw('RPUSH', '%s', '%%s ' .. command .. ' ' .. key) end
  end
  return _raw(command, key, ...)
end
"""


@pytest.fixture
def guarded(monkeypatch: pytest.MonkeyPatch) -> Iterator[set[str]]:
    """Scripts run in their guarded copies; yields the names of those that ran."""
    ran: set[str] = set()
    made: dict[str, Script] = {}
    queue = k.Keys("guarded")
    prefixes = ", ".join(f"'{p}'" for p in (*DYNAMIC, queue.batch_prefix, queue.journal_prefix))

    def guarded_script(conn: Redis, name: str) -> Script:
        ran.add(name)
        if name not in made:
            body = scripts.source(name).replace("redis.call(", "_guarded(").replace("redis.pcall(", "_guarded(")
            made[name] = Script(conn, (GUARD % (prefixes, NOTES)).replace("%s", name, 1) + body)
        return made[name]

    monkeypatch.setattr(scripts, "_script", guarded_script)
    yield ran


def _scenario(sq: ServiceQ, conn: Redis) -> None:
    """Every script once at least: push, claim, settle, release, extend, reclaim, leave, reconcile,
    pause and resume, stop and its slices, finish, and the many-queue read."""
    sq.set_retry_config(retry_limit=1)
    sq.set_task_function(tasks.mixed)
    sq.push_many([{"b": 0, "i": i} for i in range(10)])
    got = claims.claim(conn, sq.keys, "w1", sq.settings, 2, TASK_LEASE)
    claims.extend_leases(conn, sq.keys, [job.id for job in got.jobs], [], TASK_LEASE)
    claims.release(conn, sq.keys, "w1", got.settings, [(job.id, job.claim) for job in got.jobs], TASK_LEASE)
    got = claims.claim(conn, sq.keys, "w2", sq.settings, 1, TASK_LEASE)
    claims.reclaim(conn, sq.keys, "w2")
    conn.delete(k.job_key(text(conn.lindex(sq.keys.queue, -1))))  # as `rq` tools may
    batch_id = sq.current_batch_id()
    assert batch_id is not None
    reconcile(conn, sq.keys, "w3", sq.settings, batch_id, TASK_LEASE)
    sq.pause()
    sq.resume()
    drain(sq)
    sq.set_retry_config(retry_limit=0)
    sq.push_many([{"b": 1, "i": i} for i in range(5)])
    sq.stop()
    drain(sq)
    reads.figures(conn)
    ServiceQWorker(sq.keys.queue_name, connection=conn).work(burst=True, logging_level="WARNING")


def test_every_script_touches_only_the_keys_it_declares(
    guarded: set[str], make_sq: Callable[..., ServiceQ], conn: Redis
) -> None:
    sq = make_sq("guarded", worker_count=0)
    _scenario(sq, conn)
    assert guarded >= set(scripts.names()), f"not run: {set(scripts.names()) - guarded}"
    notes = sorted({text(x) for x in conn.lrange(NOTES, 0, -1)})
    assert [n for n in notes if n.split()[0] not in EXCEPTIONS] == []
