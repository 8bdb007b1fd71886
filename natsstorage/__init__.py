"""Django file storage on a NATS JetStream Object Store."""

from __future__ import annotations

import logging
from typing import Any

from natsstorage.connections import close_connections  # the next call on any storage connects again
from natsstorage.storage import NatsStorage

logging.getLogger("natsstorage").addHandler(logging.NullHandler())

__all__ = ["NatsManifestStaticStorage", "NatsStaticStorage", "NatsStorage", "close_connections"]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    # The static storages import django.contrib.staticfiles: only when a project asks for them.
    if name in ("NatsStaticStorage", "NatsManifestStaticStorage"):
        from natsstorage import static

        return getattr(static, name)
    raise AttributeError(f"module 'natsstorage' has no attribute {name!r}")
