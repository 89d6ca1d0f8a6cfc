"""What RQ 2's own readers see of a task: results, return value, exception text, meta."""

from __future__ import annotations

from collections.abc import Callable

from redis import Redis
from rq.job import Job
from rq.results import Result
from rq.serializers import JSONSerializer

from rq_serviceq import ServiceQ
from rq_serviceq.job import ServiceQJob
from tests import tasks
from tests.conftest import drain


def test_results_and_meta_tell_the_outcome(make_sq: Callable[..., ServiceQ], conn: Redis) -> None:
    sq = make_sq("drag", worker_count=0)
    sq.set_retry_config(retry_limit=1)
    sq.set_task_function(tasks.returns)
    passed, failed = sq.push_many([{"value": [True, "SUCCESS | sent"]}, {"value": [False, "RETRY | busy é/\\"]}])
    drain(sq)
    batch_id = sq.wait_for_batch(timeout=10)["batch_id"]

    # A passed task keeps no result stream and no meta (docs/rq.md): its status says it, and ServiceQJob,
    # rq-dashboard's job page included, answers RQ's reads from its hash.
    plain = Job.fetch(passed, connection=conn, serializer=JSONSerializer)
    assert (
        plain.get_status() == "finished" and plain.latest_result() is None and not conn.exists(f"rq:results:{passed}")
    )
    job = ServiceQJob.fetch(passed, connection=conn)
    latest = job.latest_result()
    assert latest is not None and latest.type == Result.Type.SUCCESSFUL
    assert job.return_value() == "SUCCESS | sent"
    assert job.get_meta() == {
        "serviceq": "drag",
        "batch_id": batch_id,
        "remark": "SUCCESS | sent",
        "total_retry_attempts": 0,
        "outcome": "passed",
    }

    job = Job.fetch(failed, connection=conn, serializer=JSONSerializer)
    kinds = [r.type for r in reversed(job.results())]
    assert kinds == [Result.Type.RETRIED, Result.Type.FAILED]  # one entry per attempt's outcome
    latest = job.latest_result()
    assert latest is not None and latest.exc_string == "RETRY | busy é/\\"  # what rq-dashboard shows as exception info
    assert job.get_meta()["total_retry_attempts"] == 1
    assert job.get_meta()["outcome"] == "failed"


def test_result_entries_live_for_result_ttl_or_not_at_all(make_sq: Callable[..., ServiceQ], conn: Redis) -> None:
    sq = make_sq("drag", worker_count=0)
    sq.set_task_function(tasks.returns)
    (kept,) = sq.push_many([{"value": [False, "NO_RETRY | no"]}])
    drain(sq)
    sq.wait_for_batch(timeout=10)
    assert 0 < conn.ttl(f"rq:results:{kept}") <= 500  # RQ's own default result_ttl
    sq.set_report_config(result_ttl=0)
    (bare,) = sq.push_many([{"value": [False, "NO_RETRY | no"]}])
    drain(sq)
    sq.wait_for_batch(timeout=10)
    assert not conn.exists(f"rq:results:{bare}")
    assert Job.fetch(bare, connection=conn, serializer=JSONSerializer).get_meta()["remark"] == "NO_RETRY | no"
