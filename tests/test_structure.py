"""The shape the code promises: every Lua script states its contract and has one typed wrapper."""

from __future__ import annotations

import dataclasses
import inspect
import re
from pathlib import Path

from rq_serviceq import scripts

PACKAGE = Path(scripts.__file__).parent
LUA = sorted(p for p in (PACKAGE / "lua").glob("*.lua") if p.name != "_lib.lua")


def test_every_script_opens_with_its_contract_and_has_one_typed_wrapper() -> None:
    assert LUA, "no scripts found"
    for path in LUA:
        head = path.read_text().split("\n\n")[0]
        assert head.startswith("-- KEYS, ARGV[1..A-1]: the service queue's context"), path.name
        assert "Returns" in path.read_text(), f"{path.name} does not say what it returns"
        wrapper = getattr(scripts, path.stem, None)
        assert inspect.isfunction(wrapper), f"{path.stem}.lua has no wrapper scripts.{path.stem}()"
        returned = inspect.get_annotations(wrapper, eval_str=True)["return"]
        reply = returned.__args__[0] if getattr(returned, "__origin__", None) is list else returned
        assert dataclasses.is_dataclass(reply), f"scripts.{path.stem}() returns {returned}, not a dataclass"


def test_only_the_wrappers_run_scripts() -> None:
    callers = [
        f"{path.relative_to(PACKAGE)}:{n}"
        for path in PACKAGE.rglob("*.py")
        if path.name != "scripts.py"
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if re.search(r"scripts\._?run\(", line)
    ]
    assert callers == []
