"""BullMQ's adapter: Python drives ``bullmq.cjs`` (Node, BullMQ from ``.bench/node``) and reads Redis.

W1 ``queue.addBulk(1,000 jobs)``, timed inside Node; workers are ``Worker`` at concurrency 1
or 50 (8 for W5, ``setTimeout`` 10 ms); W3 one ``FlowProducer.add`` (a parent and N children),
timed from just before that call.  "All done": wait, active and waiting-children empty and
``completed`` holding every job.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from . import harness
from .venvs import NODE_DIR

SCRIPT = Path(__file__).with_name("bullmq.cjs")
PREFIX = "bull:bench"


def node_env() -> dict[str, str]:
    return dict(os.environ) | {"NODE_PATH": str(NODE_DIR / "node_modules")}


class BullMQAdapter(harness.Adapter):
    name = "bullmq"

    def __init__(self, url: str, workdir: Path) -> None:
        super().__init__(url, workdir)
        self.node = shutil.which("node") or "node"
        self.expected_extra = 0

    def _node(self, *args: str, timeout: float = harness.ENQUEUE_TIMEOUT) -> dict[str, float]:
        done = subprocess.run(
            [self.node, str(SCRIPT), *args], env=node_env(), capture_output=True, text=True, timeout=timeout
        )
        if done.returncode:
            raise RuntimeError(f"node {SCRIPT.name} {args[0]} failed: {done.stderr.strip()[-800:]}")
        reply: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
        return reply

    def enqueue(self, n: int, kind: str) -> float | None:
        return self._node("enqueue", self.url, str(n), kind)["seconds"]

    def queued(self) -> int:
        return int(self.redis.llen(f"{PREFIX}:wait"))

    def env(self) -> dict[str, str]:
        return {"NODE_PATH": str(NODE_DIR / "node_modules")}

    def worker_cmds(self, workload: str, config: str, count: int, kind: str) -> list[list[str]]:
        concurrency = config.rpartition("c")[2]
        return [[self.node, str(SCRIPT), "worker", self.url, concurrency] for _ in range(count)]

    def drained(self, n: int, workload: str) -> str:
        wait, active = self.redis.llen(f"{PREFIX}:wait"), self.redis.llen(f"{PREFIX}:active")
        children = self.redis.zcard(f"{PREFIX}:waiting-children")
        completed = self.redis.zcard(f"{PREFIX}:completed")
        want = n + self.expected_extra
        if wait or active or children or completed < want:
            return f"wait={wait} active={active} waiting-children={children} completed={completed} of {want}"
        return ""

    def batch(self, n: int, tag: str) -> float | None:
        self.expected_extra = 4 if tag == "main" else 0  # its parent, and the warm-up's 2 children and parent
        return self._node("batch", self.url, str(n))["t0"]

    def versions(self) -> dict[str, str]:
        package = NODE_DIR / "node_modules" / "bullmq" / "package.json"
        node = subprocess.run([self.node, "--version"], capture_output=True, text=True).stdout.strip()
        return {"bullmq": json.loads(package.read_text())["version"], "node": node}


if __name__ == "__main__":
    sys.exit(harness.main(BullMQAdapter))
