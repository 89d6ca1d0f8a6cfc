"""A module no refused path may import: importing it runs its top level, which leaves a mark in Redis."""

from __future__ import annotations

from tests.elsewhere import mark

mark("tests.never_imported imported")


def run(task: object) -> bool:
    return mark("tests.never_imported.run", task)
