"""System checks: settings shapes only. Reaching the server is the status page's job."""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from typing import Any

from django.apps import AppConfig
from django.conf import settings
from django.contrib.staticfiles.storage import HashedFilesMixin
from django.core.checks import CheckMessage, Error, Tags, register

from natsstorage import conf
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
