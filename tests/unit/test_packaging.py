"""An installed wheel, not only the checkout, carries the Lua scripts, the pages' scripts and the type marker."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_an_installed_wheel_finds_its_lua_scripts(tmp_path: Path) -> None:
    wheels, target = tmp_path / "wheels", tmp_path / "site"
    build = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(wheels)]
    subprocess.run([*build, str(ROOT)], check=True, timeout=120)
    (wheel,) = wheels.glob("rq_serviceq-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    lua_files = {Path(n).name for n in names if n.startswith("rq_serviceq/store/lua/")}
    assert {"claim.lua", "push.lua", "settle.lua", "end_task.lua"} <= lua_files
    assert "rq_serviceq/store/lua/includes/end_task.lua" in names  # the helpers the scripts include
    assert "rq_serviceq/py.typed" in names
    assets = {Path(n).name for n in names if n.startswith("rq_serviceq/http/ui/assets/")}
    assert {"base.css", "base.js", "batch.js", "controls.js"} <= assets  # the pages' scripts, inlined at import
    install = [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)]
    subprocess.run(install, check=True, timeout=120)
    probe = "import rq_serviceq.store.scripts as s; print(s.__file__); print(len(s.source('claim')))"
    env = dict(os.environ, PYTHONPATH=str(target))
    out = subprocess.run([sys.executable, "-c", probe], env=env, cwd=tmp_path, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    where, size = out.stdout.split()
    assert where.startswith(str(target)) and int(size) > 1000
