"""The journal's spool (rq_serviceq/worker/spool.py): what a dead worker's file holds, and who carries it."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from redis import Redis

from rq_serviceq import ServiceQ, ServiceQWorker
from rq_serviceq.worker import spool
from rq_serviceq.worker.claim import claim
from rq_serviceq.worker.leases import TASK_LEASE
from tests.conftest import text, wait_until


def _in_child(body: Callable[[], None]) -> int:
    """Run ``body`` in a forked process that then dies as a killed worker does: no cleanup at all."""
    pid = os.fork()
    if pid == 0:
        try:
            body()
        finally:
            os._exit(9)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def test_entries_survive_their_writer_and_an_unfinished_one_does_not_count(journal_spools: Path) -> None:
    journal_spools.mkdir()
    path = journal_spools / "w.journal"

    def write_and_die() -> None:
        s = spool.Spool(path)
        s.append(b"s1\x1fc")
        s.append(b"o1\x1fc\x1fpass\x1fSUCCESS")
        s.append(b"s2\x1fc")
        # a third entry's bytes, written without the header covering it: a death mid-append
        spool._LEN.pack_into(s._map, s._end, 5)
        s._map[s._end + 4 : s._end + 9] = b"s3\x1fc"

    assert _in_child(write_and_die) == 9
    assert spool.read_file(path) == [b"s1\x1fc", b"o1\x1fc\x1fpass\x1fSUCCESS", b"s2\x1fc"]
    assert spool.unowned(path)  # nobody holds it: its writer is gone


def test_keep_last_makes_room_and_grows(journal_spools: Path) -> None:
    journal_spools.mkdir()
    s = spool.Spool(journal_spools / "w.journal")
    s.append(b"a")
    s.append(b"b")
    s.append(b"c")
    s.keep_last(2)
    assert s.entries() == [b"b", b"c"]
    s.keep_last(0)
    assert s.entries() == []
    big = [b"x%06d" % i + b"." * 1000 for i in range(600)]  # 600 KB: past the first 256 KiB
    for i, entry in enumerate(big):
        s.append(entry)
        if i % 100 == 99:
            s.keep_last(50)  # a settle with the next group running: the rest moves to the front when due
    assert s.entries() == big[550:]
    assert spool.read_file(s.path) == big[550:]
    s.close()
    assert not s.path.exists()


def test_a_directory_other_users_can_enter_is_not_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    where = tmp_path / "open"
    where.mkdir(mode=0o755)
    where.chmod(0o755)
    monkeypatch.setenv(spool.DIR_ENV, str(where))
    assert spool.directory() is None
    where.chmod(0o700)
    assert spool.directory() == where


def test_a_dead_workers_spool_is_carried_into_its_journal_once(make_sq: Callable[..., ServiceQ], conn: Redis) -> None:
    sq = make_sq("drag", worker_count=0)
    (task_id,) = sq.push_many([{"value": True}])
    got = claim(conn, sq.keys, "w1", sq.settings, 1, TASK_LEASE)
    assert [job.id for job in got.jobs] == [task_id]
    where = spool.directory()
    assert where is not None
    path = spool.path_of("drag", "w1", where)
    assert path is not None
    s = spool.Spool(path)
    s.append(f"s{task_id}\x1f{got.jobs[0].claim}".encode())
    assert spool.pending("drag", "w1")
    assert spool.carry(conn, sq.keys, "w1", path) == 1  # its one task, claimable now
    assert spool.carry(conn, sq.keys, "w1", path) is None  # taken already: one carrier only
    assert [text(e) for e in conn.lrange(sq.keys.journal("w1"), 0, -1)] == [f"s{task_id}\x1f{got.jobs[0].claim}"]
    assert 0 < conn.ttl(sq.keys.journal("w1")) <= spool.JOURNAL_TTL
    assert not spool.pending("drag", "w1")


def test_the_watcher_carries_the_spool_when_its_worker_dies(make_sq: Callable[..., ServiceQ], conn: Redis) -> None:
    sq = make_sq("drag", worker_count=0)

    def worker_that_dies() -> None:
        started = spool.start(conn, sq.keys, "w2")
        assert started is not None
        started[0].append(b"sT\x1fC")

    assert _in_child(worker_that_dies) == 9
    wait_until(lambda: conn.exists(sq.keys.journal("w2")), timeout=10)
    assert conn.lrange(sq.keys.journal("w2"), 0, -1) == [b"sT\x1fC"]
    wait_until(lambda: not spool.pending("drag", "w2"), timeout=10)


def test_a_worker_that_leaves_leaves_its_watcher_nothing(make_sq: Callable[..., ServiceQ], conn: Redis) -> None:
    sq = make_sq("drag", worker_count=0)
    started = spool.start(conn, sq.keys, "w3")
    assert started is not None
    s, watcher = started
    s.append(b"sT\x1fC")
    s.keep_last(0)  # settled
    s.close()
    watcher.close()
    with pytest.raises(ChildProcessError):
        os.waitpid(watcher.pid, os.WNOHANG)  # reaped: it ended
    assert not conn.exists(sq.keys.journal("w3"))


def test_sweep_drops_only_old_spools_nobody_holds(journal_spools: Path) -> None:
    journal_spools.mkdir()
    held = spool.Spool(journal_spools / "alive.journal")
    dead = journal_spools / "dead.journal"
    _in_child(lambda: spool.Spool(dead).append(b"x"))
    old = time.time() - spool.JOURNAL_TTL - 60
    for path in (held.path, dead):
        os.utime(path, (old, old))
    spool.sweep(journal_spools)
    assert held.path.exists() and not dead.exists()
    held.close()


def test_a_spool_left_with_no_watcher_is_carried_when_a_namesake_starts(
    make_sq: Callable[..., ServiceQ], conn: Redis, journal_spools: Path
) -> None:
    sq = make_sq("drag", worker_count=0)
    journal_spools.mkdir(mode=0o700)
    path = spool.path_of("drag", "w4", journal_spools)
    assert path is not None
    _in_child(lambda: spool.Spool(path).append(b"sT\x1fC"))  # died with no watcher (its container, at once)
    spool.carry_left(conn, sq.keys, "w4")  # as the namesake registers: before, since RECLAIM unregisters it
    assert conn.lrange(sq.keys.journal("w4"), 0, -1) == [b"sT\x1fC"]
    assert not path.exists()


def test_a_worker_name_that_is_no_plain_file_name_stays_in_the_directory(journal_spools: Path) -> None:
    names = ["../../etc/x", "a/b", ".hidden", "a_b", "a b", "x" * 300]
    paths = [spool.path_of("drag", name, journal_spools) for name in names]
    assert all(p is not None and p.parent == journal_spools and not p.name.startswith(".") for p in paths)
    assert len(set(paths)) == len(names)
    assert spool.path_of("sms", "sms-1f2e", journal_spools) == journal_spools / "sms@sms-1f2e.journal"
    assert spool.path_of("a.b", "c", journal_spools) != spool.path_of("a", "b.c", journal_spools)


def test_a_worker_leaving_with_its_last_group_unsettled_leaves_the_spool_to_its_watcher(
    make_sq: Callable[..., ServiceQ], conn: Redis
) -> None:
    """A cold stop, or a stop while Redis is away, ends the worker before its settle: what its spool holds
    is then all there is of those outcomes, so it is carried, as for a worker that died."""
    sq = make_sq("drag", worker_count=0)
    for name, entries in (("settled", []), ("unsettled", [b"sT\x1fC"])):
        worker = ServiceQWorker("drag-pending", name=name, connection=conn)
        worker._start_spool()
        held = worker._journal.spool
        assert held is not None
        for entry in entries:
            held.append(entry)
        worker._leave_spool()  # waits for its watcher: gone at once, or once it has carried the spool
        assert not held.path.exists()
        assert conn.lrange(sq.keys.journal(name), 0, -1) == entries
