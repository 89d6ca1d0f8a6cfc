"""`rq worker` with this process's clock shifted by CLOCK_SHIFT seconds, to show due times come from Redis."""

import os
import sys
import time

_real_time = time.time
_shift = float(os.environ.get("CLOCK_SHIFT", "0"))
time.time = lambda: _real_time() + _shift

from rq.cli.cli import main  # noqa: E402  (where rq.cli imports it from)

if __name__ == "__main__":
    sys.exit(main())
