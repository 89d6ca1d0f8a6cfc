"""Django's test runner against a real Redis (started here) and SQLite in a file.

`python manage.py test notes` from examples/django (tests/surfaces/test_django.py runs it).
The supervisor and its workers are real processes: the task function writes
through the ORM in a worker process, and this process reads the rows back.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.management import CommandError, call_command
from django.db import connection
from django.test import Client, SimpleTestCase, TransactionTestCase, override_settings

from notes.models import BatchRecord, Delivery
from rq_serviceq.contrib.django import get_serviceq, serviceq_settings
from rq_serviceq.testing import RedisServer

BASE_DIR = Path(settings.BASE_DIR)


class WorkersUseTheORM(TransactionTestCase):
    def setUp(self) -> None:
        self.redis = RedisServer().start()
        self.addCleanup(self.redis.stop)
        os.environ["RQ_REDIS_URL"] = self.redis.url

    def start_supervisor(self) -> subprocess.Popen[bytes]:
        env = dict(os.environ, EXAMPLE_DB=connection.settings_dict["NAME"])  # the test database, a file
        cmd = [sys.executable, "manage.py", "serviceq_worker", "deliveries", "--interval", "0.2", "--quiet"]
        proc = subprocess.Popen(cmd, cwd=BASE_DIR, env=env, start_new_session=True)
        self.addCleanup(self.stop, proc)
        return proc

    def stop(self, proc: subprocess.Popen[bytes]) -> None:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)  # warm: the workers finish, then the supervisor leaves
            proc.wait(30)

    def test_a_pushed_batch_is_written_by_workers_through_the_orm(self) -> None:
        client = Client()
        tasks = [{"phone": f"+9100000{i}", "text": f"hi {i}"} for i in range(5)] + [{"phone": "", "text": "x"}]
        response = client.post("/deliveries/", json.dumps(tasks), content_type="application/json")
        self.assertEqual(response.status_code, 202)
        sq = get_serviceq("deliveries")
        self.assertEqual(sq.settings.worker_count, 2)  # SERVICEQ["QUEUES"] defaults, applied at creation
        self.start_supervisor()
        report = sq.wait_for_batch(timeout=60)
        self.assertEqual((report["total_success"], report["total_failed"]), (5, 1))
        self.assertEqual(report["failed_tasks"][0]["remark"], "NO_RETRY | no phone number")
        self.assertEqual(Delivery.objects.count(), 5)
        self.assertNotEqual(Delivery.objects.first().worker_pid, os.getpid())
        self.assertEqual(BatchRecord.objects.get().passed, 5)  # the batch-end callback used the ORM too
        self.assertEqual(client.get("/deliveries/status/").json()["status"], "FINISHED")

        out = io.StringIO()
        call_command("serviceq_status", "deliveries", stdout=out)
        self.assertIn("deliveries: FINISHED", out.getvalue())
        out = io.StringIO()
        call_command("serviceq_status", "--json", stdout=out)
        self.assertEqual(json.loads(out.getvalue())["deliveries"]["total_success"], 5)

    def test_worker_command_refuses_an_undeclared_unknown_queue(self) -> None:
        with self.assertRaisesMessage(CommandError, "no service queue named 'nope'"):
            call_command("serviceq_worker", "nope")


class SettingsAreChecked(SimpleTestCase):
    def test_allow_list_and_worker_class_reach_the_environment(self) -> None:
        self.assertEqual(os.environ["RQ_SERVICEQ_ALLOWED_MODULES"], "notes.tasks")
        self.assertEqual(os.environ["RQ_SERVICEQ_WORKER_CLASS"], "rq_serviceq.contrib.django.DjangoServiceQWorker")

    @override_settings(SERVICEQ={"QUEUE": {}})
    def test_an_unknown_key_is_refused(self) -> None:
        with self.assertRaisesMessage(ImproperlyConfigured, "unknown key(s) QUEUE"):
            serviceq_settings()

    @override_settings(SERVICEQ={"QUEUES": {"q": {"retries": 3}}})
    def test_an_unknown_queue_setting_is_refused(self) -> None:
        with self.assertRaisesMessage(ImproperlyConfigured, "unknown setting(s) retries"):
            serviceq_settings()
