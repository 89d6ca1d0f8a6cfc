"""The HTTP job-batching service: ``rq-serviceq serve``, or ``uvicorn --factory rq_serviceq.http:create_app``.

Needs the ``http`` extra (``pip install 'rq-serviceq[http]'``).
"""

from rq_serviceq.http.app import create_app
from rq_serviceq.http.config import HttpConfig

__all__ = ["HttpConfig", "create_app"]
