"""The shape the code promises: every Lua script states its contract and has one typed wrapper."""

from __future__ import annotations

import ast
import dataclasses
import inspect
import re
from pathlib import Path

from rq_serviceq.store import scripts

PACKAGE = Path(scripts.__file__).parent.parent
LUA_DIR = PACKAGE / "store" / "lua"
LUA = sorted(p for p in LUA_DIR.glob("*.lua") if p.name != "_lib.lua")


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


def test_the_scripts_context_has_no_defaults() -> None:
    """A caller that leaves out a field (``ttl``: a task scored 168 h ahead in RQ's registry) is a type error."""
    assert all(f.default is dataclasses.MISSING for f in dataclasses.fields(scripts.Context))


# What the wrappers built on ``scripts._bare`` take besides the keys: everything else they read is zero.
BARE = {
    "extend_leases": {"lease"},
    "reclaim": {"worker_name"},
    "leave": {"worker_name"},
    "set_status": set(),
    "stop": set(),
    "finish": set(),
}
TASK_ENDING = ("end_task", "count_end", "settle_one", "take_over", "record_result", "open_or_join", "retry_config")


def test_scripts_without_a_full_context_read_only_what_their_wrappers_take() -> None:
    assert set(BARE) == {p.stem for p in LUA} - scripts.RULED - {"push"}
    for name, takes in BARE.items():
        lua = (LUA_DIR / f"{name}.lua").read_text()
        read = {
            field for field in ("ttl", "lease", "finalize_lease", "worker_name") if re.search(rf"\bk\.{field}\b", lua)
        }
        assert read <= takes, f"{name}.lua reads {read - takes}, which its wrapper is not given"
        assert not [step for step in TASK_ENDING if step in lua], f"{name}.lua calls a step that reads the rules"


# The data path reads off the folder names (docs/architecture.md, "Layout"): the top level keeps the facade
# and what users import by name; everything else lives in the sub-package of the step it serves.
TOP_LEVEL = {"__init__", "__main__", "serviceq", "models", "job", "configure", "log", "metrics", "testing", "demo"}
SUB_PACKAGES = {"store", "batch", "worker", "task", "http", "cli", "contrib"}


def test_the_top_level_holds_only_the_facade_and_what_users_import() -> None:
    assert {p.stem for p in PACKAGE.glob("*.py")} == TOP_LEVEL
    packages = {p.parent.name for p in PACKAGE.glob("*/__init__.py")}
    assert packages == SUB_PACKAGES
    for name in SUB_PACKAGES:
        assert ast.get_docstring(ast.parse((PACKAGE / name / "__init__.py").read_text())), f"{name}/ says not why"


# The HTTP layer sits on the library's facade (``ServiceQ`` and what ``serviceq.py`` exports), never on the data
# path's internals: it builds no key and runs no script, so the store, batch and worker code can change under it.
INTERNALS = ("rq_serviceq.store", "rq_serviceq.batch", "rq_serviceq.worker")
# Outage is the one piece every long-running process shares (workers, supervisors, watch, the metrics exporter,
# the web process): how a Redis outage is noted and logged, one line each way.  It builds no service queue's
# keys, and the facade has no outage of its own to hand out (a ServiceQ is a handle, not a process).
HTTP_MAY_IMPORT = {"rq_serviceq.store.outage"}


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def test_the_http_layer_imports_only_the_facade() -> None:
    http = sorted((PACKAGE / "http").rglob("*.py"))
    assert len(http) > 10, "no http modules found"
    reached = {
        f"{path.relative_to(PACKAGE)}: {name}"
        for path in http
        for name in _imports(path)
        if name.startswith(INTERNALS) and name not in HTTP_MAY_IMPORT and not _within(name, HTTP_MAY_IMPORT)
    }
    assert reached == set()


def _within(name: str, modules: set[str]) -> bool:
    """``from rq_serviceq.store.outage import Outage`` names ``rq_serviceq.store.outage.Outage``: inside it."""
    return any(name.startswith(module + ".") for module in modules)
