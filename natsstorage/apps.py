from __future__ import annotations

from django.apps import AppConfig


class NatsStorageConfig(AppConfig):
    name = "natsstorage"
    verbose_name = "NATS object store"

    def ready(self) -> None:
        from natsstorage import checks  # noqa: F401 - registers the system checks
