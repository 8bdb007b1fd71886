"""The storages a project configures: its ``STORAGES`` aliases and its models' ``FileField`` storages.

Below the storage, the views, the admin and the checks, which ask it for those of their class
(``configured(NatsStorage)``, subclasses included): it imports none of them.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, TypeVar

from django.apps import apps
from django.conf import settings
from django.core.files.storage import Storage, storages
from django.db.models import FileField
from django.utils.module_loading import import_string

S = TypeVar("S", bound=Storage)


def backend_class(backend: Any, kind: type[S]) -> type[S] | None:
    """The class a ``STORAGES`` ``BACKEND`` path names, if it is ``kind`` or a subclass of it. One that does
    not import is not: that is Django's error to report, when the storage is used."""
    if not isinstance(backend, str):
        return None
    try:
        found = import_string(backend)
    except ImportError:
        return None
    return found if isinstance(found, type) and issubclass(found, kind) else None


def configured(kind: type[S]) -> Iterator[tuple[str, S]]:
    """Every storage of class ``kind`` the project configures, with where: ``STORAGES`` aliases
    (e.g. ``STORAGES['default']``), then model fields (e.g. ``testapp.Document.upload``)."""
    for alias, entry in settings.STORAGES.items():
        # Only those of ``kind`` are built: others may not be configured for this process (staticfiles).
        if isinstance(entry, dict) and backend_class(entry.get("BACKEND"), kind):
            storage = storages[alias]
            if isinstance(storage, kind):
                yield f"STORAGES[{alias!r}]", storage
    for model in apps.get_models():
        for model_field in model._meta.get_fields():
            if isinstance(model_field, FileField) and isinstance(model_field.storage, kind):
                yield f"{model._meta.label}.{model_field.name}", model_field.storage
