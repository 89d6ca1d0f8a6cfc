"""The Django example project's own tests, run by Django's test runner as a user would run them.

They start a real Redis, push through a view, run `manage.py serviceq_worker` (the supervisor,
whose workers call django.setup()) and read back what the task function wrote through the ORM
into SQLite (a file: the workers are other processes).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, untracked_under

pytest.importorskip("django")
EXAMPLE = ROOT / "examples" / "django"


def test_django_example_project_tests_pass() -> None:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), str(EXAMPLE)]))
    env.pop("RQ_REDIS_URL", None)  # the example starts its own Redis
    cmd = [sys.executable, "manage.py", "test", "notes", "--noinput", "-v", "2"]
    before = untracked_under(EXAMPLE)
    done = subprocess.run(cmd, cwd=EXAMPLE, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "Ran 5 tests" in done.stderr and "OK" in done.stderr
    assert untracked_under(EXAMPLE) == before  # no database, log or cache file left in the clone


def test_django_example_keeps_its_database_out_of_the_clone() -> None:
    """Run as its README says (no EXAMPLE_DB), the example's SQLite file is in the temp directory."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), str(EXAMPLE)]))
    env.pop("EXAMPLE_DB", None)
    code = "from django.conf import settings; print(settings.DATABASES['default']['NAME'])"
    cmd = [sys.executable, "manage.py", "shell", "-c", code]
    done = subprocess.run(cmd, cwd=EXAMPLE, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-3000:]
    assert not Path(done.stdout.strip()).is_relative_to(ROOT), done.stdout
