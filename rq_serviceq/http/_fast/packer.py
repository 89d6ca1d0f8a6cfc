"""redis-py's RESP packing of a command, in one buffer.

The one place the service leans on a redis-py detail outside its public API:
the ``command_packer`` a connection takes, and the ``Encoder`` (from
``redis._parsers``) it falls back on for values other than ``bytes`` and ``str``.
``tests/surfaces/test_http_fastpath.py`` compares it byte for byte with redis-py's own
packer, so a redis-py release that changes either shows there.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from redis import ConnectionPool
from redis._parsers import Encoder


class OneBufferPacker:
    """redis-py's RESP packing of a command, in one buffer, with bytes and str arguments handled inline.

    A 1,000-task PUSH call has some 3,000 arguments, and redis-py's own packer
    spent 3 us on each (a method call per argument, a growing buffer): more
    than encoding the tasks.  Anything but exact ``bytes`` and ``str`` goes
    through redis-py's ``Encoder``, so every other value is written, or
    refused (``bool``, ``None``, ...), as redis-py would.  Given to the pool's
    connections as their ``command_packer``, which they call to pack every
    command (pipelines too).
    """

    def __init__(self, encoder: Encoder) -> None:
        self.encoding: str = encoder.encoding
        self.errors: str = encoder.encoding_errors
        self.encode: Callable[[Any], Any] = encoder.encode

    def pack(self, *args: Any) -> list[bytes]:
        first = args[0]
        if isinstance(first, str):  # a command name of several words, such as "SCRIPT LOAD"
            args = (*first.encode().split(), *args[1:])
        elif b" " in first:
            args = (*first.split(), *args[1:])
        parts = [b"*%d\r\n" % len(args)]
        for arg in args:
            kind = type(arg)
            if kind is str:
                arg = arg.encode(self.encoding, self.errors)
            elif kind is not bytes:
                arg = self.encode(arg)
            parts += (b"$%d\r\n" % len(arg), arg, b"\r\n")
        return [b"".join(parts)]


def install(pool: ConnectionPool) -> None:
    """Every connection ``pool`` makes packs its commands with a ``OneBufferPacker`` (in the URL's encoding)."""
    pool.connection_kwargs["command_packer"] = OneBufferPacker(pool.get_encoder())
