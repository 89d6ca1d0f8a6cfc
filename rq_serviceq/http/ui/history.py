"""The queue page's batch history as a picture: duration, size and failure ratio of the last batches."""

from __future__ import annotations

import html
from collections.abc import Callable
from typing import Any

from rq_serviceq.http.ui.markup import num as _num


def _duration(batch: dict[str, Any]) -> float:
    return float(batch["batch_duration"] or 0.0)  # a running batch has none yet: a flat bar


def _size(batch: dict[str, Any]) -> float:
    return float(batch["total_submitted"])


def _failure_ratio(batch: dict[str, Any]) -> float:
    ended = batch["total_success"] + batch["total_failed"]
    return batch["total_failed"] / ended if ended else 0.0


HISTORY_ROWS: tuple[tuple[str, str, Callable[[dict[str, Any]], float], str], ...] = (
    ("hist-duration", "duration", _duration, " s"),  # (class, label, a batch's value, unit)
    ("hist-size", "size", _size, " tasks"),
    ("hist-failed", "failure ratio", _failure_ratio, ""),
)


def history_svg(name: str, batches: list[dict[str, Any]]) -> str:
    """The batch history (newest first, as ``sq.batches`` gives it) as an inline SVG, oldest on the left:
    one bar per batch in each of three rows (duration, size, failure ratio), each a link to its batch page
    with a tooltip.  Drawn here, every text escaped: no script, no library, nothing fetched."""
    if not batches:
        return "<p class='muted'>No batch yet.</p>"
    ordered = list(reversed(batches))
    step, row_h, left = min(24.0, 640.0 / len(ordered)), 50, 170
    width, height = left + step * len(ordered), 3 * (row_h + 14)
    parts = [
        f"<svg id='history' class='hist' role='img' width='{width:.0f}' height='{height}' "
        f"viewBox='0 0 {width:.0f} {height}' xmlns='http://www.w3.org/2000/svg'>"
    ]
    for row, (cls, label, value, unit) in enumerate(HISTORY_ROWS):
        top = row * (row_h + 14)
        values = [value(b) for b in ordered]
        peak = 1.0 if cls == "hist-failed" else max(max(values), 1e-9)
        shown = "0-100%" if cls == "hist-failed" else f"max {peak:g}{unit}"
        parts.append(f"<text x='0' y='{top + row_h - 4}' font-size='12'>{label} ({html.escape(shown)})</text>")
        parts.append(f"<line x1='{left}' y1='{top + row_h}' x2='{width:.0f}' y2='{top + row_h}' stroke='#999'/>")
        for i, (b, v) in enumerate(zip(ordered, values, strict=True)):
            h = max(1.0, row_h * v / peak)
            tip = (
                f"{b['batch_id']} ({b['status']}): {_num(b['batch_duration']) or '-'} s, {b['total_submitted']} tasks, "
            )
            tip += f"{b['total_failed']} failed ({100 * _failure_ratio(b):.0f}%)"
            href = f"{html.escape(name)}/batches/{html.escape(b['batch_id'])}"
            parts.append(
                f"<a href='{href}'><rect class='{cls}' data-batch='{html.escape(b['batch_id'])}' "
                f"x='{left + i * step + 1:.1f}' y='{top + row_h - h:.1f}' width='{max(step - 2, 1):.1f}' "
                f"height='{h:.1f}'><title>{html.escape(tip)}</title></rect></a>"
            )
    parts.append("</svg>")
    return "".join(parts)
