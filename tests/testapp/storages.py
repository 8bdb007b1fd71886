from __future__ import annotations

from typing import Any

from django.contrib.staticfiles.storage import ManifestFilesMixin

from natsstorage import NatsStorage


class ArchiveStorage(NatsStorage):
    """A project's own NatsStorage, with a default and an option of its own."""

    defaults = {"bucket": "archive", "public": False}

    def __init__(self, *, tenant: str = "", **options: Any) -> None:
        self.tenant = tenant
        super().__init__(**options)


class StaticStorage(ManifestFilesMixin, NatsStorage):  # type: ignore[misc]
    """Django's hashed names mixed into NatsStorage, as django-storages' docs show it for S3."""
