"""A soak: pushes, pauses, scales, stops and SIGKILLs at random, then every batch must add up.

Run by tests/guarantees/test_soak.py for a bounded time; run it longer by hand:

    python -m tests.soak --seconds 1800            # starts its own redis-server
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from redis import Redis

from rq_serviceq import ServiceQ
from rq_serviceq.testing import RedisServer
from tests.conftest import text

ROOT = Path(__file__).resolve().parent.parent


def soak(url: str, seconds: float, seed: int = 1) -> dict[str, int]:
    """Returns counts of what was done; raises AssertionError when an invariant breaks."""
    rng = random.Random(seed)
    conn = Redis.from_url(url)
    sq = ServiceQ("soak", connection=conn)
    sq.set_worker_config(worker_count=2, auto_start=False)
    sq.set_retry_config(retry_limit=1)
    sq.set_task_function("tests.tasks.mixed")
    sq.set_batch_end_callback("tests.tasks.store_report")
    env = dict(os.environ, RQ_REDIS_URL=url, REDIS_URL=url, PYTHONPATH=str(ROOT))
    os.environ.setdefault("REDIS_URL", url)  # stop() runs the batch-end callback here too, and it finds Redis so
    supervisor = subprocess.Popen(
        [sys.executable, "-m", "rq_serviceq", "worker", "soak", "--interval", "0.2", "--quiet"],
        env=env,
        cwd=ROOT,
        start_new_session=True,
    )
    pushed: list[str] = []
    done = {"pushes": 0, "pauses": 0, "scales": 0, "kills": 0, "stops": 0}
    try:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            _act(rng, sq, conn, pushed, done)
            time.sleep(rng.uniform(0.05, 0.4))
        sq.resume()
        sq.scale(2)
        _wait_for_quiet(sq, timeout=120)
        _check(sq, conn, pushed)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(supervisor.pid, signal.SIGKILL)
        supervisor.wait(10)
    return done


def _act(rng: random.Random, sq: ServiceQ, conn: Redis, pushed: list[str], done: dict[str, int]) -> None:
    roll = rng.random()
    if roll < 0.5:
        pushed += sq.push_many([{"b": len(pushed), "i": i} for i in range(rng.randint(1, 150))])
        done["pushes"] += 1
    elif roll < 0.65:
        sq.pause()
        time.sleep(rng.uniform(0.05, 0.5))
        sq.resume()
        done["pauses"] += 1
    elif roll < 0.8:
        sq.scale(rng.randint(1, 4))
        done["scales"] += 1
    elif roll < 0.95:
        if pids := _worker_pids(sq, conn, wait=10.0):
            with contextlib.suppress(ProcessLookupError):
                os.kill(rng.choice(pids), signal.SIGKILL)
            done["kills"] += 1
    else:
        sq.stop()
        done["stops"] += 1


def _worker_pids(sq: ServiceQ, conn: Redis, wait: float) -> list[int]:
    """The pids of the queue's registered workers, waiting up to ``wait`` s for one (a supervisor on a busy
    machine may still be starting them after a scale to 0 or a kill)."""
    deadline = time.monotonic() + wait
    while True:
        pids = [int(conn.hget(f"rq:worker:{w}", "pid") or 0) for w in sq.get_status_info()["worker_reports"]]
        if (found := [p for p in pids if p]) or time.monotonic() > deadline or sq.settings.worker_count == 0:
            return found
        time.sleep(0.05)


def _wait_for_quiet(sq: ServiceQ, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while sq.connection.hget(sq.keys.state, "active_batch") or sq.connection.zcard(sq.keys.finalize):
        if time.monotonic() > deadline:
            raise AssertionError(f"batches still open after {timeout} s: {sq.get_status_info()}")
        time.sleep(0.1)


def _check(sq: ServiceQ, conn: Redis, pushed: list[str]) -> None:
    seen: list[str] = []
    for raw in conn.zrange(sq.keys.batches, 0, -1):
        batch_id = text(raw)
        report = sq.get_batch_report(batch_id)
        ids = [q["task_id"] for q in report["passed_tasks"] + report["failed_tasks"]]
        assert report["status"] in ("FINISHED", "STOPPED"), report["status"]
        assert report["total_pending"] == 0
        assert report["total_submitted"] == report["total_success"] + report["total_failed"] == len(ids)
        assert conn.get(f"test:batch_end_count:{batch_id}") == b"1", f"batch {batch_id} ended more than once"
        seen += ids
    assert len(seen) == len(set(seen)), "a task was counted in two places"
    assert set(seen) == set(pushed), "a task was lost"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1800)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    with RedisServer() as server:
        print(soak(server.url, args.seconds, args.seed))
    return 0


if __name__ == "__main__":
    sys.exit(main())
