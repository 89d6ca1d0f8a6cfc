"""A bounded soak in the suite (the long one is `python -m tests.soak --seconds 1800`)."""

from __future__ import annotations

import pytest
from redis import Redis

from tests.soak import soak


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_bounded_soak(conn: Redis, redis_url: str) -> None:
    done = soak(redis_url, seconds=15, seed=11)
    assert done["pushes"] and done["pauses"] and done["scales"] and done["kills"]
