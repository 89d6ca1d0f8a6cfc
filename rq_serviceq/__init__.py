"""rq-serviceq: service queues with batches, retry directives and batch reports, on RQ."""

from .connection import connect
from .job import ServiceQJob
from .models import BatchEvent, BatchReport, BatchSummary, QTask, Settings, Status, StatusInfo, WorkerReport
from .perform import current_qtask
from .push import PushError
from .remarks import NoRetry
from .serviceq import RedisFull, RedisUnavailable, ServiceQ
from .state import ServiceQDeleted
from .worker import ForkingServiceQWorker, ServiceQWorker

__all__ = [
    "BatchEvent",
    "BatchReport",
    "BatchSummary",
    "ForkingServiceQWorker",
    "NoRetry",
    "PushError",
    "QTask",
    "RedisFull",
    "RedisUnavailable",
    "ServiceQ",
    "ServiceQDeleted",
    "ServiceQJob",
    "ServiceQWorker",
    "Settings",
    "Status",
    "StatusInfo",
    "WorkerReport",
    "connect",
    "current_qtask",
]
__version__ = "0.1.0"
