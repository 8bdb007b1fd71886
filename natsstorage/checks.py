"""System checks: settings shapes only. Reaching the server is the status page's job."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

from django.apps import AppConfig
from django.conf import settings
from django.core.checks import CheckMessage, Error, Tags, Warning, register

from natsstorage import conf

BACKENDS = ("natsstorage.NatsStorage", "natsstorage.storage.NatsStorage")


@register(Tags.compatibility)
def check_settings(app_configs: Sequence[AppConfig] | None = None, **kwargs: Any) -> list[CheckMessage]:
    errors: list[CheckMessage] = []
    if hasattr(settings, conf.SETTING):
        for message, hint in conf.problems(conf.project_options(), f"settings.{conf.SETTING}"):
            errors.append(Error(message, hint=hint, id="natsstorage.E001"))
    for alias, storage in getattr(settings, "STORAGES", {}).items():
        if isinstance(storage, dict) and storage.get("BACKEND") in BACKENDS:
            where = f"STORAGES[{alias!r}]['OPTIONS']"
            for message, hint in conf.problems(storage.get("OPTIONS", {}), where):
                errors.append(Error(message, hint=hint, id="natsstorage.E002"))
    return errors


@register(Tags.compatibility)
def check_files(app_configs: Sequence[AppConfig] | None = None, **kwargs: Any) -> list[CheckMessage]:
    """A credentials or TLS file that is not there: found now, not at the first call."""
    errors: list[CheckMessage] = []
    places = [(f"settings.{conf.SETTING}", conf.project_options())]
    for alias, storage in getattr(settings, "STORAGES", {}).items():
        if isinstance(storage, dict) and storage.get("BACKEND") in BACKENDS:
            places.append((f"STORAGES[{alias!r}]['OPTIONS']", storage.get("OPTIONS", {})))
    for where, options in places:
        if isinstance(options, Mapping):
            for message, hint in conf.missing_files(options, where):
                errors.append(Error(message, hint=hint, id="natsstorage.E101"))
    return errors


@register(Tags.compatibility)
def check_nats_url(app_configs: Sequence[AppConfig] | None = None, **kwargs: Any) -> list[CheckMessage]:
    """An exported NATS_URL that settings override: the shell and the site would talk to different servers."""
    project = conf.project_options()
    exported = os.environ.get(conf.SERVERS_ENVIRONMENT_VARIABLE, "")
    if not exported.strip() or not isinstance(project, Mapping) or not project.get("servers"):
        return []
    servers = project["servers"]
    configured = servers.split(",") if isinstance(servers, str) else servers
    if {url.strip() for url in exported.split(",")} == {str(url).strip() for url in configured}:
        return []
    return [
        Warning(
            f"${conf.SERVERS_ENVIRONMENT_VARIABLE} is set, but settings.{conf.SETTING}['servers'] is what "
            f"natsstorage uses: ${conf.SERVERS_ENVIRONMENT_VARIABLE} is ignored.",
            hint=f"Unset {conf.SERVERS_ENVIRONMENT_VARIABLE}, or leave 'servers' out of settings.{conf.SETTING} "
            "to take it from the environment.",
            id="natsstorage.W101",
        )
    ]
