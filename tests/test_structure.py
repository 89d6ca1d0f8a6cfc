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


# The outer layers read through the facade (docs/architecture.md): keys are built in store/keys.py and read in
# the inner layers, so a key or field renamed there cannot leave a surface reading the old one.
OUTER = sorted([*(PACKAGE / "cli").glob("*.py"), *(PACKAGE / "contrib").rglob("*.py"), PACKAGE / "metrics.py"])


def _key_reaching(path: Path) -> list[str]:
    """Where ``path`` imports store.keys or store.state, or touches ``.keys`` (``x.keys()`` is a dict's)."""
    tree = ast.parse(path.read_text())
    called = {id(node.func) for node in ast.walk(tree) if isinstance(node, ast.Call)}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            module = node.module or ""
            names = {f"{module}.{alias.name}" for alias in node.names} | {module}
        elif isinstance(node, ast.Import):
            names = {alias.name for alias in node.names}
        elif isinstance(node, ast.Attribute) and node.attr == "keys" and id(node) not in called:
            found.append(f"{path.name}:{node.lineno} .keys")
            continue
        else:
            continue
        if names & {"rq_serviceq.store.keys", "rq_serviceq.store.state"}:
            found.append(f"{path.name}:{node.lineno} imports {sorted(names)}")
    return found


def test_the_cli_contrib_and_metrics_never_build_keys() -> None:
    assert OUTER and [where for path in OUTER for where in _key_reaching(path)] == []


def test_the_key_rule_catches_what_it_forbids(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text(
        "from rq_serviceq.store import keys as k\nimport rq_serviceq.store.state\nx = sq.keys.retry\n{}.keys()\n"
    )
    assert len(_key_reaching(sample)) == 3
