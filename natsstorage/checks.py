"""System checks: settings shapes only. Reaching the server is the status page's job."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.apps import AppConfig
from django.conf import settings
from django.core.checks import CheckMessage, Error, Tags, register

from natsstorage import conf
from natsstorage.registry import backend_is
from natsstorage.storage import NatsStorage


@register(Tags.compatibility)
def check_settings(app_configs: Sequence[AppConfig] | None = None, **kwargs: Any) -> list[CheckMessage]:
    errors: list[CheckMessage] = []
    if hasattr(settings, conf.SETTING):
        for message, hint in conf.problems(conf.project_options(), f"settings.{conf.SETTING}"):
            errors.append(Error(message, hint=hint, id="natsstorage.E001"))
    for alias, storage in getattr(settings, "STORAGES", {}).items():
        if isinstance(storage, dict) and backend_is(storage.get("BACKEND"), NatsStorage):  # subclasses too
            where = f"STORAGES[{alias!r}]['OPTIONS']"
            for message, hint in conf.problems(storage.get("OPTIONS", {}), where):
                errors.append(Error(message, hint=hint, id="natsstorage.E002"))
    return errors
