"""rq-serviceq: service queues with batches, retry directives and batch reports, on RQ."""

from rq_serviceq.batch.push import PushError
from rq_serviceq.job import ServiceQJob
from rq_serviceq.models import BatchEvent, BatchReport, BatchSummary, QTask, Settings, Status, StatusInfo, WorkerReport
from rq_serviceq.serviceq import RedisFull, RedisUnavailable, ServiceQ
from rq_serviceq.store.connection import connect
from rq_serviceq.store.durable import NotReplicated
from rq_serviceq.store.state import ServiceQDeleted
from rq_serviceq.task.remarks import NoRetry, Retry, Throttle
from rq_serviceq.worker.run import current_qtask
from rq_serviceq.worker.worker import ForkingServiceQWorker, ServiceQWorker

__all__ = [
    "BatchEvent",
    "BatchReport",
    "BatchSummary",
    "ForkingServiceQWorker",
    "NoRetry",
    "NotReplicated",
    "PushError",
    "QTask",
    "RedisFull",
    "RedisUnavailable",
    "Retry",
    "ServiceQ",
    "ServiceQDeleted",
    "ServiceQJob",
    "ServiceQWorker",
    "Settings",
    "Status",
    "StatusInfo",
    "Throttle",
    "WorkerReport",
    "connect",
    "current_qtask",
]
__version__ = "0.1.0"
