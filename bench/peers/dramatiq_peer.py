"""Dramatiq's adapter and its worker module, run with ``.bench/venvs/dramatiq``'s interpreter.

Workers: ``dramatiq -p 1 -t 8`` (``-p 2`` in W3).  W1 ``group([noop.message(P) x 1,000]).run()``;
W3 a group with ``add_completion_callback`` (the ``GroupCallbacks`` middleware, its barrier in
Redis).  "All done": the queue's list and its message hash empty.
"""

from __future__ import annotations

import sys

import dramatiq
from dramatiq import group
from dramatiq.brokers.redis import RedisBroker
from dramatiq.middleware import GroupCallbacks
from dramatiq.rate_limits.backends import RedisBackend

from . import harness, timing
from .timing import PAYLOAD, mark_callback

URL = harness.redis_url()
QUEUE = "dramatiq:default"
CHUNK = 1000

broker = RedisBroker(url=URL)
broker.add_middleware(GroupCallbacks(RedisBackend(url=URL)))
dramatiq.set_broker(broker)


def _on_done() -> None:
    mark_callback()


noop = dramatiq.actor(actor_name="noop")(timing.noop)
sleep10 = dramatiq.actor(actor_name="sleep10")(timing.sleep10)
on_done = dramatiq.actor(actor_name="on_done")(_on_done)


class DramatiqAdapter(harness.Adapter):
    name = "dramatiq"

    def enqueue(self, n: int, kind: str) -> float | None:
        actor = sleep10 if kind == "sleep" else noop
        for start in range(0, n, CHUNK):
            group([actor.message(PAYLOAD) for _ in range(min(CHUNK, n - start))]).run()
        return None

    def queued(self) -> int:
        return int(self.redis.llen(QUEUE))

    def worker_cmds(self, workload: str, config: str, count: int, kind: str) -> list[list[str]]:
        processes = "2" if workload == "W3" else "1"
        return [[sys.executable, "-m", "dramatiq", "bench.peers.dramatiq_peer", "-p", processes, "-t", "8"]]

    def drained(self, n: int, workload: str) -> str:
        queued, held = self.redis.llen(QUEUE), self.redis.hlen(f"{QUEUE}.msgs")
        return f"queued={queued} messages={held}" if queued or held else ""

    def batch(self, n: int, tag: str) -> float | None:
        batch = group([noop.message(PAYLOAD) for _ in range(n)])
        batch.add_completion_callback(on_done.message())  # returns None: not chainable
        batch.run()
        return None

    def versions(self) -> dict[str, str]:
        return {"dramatiq": dramatiq.__version__, "hiredis": harness.hiredis_version()}


if __name__ == "__main__":
    sys.exit(harness.main(DramatiqAdapter))
