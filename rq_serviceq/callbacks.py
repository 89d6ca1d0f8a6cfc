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
from typing import Any

from .timeouts import time_limit

logger = logging.getLogger("rq_serviceq")


def import_path_of(func: Callable[..., Any] | str) -> str:
    """The import path of a module-level callable, checked to import back to it.

    Lambdas, nested functions and functions of a script run as ``__main__``
    cannot be imported by a worker process, so they are refused here with a
    message that says what to do rather than failing later in every worker.
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
# Without an allow-list, at least these never run: anyone who can write to Redis could otherwise
# make a worker call os.system, subprocess.run, pickle.loads and the like by path.
_NEVER = frozenset(
    {
        "builtins",
        "os",
        "posix",
        "nt",
        "sys",
        "subprocess",
        "shutil",
        "importlib",
        "pickle",
        "marshal",
        "shelve",
        "ctypes",
        "socket",
        "pty",
        "code",
        "codeop",
        "runpy",
        "multiprocessing",
        "signal",
        "io",
        "pathlib",
        "tempfile",
        "threading",
        "asyncio",
        "webbrowser",
        "http",
        "urllib",
        "ftplib",
        "smtplib",
        "telnetlib",
        "xmlrpc",
        "pdb",
        "rq",
        "redis",
    }
)


def check_allowed(path: str) -> None:
    """Refuse a path outside the operator's allow-list (``RQ_SERVICEQ_ALLOWED_MODULES``, comma-separated
    module prefixes, read where the function runs), or in a known-dangerous module when no list is set.

    Redis is the trust boundary: the allow-list is taken from the worker's environment, never from Redis.
    """
    allowed = [p.strip().rstrip(".") for p in os.environ.get(ALLOWED_ENV, "").split(",") if p.strip()]
    if allowed:
        if not any(path == p or path.startswith(p + ".") for p in allowed):
            raise PermissionError(f"{path!r} is not under the modules allowed by {ALLOWED_ENV} ({', '.join(allowed)})")
    elif path.split(".")[0] in _NEVER:
        raise PermissionError(f"{path!r} is in a module rq-serviceq never imports callbacks from")


@lru_cache(maxsize=256)
def resolve(path: str) -> Callable[..., Any]:
    """Import ``package.module.attr[.attr]`` and return the callable (if the operator allows it)."""
    check_allowed(path)
    module_name, _, attr = path.rpartition(".")
    obj: Any = None
    # Walk back from the longest module prefix so that "pkg.mod.Class.method" works too.
    parts = path.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        try:
            for name in parts[cut:]:
                obj = getattr(obj, name)
        except AttributeError as exc:
            raise ValueError(f"cannot import {path!r}: {exc}") from None
        break
    else:
        raise ValueError(f"cannot import {path!r}: no module {module_name or attr!r} found")
    if not callable(obj):
        raise ValueError(f"{path!r} is not callable")
    return obj


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
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
            logger.exception("%s %s raised (attempt %d of %d)", what, path, attempt, attempts)
            if attempt < attempts:
                time.sleep(pause * attempt)
    return error
