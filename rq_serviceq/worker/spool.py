"""The journal's spool: a worker's task journal kept in a file of its own machine, not sent to Redis per task.

The journal (``journal.py``) is what a worker that dies mid-group leaves behind: which tasks started, and
the outcomes known before the settle.  Sent to Redis as each task started, it cost a write a task, a
fifth of a no-op worker's CPU and a tenth of Redis' (``bench.profiling``; docs/benchmarks.md).  A write
into a shared memory map costs neither a system call nor Redis' time, and outlives the process that made
it: the pages belong to the file, so a worker killed by ``os._exit``, a segfault, SIGKILL or the OOM
killer leaves every entry it wrote, up to the last one it finished writing.

Someone must carry that into Redis before another worker takes the dead one's tasks over (its leases run
out after ``lease_seconds``; ``take_over.lua`` reads the journal then).  Each worker forks a **watcher**
when it starts, a sleeping child that holds the read end of a pipe whose write end only the worker holds:
when the worker is gone, however it went, the read ends, and the watcher RPUSHes the spool's entries into
the worker's journal list and makes its tasks claimable at once (RECLAIM), in one script call.  A
supervisor that sees its worker die leaves that to the watcher while the spool is there
(``pending``), so no takeover can come before the journal is in Redis.

What the spool does not survive is the machine: a whole-machine crash, or a kill of every process of the
worker's container at once, loses the journal of the group in flight, and its tasks run again (uncounted
as a loss), as they would once a Redis journal had expired.  ``RQ_SERVICEQ_JOURNAL=redis`` keeps the
journal in Redis for whoever would rather pay a write a task for that.

The file: a 16-byte header whose first 8 bytes hold where the live entries begin and end (two 32-bit
offsets in one native 64-bit word, written as one aligned store, so a death mid-write leaves the old
pair or the new), then
entries, each a 4-byte length and the journal's own bytes (``s<id>\\x1f<claim>``, ``o...``).  An entry
counts once the header's end covers it.  The directory is the user's own (mode 0700, checked: another
user of the machine must not plant or read entries); a worker that cannot have it journals to Redis.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import mmap
import os
import re
import signal
import stat
import struct
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from redis import Redis
from redis.exceptions import RedisError

from rq_serviceq.store import keys as k
from rq_serviceq.worker.claim import reclaim

logger = logging.getLogger("rq_serviceq")

ENV = "RQ_SERVICEQ_JOURNAL"  # "redis": journal to Redis as each task starts; else (default) "spool"
DIR_ENV = "RQ_SERVICEQ_SPOOL_DIR"  # where spools live (default: <tmp>/rq-serviceq-<uid>)
_HEADER = 16
_SIZE = 1 << 18  # 256 KiB to start with: a group's entries are ~100 bytes a task
_SPAN = struct.Struct("Q")  # start | end << 32, native: CPython packs it with one 8-byte memcpy, one store
_LEN = struct.Struct("<I")
JOURNAL_TTL = 86_400  # seconds a journal outlives the last group its worker began (one that died never settles it)
FLUSH_PATIENCE = 30.0  # seconds a watcher keeps trying a Redis that is away before it gives the journal up
_closing_in_children: set[int] = set()  # pipe write ends a forked child (a work horse, a task's fork) drops


def _drop_write_ends() -> None:
    """In any child forked from a worker: let go of the watcher's pipe, or the watcher would wait for it too."""
    for fd in list(_closing_in_children):
        with contextlib.suppress(OSError):
            os.close(fd)
    _closing_in_children.clear()


os.register_at_fork(after_in_child=_drop_write_ends)


def directory() -> Path | None:
    """This user's spool directory, made if need be; None (with a warning) if it is not safely ours."""
    where = Path(os.environ.get(DIR_ENV) or Path(tempfile.gettempdir()) / f"rq-serviceq-{os.getuid()}")
    try:
        where.mkdir(mode=0o700, parents=True, exist_ok=True)
        st = os.lstat(where)
    except OSError as exc:
        logger.warning("journal spool directory %s unusable (%s); journaling to Redis", where, exc)
        return None
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid() or st.st_mode & 0o077:
        logger.warning("journal spool directory %s is not this user's own (mode 0700); journaling to Redis", where)
        return None
    return where


def path_of(queue: str, worker_name: str, where: Path | None = None) -> Path | None:
    """The spool's file of a service queue's worker (``<queue>@<worker>.journal``: no queue name holds an
    ``@``); a worker name that is no plain file name (``rq worker --name ../x``) is made one, with a
    digest of it, so it stays in the directory and apart from every other name."""
    base = where or directory()
    if base is None:
        return None
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", worker_name)
    if safe != worker_name or len(safe) > 100:
        safe = f"{safe[:60]}-{hashlib.sha256(worker_name.encode()).hexdigest()[:16]}"
    return base / f"{queue}@{safe}.journal"


def pending(queue: str, worker_name: str) -> bool:
    """A spool of this worker is there, or being carried to Redis: its watcher reclaims the worker's tasks."""
    path = path_of(queue, worker_name)
    return path is not None and (path.exists() or any(path.parent.glob(f"{path.name}.taken-*")))


class Spool:
    """One worker's journal file, mapped into memory; written by one process at a time (the caller's lock)."""

    def __init__(self, path: Path) -> None:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # held by the worker and, forked, its watcher
            os.posix_fallocate(fd, 0, _SIZE)  # the pages exist: a full disk is an error here, not a SIGBUS later
            self._map = mmap.mmap(fd, _SIZE)
        except OSError:
            os.close(fd)
            raise
        self._fd = fd  # kept open: the lock says someone alive may still carry this file (``sweep``)
        self.path = path
        self._start = self._end = _HEADER
        self._commit()

    def append(self, entry: bytes) -> None:
        need = self._end + _LEN.size + len(entry)
        if need > len(self._map):
            self._make_room(_LEN.size + len(entry))
            need = self._end + _LEN.size + len(entry)
        _LEN.pack_into(self._map, self._end, len(entry))
        self._map[self._end + _LEN.size : need] = entry
        self._end = need
        self._commit()

    def entries(self) -> list[bytes]:
        return _parse(self._map, self._start, self._end)

    def keep_last(self, n: int) -> None:
        """Drop all but the last ``n`` entries (the settle's ``keep``): the header moves, no entry does."""
        if n <= 0:
            self._start = self._end = _HEADER
        else:
            spans = _spans(self._map, self._start, self._end)
            self._start = spans[-n][0] if n < len(spans) else self._start
        self._commit()

    def close(self, remove: bool = True) -> None:
        """The worker leaves having settled: the file goes first, so its watcher finds nothing to carry;
        ``remove=False`` (its last group never settled) leaves it for the watcher."""
        if remove:
            with contextlib.suppress(OSError):
                self.path.unlink()
        with contextlib.suppress(ValueError, BufferError):
            self._map.close()
        with contextlib.suppress(OSError):
            os.close(self._fd)

    def _commit(self) -> None:
        _SPAN.pack_into(self._map, 0, self._start | self._end << 32)

    def _make_room(self, more: int) -> None:
        live = self._end - self._start
        if self._start - _HEADER >= live and _HEADER + live + more <= len(self._map):
            # the live entries fit before where they start: copy them there (no overlap), then move the header
            self._map[_HEADER : _HEADER + live] = self._map[self._start : self._end]
            self._start, self._end = _HEADER, _HEADER + live
            self._commit()
            return
        size = len(self._map)
        while size < self._end + more:
            size *= 2
        os.posix_fallocate(self._fd, 0, size)  # OSError on a full disk: the journal goes to Redis (journal.py)
        self._map.resize(size)


def _spans(data: mmap.mmap | bytes, start: int, end: int) -> list[tuple[int, int]]:
    """(offset, length) of each whole entry between ``start`` and ``end``."""
    found, at = [], start
    while at + _LEN.size <= end:
        (n,) = _LEN.unpack_from(data, at)
        if at + _LEN.size + n > end:
            break
        found.append((at, n))
        at += _LEN.size + n
    return found


def _parse(data: mmap.mmap | bytes, start: int, end: int) -> list[bytes]:
    return [bytes(data[at + _LEN.size : at + _LEN.size + n]) for at, n in _spans(data, start, end)]


def read_file(path: Path) -> list[bytes]:
    """The committed entries of a spool file (one left by a dead worker)."""
    data = path.read_bytes()
    if len(data) < _HEADER:
        return []
    (span,) = _SPAN.unpack_from(data, 0)
    start, end = span & 0xFFFFFFFF, span >> 32
    if not _HEADER <= start <= end <= len(data):
        return []
    return _parse(data, start, end)


def carry(conn: Redis, keys: k.Keys, worker_name: str, path: Path) -> int | None:
    """Take a dead worker's spool (a rename: one taker only), put its entries in the worker's journal list and
    make its tasks claimable (RECLAIM), then drop the file.  Returns the tasks made claimable, None when the
    spool was taken already or Redis stayed away for ``FLUSH_PATIENCE`` (its leases run out then)."""
    taken = path.with_name(f"{path.name}.taken-{os.getpid()}")
    try:
        os.rename(path, taken)
    except OSError:
        return None
    try:
        entries = read_file(taken)
        deadline = time.monotonic() + FLUSH_PATIENCE
        while True:
            try:
                return reclaim(conn, keys, worker_name, entries, JOURNAL_TTL)
            except RedisError:
                if time.monotonic() >= deadline:  # its tasks run again when their leases run out
                    return None
                time.sleep(0.5)
    finally:
        with contextlib.suppress(OSError):
            taken.unlink()


class Watcher:
    """The forked child that carries the spool to Redis once the worker is gone (see the module's text)."""

    def __init__(self, carry_it: Callable[[], object]) -> None:
        read_end, self._write_end = os.pipe()
        pid = os.fork()
        if pid == 0:  # the watcher
            code = 0
            try:
                os.close(self._write_end)
                _watch(read_end, carry_it)
            except BaseException:
                code = 1
            finally:
                os._exit(code)
        os.close(read_end)
        self.pid = pid
        _closing_in_children.add(self._write_end)

    def close(self, wait: float = 5.0) -> None:
        """The worker leaves: its watcher wakes and ends, at once if the spool went first (``Spool.close``),
        else once it has carried what the spool holds; waited for up to ``wait`` seconds."""
        _closing_in_children.discard(self._write_end)
        with contextlib.suppress(OSError):
            os.close(self._write_end)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            try:
                done, _ = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:
                return
            if done:
                return
            time.sleep(0.01)


def _watch(read_end: int, carry_it: Callable[[], object]) -> None:
    """Sleep until the worker is gone; the terminal's Ctrl-C and a signal to the worker's group are the
    worker's to act on, not this process' (it must outlive the worker to do its one thing).

    It keeps none of the worker's standard streams: whoever started the worker may read its output to
    the end (``subprocess.run(capture_output=True)``, a CI runner), which would then wait for this process
    too, up to ``FLUSH_PATIENCE`` when Redis is away.  So it says nothing; a worker that gave up on Redis
    said so, and the supervisor says that the watcher reclaims."""
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    os.close(devnull)
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT):
        signal.signal(sig, signal.SIG_IGN)
    with contextlib.suppress(OSError):
        while os.read(read_end, 4096):
            pass
    # Bounded, whatever happens in the carrying: SIGALRM's default action ends the process.
    signal.signal(signal.SIGALRM, signal.SIG_DFL)
    signal.alarm(int(FLUSH_PATIENCE) + 15)
    carry_it()


def unowned(path: Path) -> bool:
    """Nobody alive holds this spool: its worker and its watcher are both gone (or it is being removed)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


def sweep(where: Path, older_than: float = JOURNAL_TTL) -> None:
    """Drop spools that nobody will carry any more: killed with their watchers (a container's every process
    at once), untouched for a day, the time a journal in Redis is kept too."""
    cutoff = time.time() - older_than
    for path in where.glob("*.journal*"):
        with contextlib.suppress(OSError):
            if path.stat().st_mtime < cutoff and unowned(path):
                path.unlink()


def wanted() -> bool:
    return os.environ.get(ENV, "spool").strip().lower() != "redis" and hasattr(os, "fork")


def _own_path(keys: k.Keys, worker_name: str) -> Path | None:
    """The spool file a worker starting here would have; None when it journals to Redis (asked, no fork,
    or no safe directory)."""
    return path_of(keys.name, worker_name) if wanted() else None


def carry_left(conn: Redis, keys: k.Keys, worker_name: str) -> None:
    """A worker of this name that died with its watcher (its container, at once) left its spool: carry it
    now, before this worker registers the name (RECLAIM takes a dead worker's name out of RQ's registry)."""
    path = _own_path(keys, worker_name)
    if path is not None and path.exists() and unowned(path):
        carry(conn, keys, worker_name, path)


def start(conn: Redis, keys: k.Keys, worker_name: str) -> tuple[Spool, Watcher] | None:
    """The spool of a worker that starts, and its watcher; None to journal to Redis (asked, or no safe file)."""
    path = _own_path(keys, worker_name)
    if path is None:
        return None
    sweep(path.parent)
    try:
        spool = Spool(path)
    except OSError as exc:
        logger.warning("journal spool %s unusable (%s); journaling to Redis", path, exc)
        return None
    return spool, Watcher(lambda: carry(conn, keys, worker_name, path))
