"""``rq-serviceq watch NAME``: the current batch, live, until it ends.

It sleeps in a blocking read of the progress feed (``ServiceQ.events``), so it
costs nothing while nothing happens and wakes as soon as a task ends.  Each
update re-reads the batch ledger, queue lengths and worker registry: the feed
only says *when* to look, so a feed that was trimmed under a slow reader, or
that older workers do not write, loses nothing; a feed silent for ``--poll``
seconds is a reason to look anyway (rate and ETA move, workers come and go).

On a terminal the view is redrawn in place; otherwise (a pipe, a log file) one
plain line is printed per update, and ``--json`` prints one JSON object per update.
"""

from __future__ import annotations

import json
import logging
import time
from collections import deque
from dataclasses import asdict, dataclass, field
from functools import partial
from typing import Any

import click

from rq_serviceq.cli._common import CliError, duration, name_argument, open_queue, stdout_is_terminal, url_option
from rq_serviceq.models import Status
from rq_serviceq.serviceq import ServiceQ
from rq_serviceq.store.outage import Outage

RATE_WINDOW = 10.0  # seconds of history the rate is measured over


@dataclass
class Snapshot:
    queue: str
    batch_id: str
    status: str
    submitted: int
    passed: int
    failed: int
    pending: int
    queued: int
    waiting_retries: int
    rate: float | None  # tasks ended per second, recently
    eta_seconds: float | None
    elapsed: float | None
    ended: bool
    workers: list[dict[str, Any]] = field(default_factory=list)
    pause_reason: str = ""  # why the service queue is PAUSED (the breaker's reason, say)


class RateMeter:
    """Tasks ended per second over the last ``RATE_WINDOW`` seconds (the whole batch until then)."""

    def __init__(self) -> None:
        self.samples: deque[tuple[float, int]] = deque()

    def rate(self, done: int, elapsed: float | None) -> float | None:
        now = time.monotonic()
        self.samples.append((now, done))
        while len(self.samples) > 2 and now - self.samples[1][0] >= RATE_WINDOW:
            self.samples.popleft()
        first_time, first_done = self.samples[0]
        if now - first_time >= 1.0:
            return (done - first_done) / (now - first_time)
        return done / elapsed if elapsed else None


def snapshot(sq: ServiceQ, batch_id: str, meter: RateMeter) -> Snapshot:
    p = sq.batch_progress(batch_id)
    done = p.total_success + p.total_failed
    rate = None if p.finalized else meter.rate(done, p.batch_duration)
    paused = not p.finalized and p.queue_status == Status.PAUSED
    return Snapshot(
        queue=sq.name,
        batch_id=batch_id,
        status=Status.PAUSED if paused else p.status,
        submitted=p.total_submitted,
        passed=p.total_success,
        failed=p.total_failed,
        pending=p.total_pending,
        queued=p.queued,
        waiting_retries=p.waiting_retries,
        rate=None if rate is None else round(rate, 2),
        eta_seconds=round(p.total_pending / rate, 1) if rate and p.total_pending else None,
        elapsed=p.batch_duration,
        ended=p.finalized,
        workers=[w.model_dump() for w in sq.worker_reports().values()],
        pause_reason=p.pause_reason if paused else "",
    )


def _status(s: Snapshot) -> str:
    return f"{s.status} ({s.pause_reason})" if s.pause_reason else s.status


def plain_line(s: Snapshot) -> str:
    rate = "-" if s.rate is None else f"{s.rate:.1f}/s"
    return (
        f"{time.strftime('%H:%M:%S')} {s.queue} batch {s.batch_id} {_status(s)} passed {s.passed} failed {s.failed} "
        f"pending {s.pending} (queued {s.queued}, waiting retries {s.waiting_retries}) rate {rate} "
        f"eta {duration(s.eta_seconds)} workers {len(s.workers)}"
    )


def screen(s: Snapshot) -> list[str]:
    done = s.passed + s.failed
    width = 30
    filled = int(width * done / s.submitted) if s.submitted else 0
    rate = "-" if s.rate is None else f"{s.rate:.1f} tasks/s"
    lines = [
        f"{s.queue}  batch {s.batch_id}  {_status(s)}  {duration(s.elapsed)}",
        f"  [{'#' * filled}{'.' * (width - filled)}] {done}/{s.submitted}  {rate}  ETA {duration(s.eta_seconds)}",
        f"  passed {s.passed}  failed {s.failed}  pending {s.pending}  "
        f"(queued {s.queued}, waiting retries {s.waiting_retries})",
        f"  workers {len(s.workers)}",
    ]
    for w in s.workers:
        lines.append(
            f"    {w['id']}  {w['status']}  passed {w['success_count']}  failed {w['failed_count']}  "
            f"up {duration(w['uptime'])}"
        )
    return lines


class View:
    """Where updates go: a redrawn block on a terminal, plain lines or JSON lines elsewhere."""

    def __init__(self, as_json: bool, terminal: bool) -> None:
        self.as_json = as_json
        self.terminal = terminal and not as_json
        self.drawn = 0

    def show(self, s: Snapshot) -> None:
        if self.as_json:
            click.echo(json.dumps(asdict(s)))
        elif not self.terminal:
            click.echo(plain_line(s))
        else:
            lines = screen(s)
            up = f"\x1b[{self.drawn}F\x1b[J" if self.drawn else ""  # to the block's first line, clear below
            click.echo(up + "\n".join(lines))
            self.drawn = len(lines)


@click.command()
@name_argument
@click.option("--batch", "batch_id", metavar="BATCH_ID", help="watch this batch (default: the current or last one)")
@click.option("--interval", type=click.FloatRange(min=0.05), default=0.5, show_default=True,
              help="least seconds between two updates")  # fmt: skip
@click.option("--poll", type=click.FloatRange(min=0.1), default=2.0, show_default=True,
              help="seconds without news from the feed after which the batch is read anyway")  # fmt: skip
@url_option
@click.option("--json", "as_json", is_flag=True, help="one JSON object per update (JSON lines)")
def watch(name: str, batch_id: str | None, interval: float, poll: float, url: str | None, as_json: bool) -> None:
    """Follow the current batch until it ends: counts, rate, ETA and workers."""
    sq = open_queue(name, url)
    since = sq.newest_event_id()
    batch_id = batch_id or sq.current_batch_id()
    if batch_id is None:
        raise CliError(f"service queue {name!r} has had no batch yet")
    view, meter = View(as_json, stdout_is_terminal()), RateMeter()
    outage = Outage(sq.connection, f"watch {name}", _stderr_log())  # rides an outage out, as workers do
    while True:
        shown_at = time.monotonic()
        snap = outage.through("reading the batch", partial(snapshot, sq, batch_id, meter))
        view.show(snap)
        if snap.ended:
            return
        news = partial(_wait_for_news, sq, batch_id, since, shown_at + interval, poll)
        since = outage.through("following the feed", news)


def _stderr_log() -> logging.Logger:
    """Where ``watch`` says Redis went away and came back: stderr, apart from the view on stdout."""
    log = logging.getLogger("rq_serviceq.watch")
    if not log.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
        log.addHandler(handler)
        log.propagate = False
    return log


def _wait_for_news(sq: ServiceQ, batch_id: str, since: str, not_before: float, poll: float) -> str:
    """Block on the feed until an event comes (or ``poll`` seconds pass); then hold back until
    ``not_before``, unless the batch finished, so that a busy batch is not redrawn 100 times a second."""
    events = sq.events(since=since, block=poll)
    if not events:
        return since
    if any(e.type == "finished" and e.batch_id == batch_id for e in events):
        return events[-1].id
    pause = not_before - time.monotonic()
    if pause > 0:
        time.sleep(pause)  # a throttle between two redraws, not a wait for a condition
    return events[-1].id
