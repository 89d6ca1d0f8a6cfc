"""``rq-serviceq serve``: the app on uvicorn.

The Redis URL given with ``--url`` travels to the app (and to every uvicorn
worker process) in ``RQ_REDIS_URL``, where ``ps`` does not show a password.
"""

from __future__ import annotations

import ipaddress
import logging
import os

from rq_serviceq.http.config import HttpConfig

logger = logging.getLogger("rq_serviceq.http")


def serve(
    host: str = "127.0.0.1",
    port: int = 8000,
    url: str | None = None,
    workers: int = 1,
    access_log: bool = False,
    log_level: str = "info",
) -> None:
    """Run the service until SIGTERM/SIGINT, then flush what the auto-batcher holds and answer it."""
    import uvicorn

    if url:
        os.environ["RQ_REDIS_URL"] = url
    config = HttpConfig.from_env()  # a bad setting stops us here, with its variable's name, not in each worker
    if config.api_token is None and not _loopback(host):
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
        logger.warning(
            "listening on %s with no SERVICEQ_API_TOKEN: anyone who reaches this address can push, pause, "
            "stop and delete service queues; set SERVICEQ_API_TOKEN",
            host,
        )
    uvicorn.run(
        "rq_serviceq.http:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        access_log=access_log,
        log_level=log_level,
        proxy_headers=False,
        server_header=False,
    )


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: it may resolve beyond loopback
