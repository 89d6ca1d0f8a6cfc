"""The seed's verbose worker log: ``epoch  |  worker_id  |  message`` on stdout."""

from __future__ import annotations

import sys
import time


def worker_log(enabled: bool, worker_id: str, message: str) -> None:
    if enabled:
        sys.stdout.write(f"{time.time():.3f}  |  {worker_id}  |  {message}\n")
        sys.stdout.flush()
