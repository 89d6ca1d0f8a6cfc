"""``rq-serviceq serve``: the app on uvicorn.

The Redis URL given with ``--url`` travels to the app (and to every uvicorn
worker process) in ``RQ_REDIS_URL``, where ``ps`` does not show a password.
"""

from __future__ import annotations

import os

from .config import HttpConfig


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
    HttpConfig.from_env()  # a bad setting stops us here, with its variable's name, not in each worker
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
