"""Task functions and callbacks, stored by import path.

Workers run in other processes, often on other machines, so a function is
kept in Redis as ``"package.module.function"`` and imported where it runs.
A callback that raises is logged and never takes a worker down: the batch
and its tasks matter more than one hook.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
import time
from collections.abc import Callable
from functools import lru_cache
from types import ModuleType
from typing import Any

from rq_serviceq.task.timeouts import time_limit

logger = logging.getLogger("rq_serviceq")


def import_path_of(func: Callable[..., Any] | str) -> str:
    """The import path of a module-level callable, checked to import back to it.

    Lambdas, nested functions and functions of a script run as ``__main__``
    cannot be imported by a worker process, so they are refused here with a
    message that says what to do rather than failing later in every worker.
    A path ``resolve`` would refuse (``RefusedPath``) or cannot find
    (``UnresolvablePath``) raises here too, before a setter writes it to Redis.
    """
    if isinstance(func, str):
        resolve(func)
        return func
    if not callable(func):
        raise TypeError(f"expected a function or an import path string, got {func!r}")
    module = getattr(func, "__module__", None)
    qualname = getattr(func, "__qualname__", None)
    if not module or not qualname or "<" in qualname:
        raise ValueError(
            f"{func!r} is not importable: pass a function defined at the top level of a module "
            "(not a lambda or a nested function), so that worker processes can import it"
        )
    if module == "__main__":
        spec = getattr(sys.modules["__main__"], "__spec__", None)
        if spec is None or not spec.name or spec.name == "__main__":
            raise ValueError(
                f"{qualname} is defined in the script being run (__main__), which worker processes "
                "cannot import: move it into a module, or run the script with `python -m package.module`"
            )
        module = spec.name
    path = f"{module}.{qualname}"
    found = resolve(path)
    # Under `python -m pkg.mod` the function lives in __main__, a twin of pkg.mod: same name is enough.
    if found is not func and getattr(found, "__qualname__", None) != qualname:
        raise ValueError(f"{path} does not import back to {func!r}")
    return path


ALLOWED_ENV = "RQ_SERVICEQ_ALLOWED_MODULES"
# Without an allow-list no path may reach into these: anything in the standard library can run code
# given the right argument (os.system, timeit.timeit, pickle.loads, ...), and rq, redis and rq-serviceq
# internals can rewrite the queues; pip and setuptools, in nearly every environment, install and run
# whatever they are pointed at.  A path names a user's own package, or nothing.
_TOOLING = {"pip", "setuptools", "pkg_resources", "_distutils_hack", "wheel"}
_REFUSED_PACKAGES = frozenset(
    sys.stdlib_module_names | set(sys.builtin_module_names) | {"rq", "redis", "rq_serviceq"} | _TOOLING
)
# ... except the demo's task function and callback, which `python -m rq_serviceq.demo` runs with no set-up.
# Exactly these two: the demo's run() and main() start workers against any Redis URL they are given.
_DEMO_PATHS = frozenset({"rq_serviceq.demo.send_message", "rq_serviceq.demo.print_report"})
_DEMO_NAMES = _DEMO_PATHS | {p.rpartition(".")[0] for p in _DEMO_PATHS}  # the paths, and the module to import
_SHAPE = "name a function as 'package.module.function' or 'package.module.Class.method'"


class RefusedPath(PermissionError):
    """A path the policy of the process that would run it does not allow: never imported, never called."""


class UnresolvablePath(ImportError):
    """A path whose module or attribute is not there: a typo, or code not deployed where it runs."""


def _under(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def allowed_prefixes() -> list[str]:
    """The operator's allow-list, from the environment of this process: Redis is the trust boundary."""
    entries = (p.strip().rstrip(".") for p in os.environ.get(ALLOWED_ENV, "").split(","))
    return [p for p in entries if p]


def check_allowed(name: str) -> None:
    """Refuse a module (or a path, by its text) outside the allow-list, or, with none set, in the standard
    library, rq, redis, rq-serviceq (but the demo's two functions) or the installers.  Checked before
    importing: importing runs a module's top level.

    The text alone proves little ("myapp.tasks.os.system" starts with "myapp.tasks"): ``resolve`` also
    checks where the object it reaches was defined.
    """
    allowed = allowed_prefixes()
    if allowed:
        if not any(_under(name, p) for p in allowed):
            raise RefusedPath(
                f"{name!r} is not under the modules allowed by {ALLOWED_ENV} ({', '.join(allowed)}): "
                f"add its module to {ALLOWED_ENV} in the environment of every worker and producer"
            )
    elif (top := name.split(".")[0]) in _REFUSED_PACKAGES and name not in _DEMO_NAMES:
        where = "the standard library" if top in sys.stdlib_module_names else top
        raise RefusedPath(
            f"{name!r} is in {where}, which no path may name unless {ALLOWED_ENV} lists it: "
            f"name a function of your own package (and set {ALLOWED_ENV} to that package's modules)"
        )


@lru_cache(maxsize=256)
def resolve(path: str) -> Callable[..., Any]:
    """The function or class a path names, once the policy allows everything about it.

    Resolution walks attributes, so what is checked is what the walk reaches: the module it starts from
    must be allowed before it is imported, and the object reached must be defined in that module under
    exactly the path's name.  An import, an alias, a partial or a builtin reached through an allowed module
    is refused, as is anything a policy-free walk could reach through ``__dunder__`` attributes.
    """
    parts = _parts(path)
    check_allowed(path)
    module, names = _import_module(path, parts)
    found = _walk(path, module, names)
    _check_defined_there(path, module, names, found)
    return found  # type: ignore[no-any-return]  # callable: _check_defined_there made sure


def _parts(path: str) -> list[str]:
    """Refuse empty parts (importlib reads them as relative imports), non-identifiers and any part
    starting with ``__`` (``__builtins__``, ``__globals__``, ``__init__``, ``__import__``...)."""
    parts = path.split(".") if isinstance(path, str) else []
    if len(parts) < 2 or not all(p.isidentifier() and not p.startswith("__") for p in parts):
        raise RefusedPath(f"{path!r} is not a path rq-serviceq runs: {_SHAPE}, with no part empty or starting '__'")
    return parts


def _import_module(path: str, parts: list[str]) -> tuple[ModuleType, list[str]]:
    """The longest allowed prefix of the path that is a module, imported, and the names after it."""
    refusal: RefusedPath | None = None
    for cut in range(len(parts) - 1, 0, -1):
        name = ".".join(parts[:cut])
        try:
            check_allowed(name)
        except RefusedPath as exc:
            refusal = refusal or exc
            continue
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name and _under(name, exc.name):  # no such module: maybe a shorter prefix is one
                continue
            raise UnresolvablePath(f"cannot import {path!r}: importing {name} failed: {exc}") from exc
        except Exception as exc:
            raise UnresolvablePath(f"cannot import {path!r}: importing {name} failed: {exc!r}") from exc
        if not isinstance(module, ModuleType) or module.__name__ != name:  # sys.modules entry replaced
            raise RefusedPath(f"{path!r}: sys.modules[{name!r}] is {module!r}, not the module {name}")
        return module, parts[cut:]
    if refusal is not None:
        raise refusal
    raise UnresolvablePath(f"cannot import {path!r}: no module {parts[0]!r} found on this process's sys.path")


def _walk(path: str, module: ModuleType, names: list[str]) -> Any:
    """Follow the names from the module, through classes only: an instance's attribute may be a
    property whose getter runs, and a module's attribute may be another module."""
    found: Any = module
    for i, name in enumerate(names):
        if i and not isinstance(found, type):
            raise RefusedPath(f"{path!r} goes through {_what(found)}, not a class: {_SHAPE}")
        try:
            found = getattr(found, name)
        except AttributeError:
            missing = ".".join(names[: i + 1])
            raise UnresolvablePath(f"cannot import {path!r}: module {module.__name__} has no {missing!r}") from None
    return found


def _check_defined_there(path: str, module: ModuleType, names: list[str], found: Any) -> None:
    """Refuse what the module merely holds: its ``__module__`` and ``__qualname__`` must be the path's."""
    qualname = ".".join(names)
    if (
        isinstance(found, ModuleType)
        or getattr(found, "__module__", None) != module.__name__
        or getattr(found, "__qualname__", None) != qualname
    ):
        raise RefusedPath(
            f"{path!r} reaches {_what(found)}, not a function or class defined as {qualname} in {module.__name__}: "
            "name a function by the module and name it is defined under, not where it is imported or aliased"
        )
    if not callable(found):
        raise RefusedPath(f"{path!r} reaches {_what(found)}, which is not callable: {_SHAPE}")


def _what(obj: Any) -> str:
    if isinstance(obj, ModuleType):
        return f"the module {obj.__name__}"
    qualname = getattr(obj, "__qualname__", None)
    if isinstance(qualname, str):
        return f"{getattr(obj, '__module__', None)}.{qualname}"
    return f"a {type(obj).__module__}.{type(obj).__qualname__} object"


def call_hook(
    path: str | None, *args: Any, what: str, attempts: int = 1, timeout: float | None = None, pause: float = 0.5
) -> str | None:
    """Run a callback by path: log and swallow what it raises, trying up to ``attempts`` times.

    Returns None when it ran (or there is none), else the last error as text,
    so that the caller can record it where an operator will look.
    """
    if not path:
        return None
    error = ""
    for attempt in range(1, attempts + 1):
        try:
            func = resolve(path)
            with time_limit(timeout):
                func(*args)
            return None
        except RefusedPath as exc:  # the policy will not change between attempts
            logger.error("%s %s refused: %s", what, path, exc)
            return f"{type(exc).__name__}: {exc}"
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
            logger.exception("%s %s raised (attempt %d of %d)", what, path, attempt, attempts)
            if attempt < attempts:
                time.sleep(pause * attempt)
    return error
