"""System checks: settings shapes only. Reaching the server is the status page's job."""

from __future__ import annotations

import inspect
import os
from collections.abc import Mapping, Sequence
from typing import Any

from django.apps import AppConfig, apps
from django.conf import settings
from django.contrib.staticfiles.storage import HashedFilesMixin
from django.core.checks import CheckMessage, Error, Tags, Warning, register
from django.utils.module_loading import import_string

from natsstorage import conf, cors
from natsstorage.registry import backend_class
from natsstorage.storage import NatsStorage


@register(Tags.compatibility)
def check_settings(app_configs: Sequence[AppConfig] | None = None, **kwargs: Any) -> list[CheckMessage]:
    errors: list[CheckMessage] = []
    if hasattr(settings, conf.SETTING):
        for message, hint in conf.problems(conf.project_options(), f"settings.{conf.SETTING}"):
            errors.append(Error(message, hint=hint, id="natsstorage.E001"))
    for alias, storage in getattr(settings, "STORAGES", {}).items():
        backend = backend_class(storage.get("BACKEND"), NatsStorage) if isinstance(storage, dict) else None
        if backend is not None:  # NatsStorage or any subclass
            where = f"STORAGES[{alias!r}]['OPTIONS']"
            for message, hint in conf.problems(_nats_options(backend, storage.get("OPTIONS", {})), where):
                errors.append(Error(message, hint=hint, id="natsstorage.E002"))
            if issubclass(backend, HashedFilesMixin) and not _public(backend, storage.get("OPTIONS", {})):
                errors.append(
                    Error(
                        f"STORAGES[{alias!r}]: {backend.__name__} has Django write its links into stylesheets, and "
                        "with public=False they are signed and expire",
                        hint="Use 'BACKEND': 'natsstorage.NatsManifestStaticStorage' (or drop public=False).",
                        id="natsstorage.E003",
                    )
                )
    return errors


def _public(backend: type[NatsStorage], options: Any) -> bool:
    """Whether a storage of ``backend`` with ``options`` gives plain links: its options, its class's defaults,
    then ``NATSSTORAGE``, as ``NatsStorage.config`` reads them."""
    layers = [options, backend.defaults, conf.project_options()]
    return bool(next((layer["public"] for layer in layers if isinstance(layer, Mapping) and "public" in layer), False))


def _nats_options(backend: type[NatsStorage], options: Any) -> Any:
    """``options`` less those a subclass's or a mixin's own ``__init__`` takes (``ManifestFilesMixin``'s
    ``manifest_storage``): the rest reach ``NatsStorage``."""
    if not isinstance(options, Mapping):
        return options
    own = {
        parameter.name
        for cls in backend.__mro__[: backend.__mro__.index(NatsStorage)]
        if "__init__" in vars(cls)
        for parameter in inspect.signature(vars(cls)["__init__"]).parameters.values()
        if parameter.kind in (parameter.POSITIONAL_OR_KEYWORD, parameter.KEYWORD_ONLY)
    }
    return {key: value for key, value in options.items() if key in conf.OPTIONS or key not in own}


@register(Tags.compatibility)
def check_files(app_configs: Sequence[AppConfig] | None = None, **kwargs: Any) -> list[CheckMessage]:
    """A credentials or TLS file that is not there: found now, not at the first call."""
    errors: list[CheckMessage] = []
    places = [(f"settings.{conf.SETTING}", conf.project_options())]
    for alias, storage in getattr(settings, "STORAGES", {}).items():
        if isinstance(storage, dict) and backend_class(storage.get("BACKEND"), NatsStorage):
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


STATICFILES = "django.contrib.staticfiles"


@register(Tags.staticfiles)
def check_app_order(app_configs: Sequence[AppConfig] | None = None, **kwargs: Any) -> list[CheckMessage]:
    """With a static storage of ours, our ``collectstatic`` must be the one Django runs: the first app that
    has the command wins, so ``natsstorage`` goes above ``django.contrib.staticfiles``."""
    names = [config.name for config in apps.get_app_configs()]
    if STATICFILES not in names or names.index("natsstorage") < names.index(STATICFILES):
        return []
    from natsstorage.static import NatsStaticStorage  # imports staticfiles: only once it is installed

    entry = getattr(settings, "STORAGES", {}).get("staticfiles")
    if not (isinstance(entry, dict) and backend_class(entry.get("BACKEND"), NatsStaticStorage)):
        return []
    return [
        Warning(
            f"'natsstorage' comes after '{STATICFILES}' in INSTALLED_APPS, so manage.py collectstatic is "
            "Django's: it uploads again every file whose modification time changed (all of them after a fresh "
            "checkout), where natsstorage's skips the files the bucket already holds.",
            hint=f"Put 'natsstorage' above '{STATICFILES}' in INSTALLED_APPS.",
            id="natsstorage.W102",
        )
    ]


@register(Tags.compatibility)
def check_uploads(app_configs: Sequence[AppConfig] | None = None, **kwargs: Any) -> list[CheckMessage]:
    """Where ``NatsUploadHandler`` stages uploads (``NATSSTORAGE_UPLOAD_STORAGE``), and that it sees them first."""
    from natsstorage.uploads import NatsUploadHandler  # (which imports the storage, as this module does)

    handlers = list(getattr(settings, "FILE_UPLOAD_HANDLERS", []))
    found = [index for index, path in enumerate(handlers) if _is_a(path, NatsUploadHandler)]
    if not found and not hasattr(settings, conf.UPLOAD_STORAGE_SETTING):
        return []
    alias = conf.upload_storage_alias()
    configured = getattr(settings, "STORAGES", {})
    where = f"settings.{conf.UPLOAD_STORAGE_SETTING}"
    if not isinstance(alias, str) or alias not in configured:
        return [
            Error(
                f"{where} = {alias!r} names no entry of settings.STORAGES: uploads cannot be staged.",
                hint=f"Name a STORAGES alias of a NatsStorage (default: {conf.DEFAULT_UPLOAD_STORAGE!r}).",
                id="natsstorage.E004",
            )
        ]
    messages: list[CheckMessage] = []
    entry = configured[alias]
    if found and not (isinstance(entry, dict) and backend_class(entry.get("BACKEND"), NatsStorage)):
        messages.append(
            Warning(
                f"NatsUploadHandler stages uploads in STORAGES[{alias!r}], which is not a NatsStorage: it steps "
                "aside, and the handlers after it take every upload.",
                hint=f"Set {where} to the alias of a NatsStorage, or take the handler out of FILE_UPLOAD_HANDLERS.",
                id="natsstorage.W103",
            )
        )
    from natsstorage.middleware import UploadFailureMiddleware

    if found and not any(_is_a(path, UploadFailureMiddleware) for path in getattr(settings, "MIDDLEWARE", [])):
        messages.append(
            Warning(
                "NatsUploadHandler is in FILE_UPLOAD_HANDLERS, but UploadFailureMiddleware is not in MIDDLEWARE: "
                "a form whose upload the bucket cannot take (full, or NATS away) is answered 400 Bad Request.",
                hint="Add 'natsstorage.middleware.UploadFailureMiddleware' to MIDDLEWARE (anywhere): it answers "
                "507 or 503 instead.",
                id="natsstorage.W105",
            )
        )
    if found and found[0] > 0:
        messages.append(
            Warning(
                f"NatsUploadHandler comes after {handlers[0]!r} in FILE_UPLOAD_HANDLERS: that handler takes the "
                "files first (in memory or in a temporary file) and NatsUploadHandler never sees them.",
                hint="Put 'natsstorage.uploads.NatsUploadHandler' first in FILE_UPLOAD_HANDLERS.",
                id="natsstorage.W104",
            )
        )
    return messages


@register(Tags.compatibility)
def check_upload_cors(app_configs: Sequence[AppConfig] | None = None, **kwargs: Any) -> list[CheckMessage]:
    """``NATSSTORAGE_UPLOAD_CORS_ORIGINS``: exact origins, as browsers send them (a wildcard is refused)."""
    configured = conf.upload_cors_origins()
    where = f"settings.{conf.UPLOAD_CORS_SETTING}"
    hint = "List exact origins, e.g. ['https://app.example.com'] (scheme, lower-case host, port if not the default)."
    if isinstance(configured, str) or not isinstance(configured, list | tuple | set | frozenset):
        return [
            Error(
                f"{where} must be a list of origins, not {type(configured).__name__}.", hint=hint, id="natsstorage.E005"
            )
        ]
    return [
        Error(f"{where} holds {origin!r}, which is not an origin: it is ignored.", hint=hint, id="natsstorage.E005")
        for origin in configured
        if not cors.valid_origin(origin)
    ]


def _is_a(path: Any, kind: type) -> bool:
    """Whether the dotted ``path`` names ``kind`` or a subclass (one that does not import is Django's to report)."""
    try:
        found = import_string(path) if isinstance(path, str) else path
    except ImportError:
        return False
    return isinstance(found, type) and issubclass(found, kind)
