"""Peak RSS of a real `rq-serviceq serve` while it takes concurrent batch bodies (docs/benchmarks.md, HTTP).

    .venv/bin/python -m bench.http_memory --task-bytes 5900 --bodies 4    # four ~57 MiB bodies
    .venv/bin/python -m bench.http_memory --task-bytes 100 --bodies 16    # sixteen ~1.2 MiB bodies

Each body is one batch of 10,000 tasks; the figure is the server's VmHWM (peak RSS) from /proc.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path

import httpx

from rq_serviceq.testing import RedisServer
from tests.http_helpers import running_server


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc (Linux only)")


async def post_all(base: str, body: bytes, count: int) -> list[int]:
    headers = {"content-type": "application/json"}
    async with httpx.AsyncClient(base_url=base, timeout=300, headers=headers) as http:
        posts = (http.post("/serviceqs/mem/tasks/batch", content=body) for _ in range(count))
        return [answer.status_code for answer in await asyncio.gather(*posts)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--task-bytes", type=int, default=5900)
    parser.add_argument("--bodies", type=int, default=4)
    args = parser.parse_args()
    task = json.dumps({"blob": "x" * args.task_bytes, "n": 1})
    body = ('{"tasks": [' + ", ".join([task] * 10_000) + "]}").encode()
    redis = RedisServer().start()
    try:
        with tempfile.TemporaryDirectory() as tmp, running_server(redis.url, Path(tmp) / "server.log") as server:
            assert server.proc is not None
            httpx.get(f"{server.base}/healthz")
            idle = peak_rss_mib(server.proc.pid)
            started = time.monotonic()
            statuses = asyncio.run(post_all(server.base, body, args.bodies))
            took = time.monotonic() - started
            peak = peak_rss_mib(server.proc.pid)
    finally:
        redis.stop()
    print(f"{args.bodies} x {len(body) / 2**20:.1f} MiB bodies: {statuses} in {took:.1f} s")
    print(f"peak RSS {peak:.0f} MiB (idle {idle:.0f} MiB): {(peak - idle) / args.bodies:.0f} MiB per body")


if __name__ == "__main__":
    main()
