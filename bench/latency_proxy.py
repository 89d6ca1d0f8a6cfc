"""A TCP proxy that adds a fixed delay in each direction: Redis "far away" on localhost.

``python -m bench.latency_proxy --target 127.0.0.1:6379 --delay 0.005`` listens on a
free port of 127.0.0.1, prints ``PORT <n>`` on stdout, and forwards every connection
to the target, holding each chunk of bytes for ``delay`` seconds before passing it on
(so a request/response round trip takes 2 x delay more).  Chunks of one direction
of one connection go out in the order they came in.

Bounded: each direction buffers at most ``--max-chunks`` chunks (the reader waits
when it is full), and the proxy exits by itself after ``--max-seconds`` or as soon
as the process that started it (``--parent-pid``) is gone.

``LatencyProxy`` runs it as a subprocess for the bench.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


async def _forward(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float, max_chunks: int) -> None:
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue(maxsize=max_chunks)

    async def read() -> None:
        try:
            while data := await reader.read(65536):
                await queue.put((loop.time() + delay, data))
        except (ConnectionError, OSError):
            pass
        await queue.put((loop.time() + delay, b""))

    async def write() -> None:
        try:
            while True:
                due, data = await queue.get()
                wait = due - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                if not data:
                    break
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            with contextlib.suppress(Exception):
                writer.close()

    await asyncio.gather(read(), write())


async def _serve(
    target_host: str, target_port: int, delay: float, max_chunks: int, max_seconds: float, parent_pid: int | None
) -> None:
    async def handle(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        server_w: asyncio.StreamWriter | None = None
        try:
            server_r, server_w = await asyncio.open_connection(target_host, target_port)
            await asyncio.gather(
                _forward(client_r, server_w, delay, max_chunks),
                _forward(server_r, client_w, delay, max_chunks),
            )
        except (OSError, asyncio.CancelledError):
            pass  # target unreachable, or the proxy is shutting down: just drop the connection
        finally:
            for writer in (client_w, server_w):
                if writer is not None:
                    with contextlib.suppress(Exception):
                        writer.close()

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    print(f"PORT {port}", flush=True)
    deadline = time.monotonic() + max_seconds
    async with server:
        while time.monotonic() < deadline and not stop.is_set():
            if parent_pid is not None and not _alive(parent_pid):
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.5)


def _alive(pid: int) -> bool:
    if os.getppid() != pid:  # re-parented: the bench is gone
        return False
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", required=True, help="host:port of the Redis server")
    parser.add_argument("--delay", type=float, default=0.005, help="seconds added in each direction")
    parser.add_argument("--max-chunks", type=int, default=1024, help="chunks buffered per direction")
    parser.add_argument("--max-seconds", type=float, default=4 * 3600, help="exit after this long")
    parser.add_argument("--parent-pid", type=int, default=None, help="exit when this process is gone")
    args = parser.parse_args(argv)
    host, _, port = args.target.rpartition(":")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(
            _serve(host or "127.0.0.1", int(port), args.delay, args.max_chunks, args.max_seconds, args.parent_pid)
        )


class LatencyProxy:
    """``with LatencyProxy(port, delay) as proxy: proxy.url`` — the proxy as a subprocess."""

    def __init__(
        self, target_port: int, delay: float = 0.005, target_host: str = "127.0.0.1", max_seconds: float = 4 * 3600
    ) -> None:
        self.args = [
            sys.executable,
            "-m",
            "bench.latency_proxy",
            "--target",
            f"{target_host}:{target_port}",
            "--delay",
            str(delay),
            "--max-seconds",
            str(max_seconds),
            "--parent-pid",
            str(os.getpid()),
        ]
        self.proc: subprocess.Popen[str] | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> LatencyProxy:
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
        self.proc = subprocess.Popen(
            self.args, stdout=subprocess.PIPE, text=True, env=env, cwd=ROOT, start_new_session=True
        )
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        line = self.proc.stdout.readline()  # blocks until the proxy listens (or dies)
        if not line.startswith("PORT ") or time.monotonic() > deadline:
            self.stop()
            raise RuntimeError(f"latency proxy did not start: {line!r}")
        self.port = int(line.split()[1])
        return self

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def __enter__(self) -> LatencyProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


if __name__ == "__main__":
    main()
