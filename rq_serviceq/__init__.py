"""rq-serviceq: service queues with batches, retry directives and batch reports, on RQ."""

from .connection import connect
from .job import ServiceQJob
from .perform import current_qtask
from .push import PushError
from .remarks import NoRetry
from .serviceq import ServiceQ
from .worker import ForkingServiceQWorker, ServiceQWorker

__all__ = [
    "ForkingServiceQWorker",
    "NoRetry",
    "PushError",
    "ServiceQ",
    "ServiceQJob",
    "ServiceQWorker",
    "connect",
    "current_qtask",
]
__version__ = "0.1.0"
