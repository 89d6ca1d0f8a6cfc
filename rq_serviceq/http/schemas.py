"""Request and response bodies of the HTTP service: pydantic models, so the OpenAPI schema is the contract.

Settings reuse the core's field types (``WorkerCount``, ``RetryLimit``, ``Seconds``), so a bad value
is refused here with the same rule the library would apply, before anything
is written.  No Redis code lives here.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, model_validator

from rq_serviceq.models import (
    BatchReport,
    BreakerConfig,
    BreakerTasks,
    Concurrency,
    FailureRatio,
    RateBurst,
    RateLimit,
    RetryLimit,
    Seconds,
    StatusInfo,
    WorkerCount,
)


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class BatchRequest(_In):
    """``{"tasks": [...]}``, or the seed's ``{"jobs": [...]}``: one of the two."""

    tasks: list[Any] | None = Field(None, description="the tasks, any JSON values; at most SERVICEQ_MAX_BATCH")
    jobs: list[Any] | None = Field(None, description="the seed's name for tasks (give one of tasks and jobs)")

    @model_validator(mode="after")
    def _one_list(self) -> BatchRequest:
        if (self.tasks is None) == (self.jobs is None):
            raise ValueError("give the tasks as a list in 'tasks' (or the seed's 'jobs'), one of the two")
        return self

    def items(self) -> list[Any]:
        """The tasks, under whichever name they came."""
        return self.tasks if self.tasks is not None else self.jobs or []


class WorkerConfigUpdate(_In):
    """Omitted fields keep their value, and so do null ones, except ``rate_limit`` and ``rate_burst``,
    where null is what it is in Python: no limit, and a second's worth."""

    worker_count: WorkerCount | None = None
    waiting_period: Seconds | None = None
    resting_period: Seconds | None = None
    auto_start: StrictBool | None = None
    concurrency: Concurrency | None = None
    rate_limit: RateLimit | None = None
    rate_burst: RateBurst | None = None

    NULLABLE: ClassVar[frozenset[str]] = frozenset({"rate_limit", "rate_burst"})


class RetryConfigUpdate(_In):
    """Omitted (or null) fields keep their value."""

    retry_limit: RetryLimit | None = None
    loop_backoff: Seconds | None = None


class BreakerUpdate(_In):
    """The whole breaker (``ServiceQ.set_breaker``): an omitted (or null) field is off; ``{}`` turns it off."""

    failure_ratio: FailureRatio | None = Field(None, description="pause once failed/ended >= this, in (0, 1]")
    min_tasks: BreakerTasks | None = Field(None, description="with failure_ratio: tasks ended first (default 20)")
    consecutive_failures: BreakerTasks | None = Field(None, description="pause once this many attempts in a row fail")

    @model_validator(mode="after")
    def _whole(self) -> BreakerUpdate:
        BreakerConfig.of(**self.model_dump())  # min_tasks alone is refused, as set_breaker refuses it
        return self


class ScaleRequest(_In):
    worker_count: WorkerCount


class TaskCreated(BaseModel):
    task_id: str
    batch_id: str


class BatchCreated(BaseModel):
    """The seed's batch response, plus the batch the tasks joined."""

    task_ids: list[str]
    batch_id: str = Field(description="the batch the first task joined or opened")
    batch_ids: list[str] = Field(description="every batch the tasks landed in (more than one only if a batch ended)")
    total_enqueued: int
    message: str


class SeedBatchCreated(BatchCreated):
    """``POST /jobs/batch``: the seed's response (``job_ids``, ``message``, ``total_enqueued``) and the batch."""

    job_ids: list[str] = Field(description="the seed's name for task_ids (the same ids)")


class SeedJobCreated(TaskCreated):
    """``POST /jobs/add`` and its siblings: the task, also as the seed's ``job_id``."""

    job_id: str


class ServiceQSummary(BaseModel):
    name: str
    status: str


class ServiceQList(BaseModel):
    serviceqs: list[ServiceQSummary]


class ServiceQDetail(BaseModel):
    name: str
    settings: dict[str, Any] = Field(description="the seed's Describe(): id, name, worker and retry settings, ...")
    status_info: StatusInfo


class BatchList(BaseModel):
    batches: list[BatchReport]


class Page(BaseModel):
    outcome: Literal["passed", "failed"] | None
    offset: int
    limit: int


class BatchReportPage(BatchReport):
    """The seed's batch report with its task lists paged (``?outcome=&offset=&limit=``)."""

    page: Page


class BatchProgress(BaseModel):
    """What the batch page polls: counters, rate and time left."""

    batch_id: str
    status: str
    total_submitted: int
    total_success: int
    total_failed: int
    total_pending: int
    waiting_retries: int = Field(description="pending tasks waiting for a retry's due time")
    rate_limit: float | None = Field(None, description="the service queue's task starts a second (None: no limit)")
    start_time: float | None
    end_time: float | None
    batch_duration: float | None
    rate_per_second: float | None = Field(description="tasks ended per second so far")
    eta_seconds: float | None
    end_callback: str | None = None


class ControlResult(BaseModel):
    name: str
    status: str
    message: str
    batch_id: str | None = None
    count: int | None = None
    live_workers: int | None = None


class Health(BaseModel):
    status: Literal["ok"]
    redis: str
    waiting_tasks: int = Field(description="tasks the auto-batcher holds, not yet flushing")


class ErrorBody(BaseModel):
    detail: str
