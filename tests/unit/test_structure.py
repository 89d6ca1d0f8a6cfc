"""The shape the code promises: every Lua script states its contract, reads exactly what it declares, and
has one typed wrapper taking exactly that; one domain layer runs the wrappers."""

from __future__ import annotations

import ast
import dataclasses
import inspect
import re
from pathlib import Path

import pytest
from redis import Redis

from rq_serviceq.store import keys as k
from rq_serviceq.store import scripts

PACKAGE = Path(scripts.__file__).parent.parent
LUA_DIR = PACKAGE / "store" / "lua"
LUA = sorted(LUA_DIR.glob("*.lua"))
INCLUDES = sorted((LUA_DIR / "includes").glob("*.lua"))
CONTEXT_PARAMETERS = {*scripts.GIVEN, "keys", "rules"}  # a wrapper's other parameters are the script's own ARGV


def _code(lua: str) -> str:
    """Lua without its comments: a name a comment mentions is not read."""
    return re.sub(r"--.*", "", lua)


def _reads(name: str) -> set[str]:
    """The ``k.<name>`` a script and the helpers it includes read (``k.now`` is every script's)."""
    texts = [scripts.script_text(name), *(scripts.include_text(i) for i in scripts.contract(name).includes)]
    return {m for text in texts for m in re.findall(r"\bk\.(\w+)", _code(text))} - {"now"}


def test_every_script_opens_with_its_contract_and_has_one_typed_wrapper() -> None:
    assert LUA, "no scripts found"
    assert scripts.names() == [p.stem for p in LUA]
    for path in LUA:
        lines = path.read_text().splitlines()
        assert lines[0].startswith("-- KEYS:") and lines[1].startswith("-- ARGV:"), path.name
        assert "Returns" in path.read_text(), f"{path.name} does not say what it returns"
        wrapper = getattr(scripts, path.stem, None)
        assert inspect.isfunction(wrapper), f"{path.stem}.lua has no wrapper scripts.{path.stem}()"
        returned = inspect.get_annotations(wrapper, eval_str=True)["return"]
        reply = returned.__args__[0] if getattr(returned, "__origin__", None) is list else returned
        assert dataclasses.is_dataclass(reply), f"scripts.{path.stem}() returns {returned}, not a dataclass"


def test_every_script_reads_exactly_what_its_header_declares() -> None:
    for path in LUA:
        c = scripts.contract(path.stem)
        declared, read = {*c.keys, *c.args}, _reads(path.stem)
        assert read <= declared, f"{path.name} (with its includes) reads {read - declared}, not declared"
        assert declared <= read, f"{path.name} declares {declared - read}, which nothing reads"


def test_every_include_is_used_and_includes_resolve() -> None:
    used = {i for path in LUA for i in scripts.contract(path.stem).includes}
    assert used == {p.stem for p in INCLUDES}
    for path in LUA:  # each once, every helper after the helpers it includes
        order = scripts.contract(path.stem).includes
        assert len(order) == len(set(order)), path.name
        for i, name in enumerate(order):
            assert set(scripts.contract(path.stem).includes[:i]) >= set(
                re.findall(r'^--- @include "(\w+)"$', scripts.include_text(name), re.M)
            ), f"{path.name}: {name} comes before what it includes"


def test_each_wrapper_takes_exactly_what_its_script_reads_as_required_parameters() -> None:
    """A caller that leaves out a value (``ttl``: a task scored 168 h ahead in RQ's registry) is a type error,
    and none is handed a value its script never reads."""
    for path in LUA:
        parameters = inspect.signature(getattr(scripts, path.stem)).parameters
        context = {name for name in parameters if name in CONTEXT_PARAMETERS}
        if "ending" in parameters:  # what every script that ends tasks reads, as one parameter
            context |= {f.name for f in dataclasses.fields(scripts.Ending)}
        assert context == {"keys", *scripts.contract(path.stem).given()}, path.stem
        assert all(p.default is inspect.Parameter.empty for p in parameters.values()), path.stem


def test_only_the_wrappers_run_scripts() -> None:
    callers = [
        f"{path.relative_to(PACKAGE)}:{n}"
        for path in PACKAGE.rglob("*.py")
        if path.name != "scripts.py"
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if re.search(r"scripts\._?run\(", line)
    ]
    assert callers == []


# The domain layer: the one entrance to the transitions (as Dramatiq's ``brokers/redis.py:_dispatch``).  Every
# other module calls these modules' functions, never ``scripts.*``.
DOMAIN = {
    "batch/push.py",
    "batch/ledger.py",
    "batch/reads.py",
    "worker/claim.py",
    "worker/control.py",
    "worker/reconcile.py",
}
# ``rq-serviceq script`` prints a script's source for producers in other languages; it runs none.
SOURCE_PRINTERS = {"cli/run.py"}


def _imports(path: Path) -> set[str]:
    """Every module (and ``module.name``) a file imports, wherever in the file."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def test_only_the_domain_layer_imports_the_scripts() -> None:
    importers = {
        str(path.relative_to(PACKAGE)) for path in PACKAGE.rglob("*.py") if path.name != "scripts.py"
        if "rq_serviceq.store.scripts" in _imports(path)
    }  # fmt: skip
    assert importers - SOURCE_PRINTERS == DOMAIN


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


def test_every_script_as_built_loads_into_redis_and_unpacks_only_its_contract(conn: Redis) -> None:
    """Each script's source, helpers included, compiles; its ``k`` holds the declared names and ``now`` only."""
    for path in LUA:
        c = scripts.contract(path.stem)
        source = scripts.source(path.stem)
        assert conn.script_load(source)
        prologue = source[: source.index("local A = ")]
        # ``stamp`` (RQ's date format) is Redis' clock, not its ARGV slot, which stays for producers' layout
        unpacked = re.findall(r"(\w+) = (?:tonumber\()?(?:KEYS\[|ARGV\[|_iso\(tonumber\(t)", prologue)
        assert set(unpacked) == {*c.keys, *c.args}, path.name
        assert source.count("local function end_task(") <= 1, path.name  # an include comes once


def test_a_call_given_more_or_less_than_its_script_reads_is_refused() -> None:
    keys = k.Keys("drag")
    assert scripts.layout("push", keys, finalize_lease=0)[1][-1] == 0
    with pytest.raises(TypeError, match="takes"):
        scripts.layout("push", keys, finalize_lease=0, ttl=3600)  # PUSH reads no ttl
    with pytest.raises(TypeError, match="takes"):
        scripts.layout("claim", keys, worker_name="w", lease=15, finalize_lease=15, rules=None)  # no ttl


# The HTTP layer sits on the library's facade (``ServiceQ`` and what ``serviceq.py`` exports), never on the data
# path's internals: it builds no key and runs no script, so the store, batch and worker code can change under it.
INTERNALS = ("rq_serviceq.store", "rq_serviceq.batch", "rq_serviceq.worker")
# Outage is the one piece every long-running process shares (workers, supervisors, watch, the metrics exporter,
# the web process): how a Redis outage is noted and logged, one line each way.  It builds no service queue's
# keys, and the facade has no outage of its own to hand out (a ServiceQ is a handle, not a process).  Nor
# has it a pool: store/connection.py is the one place Redis is found (a URL, a Sentinel URL), builds no key.
HTTP_MAY_IMPORT = {"rq_serviceq.store.outage", "rq_serviceq.store.connection"}


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


def test_the_pages_scripts_write_text_never_html() -> None:
    """Task data, remarks, worker names and feed entries are user data (anyone who can write to Redis
    shapes them): the console's scripts put them in the page as text, never parsed as HTML."""
    assets = PACKAGE / "http" / "ui" / "assets"
    scripts_found = sorted(assets.glob("*.js"))
    assert scripts_found, "the pages' scripts moved"
    html_sinks = re.compile(r"innerHTML|outerHTML|insertAdjacentHTML|document\.write|\beval\(|new Function\(")
    for path in scripts_found:
        hits = [n for n, line in enumerate(path.read_text().splitlines(), 1) if html_sinks.search(line)]
        assert not hits, f"{path.name} lines {hits} write HTML"
