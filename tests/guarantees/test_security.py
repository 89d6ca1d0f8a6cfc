"""The ACL rule docs/security.md gives is enough for producers, workers, pause and stop."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis import Redis
from redis.exceptions import NoPermissionError

from rq_serviceq import ServiceQ
from rq_serviceq.testing import RedisServer
from tests import tasks

ROOT = Path(__file__).resolve().parents[2]
RULE = "user rq-serviceq on >s3cret ~rq:* &rq:* +@all -@dangerous +client|list"  # as in docs/security.md


@pytest.fixture
def acl_redis(tmp_path: Path) -> Iterator[RedisServer]:
    users = tmp_path / "users.acl"
    users.write_text(f"user default off\n{RULE}\n")
    with RedisServer("--aclfile", str(users), auth="rq-serviceq:s3cret") as server:
        yield server


def test_the_documented_acl_rule_is_enough(acl_redis: RedisServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RQ_REDIS_URL", acl_redis.url)
    monkeypatch.setenv("REDIS_URL", acl_redis.url)
    conn = Redis.from_url(acl_redis.url)
    with pytest.raises(NoPermissionError):
        conn.set("not-rq", 1)  # the rule does confine the user
    sq = ServiceQ("drag", connection=conn)
    sq.set_worker_config(worker_count=0)
    sq.set_retry_config(retry_limit=1)
    sq.set_task_function(tasks.returns)
    sq.push_many([{"value": True}, {"value": [False, "RETRY | again"]}])
    sq.pause()
    sq.resume()
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    cmd = [sys.executable, "-m", "rq.cli", "worker", "-w", "rq_serviceq.ServiceQWorker", "-q", "--burst"]
    cmd.append("drag-pending")
    assert subprocess.run(cmd, env=env, cwd=ROOT, timeout=60).returncode == 0
    report = sq.get_batch_report()
    assert (report["total_success"], report["total_failed"], report["status"]) == (1, 1, "FINISHED")
    sq.push({"value": True})
    assert sq.stop() is not None
    assert sq.get_status() == "STOPPED"
