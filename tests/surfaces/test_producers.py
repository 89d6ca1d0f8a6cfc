"""docs/producers.md: the documented layout matches the code, and its redis-cli recipe, run as it
stands, pushes a task that a real worker then runs."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from redis import Redis

from rq_serviceq import ServiceQ
from rq_serviceq.store import keys as k
from rq_serviceq.store import scripts
from tests import tasks
from tests.conftest import ROOT

DOC = (ROOT / "docs" / "producers.md").read_text()


def _table_after(heading: str) -> list[list[str]]:
    section = DOC[DOC.index(heading) :]
    rows = re.findall(r"^\| (\d+) \| (.+?) \| (.+?) \|$", section, flags=re.M)
    out, expected = [], 1
    for number, *cells in rows:  # the first table after the heading: numbers 1, 2, 3, ...
        if int(number) != expected:
            break
        out.append([c.strip().strip("`") for c in cells])
        expected += 1
    return out


def test_documented_keys_and_args_are_the_push_scripts_header() -> None:
    push = scripts.contract("push")
    keys = _table_after("KEYS, in this order")
    assert [name for name, _ in keys] == list(push.keys)
    documented = [key.replace("NAME", "drag") for _, key in keys]
    assert documented == scripts.layout("push", k.Keys("drag"), finalize_lease=0)[0]
    args = _table_after("ARGV: the four values its header names")
    assert len(args) >= len(push.args) + 2
    named = scripts.layout("push", k.Keys("NAME"), finalize_lease=0)[1]
    stamp = push.args.index("stamp")
    for i, (shown, _what) in enumerate(args[: len(push.args)]):
        if i != stamp:  # the documented one is an example of the format
            assert shown == str(named[i]), push.args[i]


def _recipe() -> str:
    blocks: list[str] = re.findall(r"```bash\n(.*?)```", DOC, flags=re.S)
    (block,) = [b for b in blocks if "EVALSHA" in b]
    return block


def test_redis_cli_recipe_pushes_a_task_a_worker_runs(
    make_sq: Callable[..., ServiceQ],
    conn: Redis,
    redis_url: str,
    spawn_cli_worker: Callable[..., subprocess.Popen[bytes]],
    tmp_path: Path,
) -> None:
    sq = make_sq("drag", worker_count=0, auto_start=False)
    sq.set_task_function(tasks.record_attempt)  # passes, and records that it ran
    sq.set_batch_begin_callback(tasks.store_begin)  # a worker runs it: the producer ran none
    task = {"phone": "+910000000000", "text": "hello from bash"}
    bin_dir = Path(sys.executable).parent  # where `rq-serviceq` is installed
    env = dict(os.environ, RQ_REDIS_URL=redis_url, PYTHONPATH=str(ROOT), PATH=f"{bin_dir}:{os.environ['PATH']}")
    done = subprocess.run(["bash", "-euo", "pipefail", "-c", _recipe()], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr
    batch_id, opened = done.stdout.split()[:2]
    assert opened == "1" and batch_id == sq.current_batch_id()
    assert conn.llen(sq.keys.queue) == 1

    assert spawn_cli_worker("drag-pending", "--burst").wait(60) == 0
    report = sq.get_batch_report(batch_id)
    assert (report["total_submitted"], report["total_success"], report["status"]) == (1, 1, "FINISHED")
    (qtask,) = report["passed_tasks"]
    assert qtask["task"] == task and qtask["remark"] == "SUCCESS | ok"  # the worker ran what the shell wrote
    assert conn.llen(f"test:attempts:{qtask['task_id']}") == 1
    assert conn.llen("test:batch_begin") == 1  # the begin callback ran in a worker
