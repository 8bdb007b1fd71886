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
from django.core.signals import setting_changed
from django.db.models import FileField
from django.dispatch import receiver
from django.utils.module_loading import import_string

S = TypeVar("S", bound=Storage)
_known: dict[type, tuple[Any, Any, list[Any]]] = {}  # kind: (STORAGES, the models, what was found for them)


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


def configured(kind: type[S]) -> list[tuple[str, S]]:
    """Every storage of class ``kind`` the project configures, with where: ``STORAGES`` aliases
    (e.g. ``STORAGES['default']``), then model fields (e.g. ``testapp.Document.upload``). Found again only when
    ``STORAGES`` or the models change: the view asks on every request."""
    now = (settings.STORAGES, apps.get_models())  # (both the same objects until they change)
    known = _known.get(kind)
    if known is not None and known[0] is now[0] and known[1] is now[1]:
        return known[2]
    found = list(_configured(kind))
    _known[kind] = (*now, found)
    return found


@receiver(setting_changed)
def _forget(**kwargs: Any) -> None:
    """A setting changed (a test's override, say): what the storages' options make them may have too."""
    _known.clear()


def _configured(kind: type[S]) -> Iterator[tuple[str, S]]:
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
