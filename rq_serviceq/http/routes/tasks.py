"""A batch's tasks, filtered and paged, and the same as a download (tag ``read``).

The report endpoint pages one outcome's list as it lies; an operator looking
at failures wants them narrowed first: by the remark's directive word
(``RETRY | provider busy`` is RETRY, see ``task/remarks.py``) and by a piece of
remark text.  The filters run here, over ``ServiceQ.iter_tasks``' pages, so a
filtered page scans the outcome's list from its start: cheap for the
thousands of failures a campaign has, linear in the list for a deep page of a
huge one.  The export streams every match a page of tasks at a time, so a
million-task batch is never held in memory.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from itertools import islice
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel

from rq_serviceq.http.routes.common import ERRORS, MAX_OFFSET, BatchId, Name, checked, service, with_queue
from rq_serviceq.http.routes.read import resolve_batch
from rq_serviceq.models import QTask
from rq_serviceq.serviceq import ServiceQ
from rq_serviceq.task.remarks import Directive, parse_directive

router = APIRouter(responses=ERRORS)

OUTCOMES = ("failed", "passed")
NO_DIRECTIVE = "none"  # remarks without a directive word this library knows
DIRECTIVES = (*(d.value for d in Directive), NO_DIRECTIVE)
EXPORT_PAGE = 500  # tasks per Redis round trip, and per chunk written to the client
CSV_FIELDS = ("outcome", "task_id", "remark", "directive", "total_retry_attempts", "last_retry_timestamp", "task")
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")  # what a spreadsheet would run or read as a formula

OutcomeParam = Annotated[Literal["failed", "passed"], Query(description="which list: failed (default) or passed")]
TextParam = Annotated[str, Query(max_length=1000)]


class TaskPage(BaseModel):
    """One page of a batch's matching tasks; ``next_offset`` is null on the last page."""

    tasks: list[QTask]
    outcome: str
    offset: int
    limit: int
    next_offset: int | None


@dataclass(frozen=True)
class Filter:
    """Which tasks a listing keeps: ``directive`` (a Directive's value or 'none') and remark text."""

    directive: str | None = None
    remark: str = ""

    def keeps(self, task: QTask) -> bool:
        if self.directive is not None and directive_of(task.remark) != self.directive:
            return False
        return self.remark.casefold() in task.remark.casefold()

    @property
    def empty(self) -> bool:
        return self.directive is None and not self.remark


def directive_of(remark: str) -> str:
    found = parse_directive(remark)
    return found.value if found is not None else NO_DIRECTIVE


def task_filter(directive: str, remark: str) -> Filter:
    """The filter the query asks for; a directive we do not know is a 422 naming the ones we do."""
    wanted = directive.strip()
    if not wanted:
        return Filter(None, remark)
    normal = NO_DIRECTIVE if wanted.lower() == NO_DIRECTIVE else "_".join(wanted.replace("-", " ").split()).upper()
    if normal not in DIRECTIVES:
        raise HTTPException(422, f"directive: must be one of {', '.join(DIRECTIVES)} (or empty), not {directive!r}")
    return Filter(normal, remark)


def matching(sq: ServiceQ, batch_id: str, outcome: str, keep: Filter, start: int = 0) -> Iterator[QTask]:
    """The outcome's tasks that ``keep`` keeps, from the ``start``-th of them (unfiltered, Redis skips to it;
    filtered, the list is read from its first task)."""
    if keep.empty:
        return sq.iter_tasks(batch_id, outcome, EXPORT_PAGE, start)
    return islice(filter(keep.keeps, sq.iter_tasks(batch_id, outcome, EXPORT_PAGE, 0)), start, None)


def known_batch(sq: ServiceQ, batch_id: str) -> str:
    """The batch's id (``latest`` resolved); an unknown batch is a 404, not an empty page or download."""
    bid = resolve_batch(sq, batch_id)
    sq.get_batch_summary(bid)
    return bid


@router.get("/serviceqs/{name}/batches/{batch_id}/tasks", tags=["read"])
async def list_tasks(
    name: Name,
    batch_id: BatchId,
    request: Request,
    outcome: OutcomeParam = "failed",
    directive: TextParam = "",
    remark: TextParam = "",
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET, description="matching tasks to skip")] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> TaskPage:
    """Every task of one outcome, paged, narrowed by ``directive`` (SUCCESS, RETRY, NO_RETRY or none) and a
    case-insensitive piece of ``remark``; ``offset`` counts matching tasks, in completion order."""
    name = checked(name)
    keep = task_filter(directive, remark)
    svc = service(request)

    def read(sq: ServiceQ) -> TaskPage:
        found = matching(sq, known_batch(sq, batch_id), outcome, keep, offset)
        got = list(islice(found, limit + 1))  # one more: is there a next page
        more = len(got) > limit
        return TaskPage(
            tasks=got[:limit], outcome=outcome, offset=offset, limit=limit, next_offset=offset + limit if more else None
        )

    page: TaskPage = await svc.run(with_queue, svc, name, read)
    return page


@router.get(
    "/serviceqs/{name}/batches/{batch_id}/tasks/export",
    tags=["read"],
    response_class=StreamingResponse,
    responses={200: {"content": {"text/csv": {}, "application/x-ndjson": {}}, "description": "the matching tasks"}},
)
async def export_tasks(
    name: Name,
    batch_id: BatchId,
    request: Request,
    fmt: Annotated[Literal["csv", "jsonl"], Query(alias="format", description="csv or jsonl")] = "csv",
    outcome: Annotated[str, Query(description="failed, passed, or empty for both (failed first)")] = "",
    directive: TextParam = "",
    remark: TextParam = "",
) -> StreamingResponse:
    """Every matching task as a download: CSV (cells a spreadsheet would run as a formula are quoted with a
    leading ``'``) or JSON lines, one task per line with its ``outcome`` and ``directive``."""
    name = checked(name)
    if outcome not in ("", *OUTCOMES):
        raise HTTPException(422, f"outcome: must be failed, passed or empty (both), not {outcome!r}")
    keep = task_filter(directive, remark)
    svc = service(request)
    sq, bid = await svc.run(with_queue, svc, name, lambda sq: (sq, known_batch(sq, batch_id)))
    lists = [outcome] if outcome else list(OUTCOMES)
    writer = _csv_rows if fmt == "csv" else _json_lines
    filename = f"{name}-{bid}-{outcome or 'tasks'}.{fmt}"
    media = "text/csv; charset=utf-8" if fmt == "csv" else "application/x-ndjson"

    async def body() -> AsyncIterator[str]:
        if fmt == "csv":
            yield _csv_line(CSV_FIELDS)
        for which in lists:
            tasks = matching(sq, bid, which, keep)
            while chunk := await svc.run(_next_chunk, tasks):
                yield "".join(writer(which, chunk))

    headers = {"Content-Disposition": f'attachment; filename="{filename}"', "Cache-Control": "no-store"}
    return StreamingResponse(body(), media_type=media, headers=headers)


def _next_chunk(tasks: Iterator[QTask]) -> list[QTask]:
    return list(islice(tasks, EXPORT_PAGE))


def _json_lines(outcome: str, tasks: list[QTask]) -> Iterator[str]:
    for task in tasks:
        row = {"outcome": outcome, "directive": directive_of(task.remark)} | task.model_dump(mode="json")
        yield json.dumps(row, ensure_ascii=False, separators=(",", ":")) + "\n"


def _csv_rows(outcome: str, tasks: list[QTask]) -> Iterator[str]:
    for task in tasks:
        stamp = "" if task.last_retry_timestamp is None else repr(task.last_retry_timestamp)
        task_json = json.dumps(task.task, ensure_ascii=False, separators=(",", ":"))
        cells = (outcome, task.task_id, task.remark, directive_of(task.remark), task.total_retry_attempts, stamp)
        yield _csv_line((*cells, task_json))


def _csv_line(cells: tuple[Any, ...]) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="\r\n").writerow([safe_cell(str(c)) for c in cells])
    return out.getvalue()


def safe_cell(value: str) -> str:
    """A cell a spreadsheet shows as text: one that starts like a formula (``=cmd|...``, ``+1``, ``@SUM``, a
    tab or CR) gets a leading ``'``, OWASP's advice for CSV injection; the rest is left exactly as it was."""
    return "'" + value if value.startswith(FORMULA_STARTS) else value
