"""ServiceQJob: an RQ job that knows its batch, attempts and remark.

The ServiceQ fields are plain hash fields next to RQ's (``sq_batch``,
``sq_retries``, ...) so that the Lua scripts can read them; RQ keeps unknown
fields in place when it saves, so plain RQ tools do not disturb them.
"""

from __future__ import annotations

from typing import Any

from rq.job import Job
from rq.serializers import JSONSerializer

from .state import decode_hash


def perform_outside_serviceq_worker(task: Any) -> None:
    """What a plain ``rq worker`` would run for a ServiceQ job: a clear refusal."""
    raise RuntimeError(
        "this is a ServiceQ task: run its queue with `rq worker --worker-class rq_serviceq.ServiceQWorker NAME-pending`"
    )


class ServiceQJob(Job):
    """A Qtask as an RQ job (always JSON-serialized: no pickle is read from Redis)."""

    def __init__(self, id: str | None = None, connection: Any = None, serializer: Any = None) -> None:
        super().__init__(id, connection=connection, serializer=JSONSerializer)
        self.sq: dict[str, str] = {}
        self.unreadable = ""  # why the task's data cannot be read (see claim._job); such a task fails alone

    def restore(self, raw_data: dict[bytes, Any]) -> Any:
        self.sq = decode_hash({key: val for key, val in raw_data.items() if key.startswith(b"sq_")})
        return super().restore(raw_data)

    @property
    def task(self) -> Any:
        if self.unreadable:
            return None
        return self.args[0] if self.args else None

    @property
    def batch_id(self) -> str:
        return self.sq.get("sq_batch", "")

    @property
    def claim(self) -> str:
        return self.sq.get("sq_claim", "")

    @property
    def retries(self) -> int:
        return int(self.sq.get("sq_retries") or 0)

    def qtask(self, serviceq_id: str, remark: str | None = None, last: float | None = None) -> dict[str, Any]:
        """The seed's reported Qtask form."""
        created = self.sq.get("sq_created")
        last_raw = self.sq.get("sq_last")
        return {
            "task_id": self.id,
            "batch_id": self.batch_id,
            "serviceq_id": serviceq_id,
            "task": self.task,
            "total_retry_attempts": self.retries,
            "last_retry_timestamp": last if last is not None else (float(last_raw) if last_raw else None),
            "created_at": float(created) if created else None,
            "remark": remark if remark is not None else self.sq.get("sq_remark", ""),
        }
