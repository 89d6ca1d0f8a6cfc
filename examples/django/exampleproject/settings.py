"""A minimal project: the notes app, rq-serviceq's app, SQLite in a file (workers are other processes)."""

import os
import tempfile
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "example-only-not-secret")
DEBUG = True
ALLOWED_HOSTS = ["*"]
USE_TZ = True
ROOT_URLCONF = "exampleproject.urls"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "rq_serviceq.contrib.django",
    "notes",
]

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        # A file, not :memory:, so that worker processes see what the web process sees; in the temp
        # directory, so that running the example leaves nothing untracked in the clone.
        # EXAMPLE_DB lets the tests hand their test database to the workers they start.
        "NAME": os.environ.get("EXAMPLE_DB", os.path.join(tempfile.gettempdir(), "rq-serviceq-django-example.sqlite3")),
        "TEST": {"NAME": os.path.join(tempfile.gettempdir(), f"rq-serviceq-django-example-{os.getpid()}.sqlite3")},
        "OPTIONS": {"timeout": 20},
    }
}

SERVICEQ = {
    # "REDIS_URL": "redis://localhost:6379/0",   # default: $RQ_REDIS_URL, else $REDIS_URL, else localhost
    "ALLOWED_MODULES": ["notes.tasks"],
    "QUEUES": {
        "deliveries": {
            "task_function": "notes.tasks.record_delivery",
            "batch_end_callback": "notes.tasks.record_batch",
            "worker_count": 2,
            "retry_limit": 2,
            "auto_start": False,  # workers run under `manage.py serviceq_worker deliveries`
        },
    },
}
