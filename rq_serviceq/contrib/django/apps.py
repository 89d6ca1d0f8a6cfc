from __future__ import annotations

from django.apps import AppConfig


class ServiceQConfig(AppConfig):
    name = "rq_serviceq.contrib.django"
    label = "rq_serviceq"
    verbose_name = "rq-serviceq"

    def ready(self) -> None:
        from rq_serviceq.contrib.django import export_environment

        export_environment()  # also checks SERVICEQ: a typo fails at start-up, not in a worker
