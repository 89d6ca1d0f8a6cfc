"""The HTTP job-batching service: ``rq-serviceq serve``, or ``uvicorn --factory rq_serviceq.http:create_app``.

Needs the ``http`` extra (``pip install 'rq-serviceq[http]'``).
"""

from .app import create_app
from .config import HttpConfig

__all__ = ["HttpConfig", "create_app"]
