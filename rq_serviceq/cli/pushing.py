"""``rq-serviceq push NAME FILE|-``: tasks from a JSON array or JSON lines, all or nothing.

A file is read twice: the first pass parses and checks every task (JSON, size,
depth, as ``push`` would) without writing, so a bad line 90,000 leaves Redis
untouched and is reported with its line number; the second pass pushes in
chunks.  Neither pass holds the file in memory (a JSON array is decoded one
element at a time), and standard input is spooled to a temporary file first.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import IO, Any

import click

from rq_serviceq.batch.push import PushError, encode_task
from rq_serviceq.cli._common import CliError, emit_json, failing_as, json_option, name_argument, open_queue, url_option

CHUNK = 8_000  # tasks per push_many call: 8 PUSH calls in one round trip
READ_SIZE = 1 << 16


class BadInput(ValueError):
    """A line that is not a task: the message names the line."""


def detect_format(path: Path) -> str:
    """ "array" when the file holds one JSON array, else "lines".

    A first line that is itself a whole JSON value followed by more lines means
    JSON lines, even if it is a list; ``--format`` settles the rare doubt.
    """
    with path.open(encoding="utf-8") as f:
        first = ""
        for line in f:
            if line.strip():
                first = line.strip()
                break
        if not first.startswith("["):
            return "lines"
        try:
            json.loads(first)
        except ValueError:
            return "array"  # an array spread over lines
        return "lines" if any(line.strip() for line in f) else "array"


def iter_lines(f: IO[str]) -> Iterator[tuple[int, Any]]:
    for number, line in enumerate(f, 1):
        if not line.strip():
            continue
        try:
            yield number, json.loads(line)
        except json.JSONDecodeError as exc:
            raise BadInput(f"line {number}: {exc.msg} (column {exc.colno})") from None
        except RecursionError:
            raise BadInput(f"line {number}: nested too deep to read") from None


def iter_array(f: IO[str]) -> Iterator[tuple[int, Any]]:
    """The elements of one JSON array, decoded one at a time, each with the line it starts on."""
    reader = _ArrayReader(f)
    yield from reader


class _ArrayReader:
    def __init__(self, f: IO[str]) -> None:
        self.f = f
        self.buf = ""
        self.pos = 0
        self.line = 1  # the line self.pos is on
        self.eof = False
        self.decoder = json.JSONDecoder()

    def __iter__(self) -> Iterator[tuple[int, Any]]:
        if self._next_char() != "[":
            raise BadInput(f"line {self.line}: expected '[' to open a JSON array (or give JSON lines)")
        self._advance(1)
        if self._next_char() == "]":
            self._advance(1)
            return self._end()
        while True:
            self._next_char()
            start_line = self.line
            yield start_line, self._value()
            sep = self._next_char()
            if sep == "]":
                self._advance(1)
                return self._end()
            if sep != ",":
                found = "end of input" if sep == "" else repr(sep)
                raise BadInput(f"line {self.line}: expected ',' or ']' after a task, found {found}")
            self._advance(1)

    def _end(self) -> None:
        if self._next_char() != "":
            raise BadInput(f"line {self.line}: unexpected data after the JSON array")

    def _fill(self) -> bool:
        if self.eof:
            return False
        chunk = self.f.read(max(READ_SIZE, len(self.buf) - self.pos))  # doubles for a long value
        if not chunk:
            self.eof = True
            return False
        self.buf = self.buf[self.pos :] + chunk
        self.pos = 0
        return True

    def _next_char(self) -> str:
        """The next character that is not white space, without consuming it ("" at the end)."""
        while True:
            while self.pos < len(self.buf) and self.buf[self.pos] in " \t\r\n":
                self.line += self.buf[self.pos] == "\n"
                self.pos += 1
            if self.pos < len(self.buf):
                return self.buf[self.pos]
            if not self._fill():
                return ""

    def _advance(self, n: int) -> None:
        self.line += self.buf.count("\n", self.pos, self.pos + n)
        self.pos += n

    def _value(self) -> Any:
        while True:
            try:
                value, end = self.decoder.raw_decode(self.buf, self.pos)
            except json.JSONDecodeError as exc:
                cut = exc.pos >= len(self.buf) - 1 or exc.msg.startswith("Unterminated string")
                if cut and self._fill():
                    continue  # the value goes on in the next chunk
                line = self.line + self.buf.count("\n", self.pos, exc.pos)
                raise BadInput(f"line {line}: {exc.msg}") from None
            except RecursionError:
                raise BadInput(f"line {self.line}: nested too deep to read") from None
            if end == len(self.buf) and self._fill():
                continue  # a number cut by the chunk's end ("12" of "123"): read on
            self._advance(end - self.pos)
            return value


def iter_tasks(path: Path, fmt: str) -> Iterator[tuple[int, Any]]:
    with path.open(encoding="utf-8") as f:
        yield from (iter_array(f) if fmt == "array" else iter_lines(f))


def check_all(path: Path, fmt: str, max_bytes: int) -> int:
    """First pass: every task parsed and checked as push would; returns how many there are."""
    count = 0
    for line, task in iter_tasks(path, fmt):
        try:
            encode_task(task, max_bytes)
        except PushError as exc:
            raise BadInput(f"line {line}: {exc}") from None
        count += 1
    return count


@click.command()
@name_argument
@click.argument("source", metavar="FILE|-")
@click.option("--format", "fmt", type=click.Choice(["auto", "array", "lines"]), default="auto", show_default=True,
              help="a JSON array of tasks, or JSON lines (one task per line)")  # fmt: skip
@click.option("--create", is_flag=True, help="create the service queue if it does not exist")
@click.option("--ids", is_flag=True, help="print the new task ids (one per line, or in the JSON)")
@url_option
@json_option
def push(name: str, source: str, fmt: str, create: bool, ids: bool, url: str | None, as_json: bool) -> None:
    """Push tasks from FILE (or standard input, '-'): nothing is pushed unless every task is good."""
    sq = open_queue(name, url, create=create)
    with ExitStack() as stack:
        path = _spooled(source, stack)
        fmt = detect_format(path) if fmt == "auto" else fmt
        try:
            total = check_all(path, fmt, sq.settings.max_task_bytes)
        except (BadInput, UnicodeDecodeError) as exc:
            raise CliError(f"{_label(source)}: {exc}; nothing was pushed") from None
        if total == 0:
            raise CliError(f"{_label(source)}: no tasks found; nothing was pushed")
        task_ids, batch_ids = _push_all(sq, path, fmt, total)
    if as_json:
        out = {"queue": name, "pushed": len(task_ids), "batch_ids": batch_ids}
        emit_json(out | {"task_ids": task_ids} if ids else out)
        return
    click.echo(f"pushed {len(task_ids)} task(s) to {name} (batch {', '.join(batch_ids)})")
    if ids:
        click.echo("\n".join(task_ids))


def _label(source: str) -> str:
    return "standard input" if source == "-" else source


def _spooled(source: str, stack: ExitStack) -> Path:
    """The file to read twice: FILE itself, or standard input copied to a temporary file."""
    if source != "-":
        path = Path(source)
        if not path.is_file():
            raise CliError(f"{source}: no such file")
        return path
    tmp = stack.enter_context(tempfile.NamedTemporaryFile(prefix="rq-serviceq-push-", suffix=".json"))  # noqa: SIM115
    shutil.copyfileobj(sys.stdin.buffer, tmp)
    tmp.flush()
    return Path(tmp.name)


def _push_all(sq: Any, path: Path, fmt: str, total: int) -> tuple[list[str], list[str]]:
    """Second pass: push in chunks, with a progress bar on a terminal; an error says what was written."""
    task_ids: list[str] = []
    batch_ids: list[str] = []
    show = sys.stderr.isatty() and total > CHUNK
    bar_context: Any = click.progressbar(length=total, label="pushing", file=sys.stderr) if show else _NoBar()
    with bar_context as bar:
        chunk: list[Any] = []
        for _, task in iter_tasks(path, fmt):
            chunk.append(task)
            if len(chunk) == CHUNK:
                _push_chunk(sq, chunk, task_ids, batch_ids, total)
                bar.update(len(chunk))
                chunk = []
        if chunk:
            _push_chunk(sq, chunk, task_ids, batch_ids, total)
            bar.update(len(chunk))
    return task_ids, batch_ids


class _NoBar:
    """Stands in for the progress bar when stderr is not a terminal (a log file, a pipe)."""

    def __enter__(self) -> _NoBar:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def update(self, n: int) -> None:
        pass


def _push_chunk(sq: Any, chunk: list[Any], task_ids: list[str], batch_ids: list[str], total: int) -> None:
    done = f"pushed {len(task_ids)} of {total} task(s)" + (f" (batch {', '.join(batch_ids)})" if batch_ids else "")
    with failing_as(f"{done}, then"):
        task_ids += sq.push_many(chunk)
        batch_id = sq.current_batch_id()
    if batch_id and batch_id not in batch_ids:
        batch_ids.append(batch_id)
