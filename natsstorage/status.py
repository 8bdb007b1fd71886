"""What the buckets hold, for ``natsos_status`` and the admin: one row per bucket, never raising for an outage.

Buckets are looked for on every server the project points to: the one of
``settings.NATSSTORAGE`` and those of any configured ``NatsStorage`` (in
``STORAGES`` or on a model's ``FileField``) with its own ``servers``. A
configured bucket that does not exist yet still gets a row, as does a
server that cannot be reached (with its error instead of figures).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import partial

from django.apps import apps
from django.conf import settings
from django.core.files.storage import storages
from django.db.models import FileField
from django.utils.module_loading import import_string

from natsstorage import conf, connections, index, loop, objectstore
from natsstorage.connections import ConnectionSettings
from natsstorage.exceptions import BucketNotFound, NatsStorageError
from natsstorage.objectstore import Bucket, BucketStatus
from natsstorage.storage import NatsStorage


@dataclass(frozen=True)
class BucketRow:
    """One bucket on one server: its figures, or why there are none."""

    name: str
    server: str  # the server URLs, without user info
    status: BucketStatus | None  # None: missing, or unreachable (see error)
    used_by: tuple[str, ...] = ()  # e.g. "STORAGES['default']", "testapp.Document.upload"
    error: str = ""  # why the server could not tell; empty when it answered

    @property
    def reachable(self) -> bool:
        return not self.error

    @property
    def exists(self) -> bool:
        return self.status is not None


@dataclass
class _Server:
    config: conf.Config  # connection and timeout to use; its bucket is irrelevant
    used_by: dict[str, list[str]] = field(default_factory=dict)  # bucket -> labels


def configured_storages() -> Iterator[tuple[str, NatsStorage]]:
    """Every ``NatsStorage`` the project configures, with where: ``STORAGES`` aliases, then model fields."""
    for alias, backend in settings.STORAGES.items():
        # Only NatsStorage backends are built: others may not be configured for this process (staticfiles).
        try:
            is_nats = issubclass(import_string(backend.get("BACKEND", "")), NatsStorage)
        except ImportError:
            is_nats = False
        storage = storages[alias] if is_nats else None
        if isinstance(storage, NatsStorage):
            yield f"STORAGES[{alias!r}]", storage
    for model in apps.get_models():
        for model_field in model._meta.get_fields():
            if isinstance(model_field, FileField) and isinstance(model_field.storage, NatsStorage):
                yield f"{model._meta.label}.{model_field.name}", model_field.storage


@dataclass(frozen=True)
class ServerReport:
    """One server: whether it answered, and its bucket rows."""

    server: str  # the server URLs, without user info
    rows: list[BucketRow]
    error: str = ""  # why it could not be read; empty when it answered

    @property
    def reachable(self) -> bool:
        return not self.error


def server_reports(bucket: str | None = None) -> list[ServerReport]:
    """A report per server the project uses, each with a row per bucket (only ``bucket`` when given)."""
    servers: dict[ConnectionSettings, _Server] = {}
    project = conf.resolve(None, {})
    servers[project.connection] = _Server(project)
    for label, storage in configured_storages():
        config = storage.config
        server = servers.setdefault(config.connection, _Server(config))
        server.used_by.setdefault(config.bucket, []).append(label)
    return [loop.run(_server_report(server, bucket)) for server in servers.values()]


def bucket_rows(bucket: str | None = None) -> list[BucketRow]:
    """Every server's bucket rows, sorted by server and name."""
    return [row for report in server_reports(bucket) for row in report.rows]


async def _server_report(server: _Server, only: str | None) -> ServerReport:
    config = server.config
    where = config.connection.where
    try:
        nc = await connections.connection(config.connection)
        names = set(await objectstore.bucket_names(nc, timeout=config.timeout))
    except NatsStorageError as error:
        wanted = [only] if only else sorted(server.used_by)
        rows = [BucketRow(name, where, None, tuple(server.used_by.get(name, ())), str(error)) for name in wanted]
        return ServerReport(where, rows, str(error))
    rows = []
    for name in sorted(names | set(server.used_by)):
        if only and name != only:
            continue
        used_by = tuple(server.used_by.get(name, ()))
        connect = partial(connections.connection, config.connection)
        bucket = Bucket(name, connect, timeout=config.timeout, listing_idle=config.listing_idle)
        try:
            rows.append(BucketRow(name, where, await index.status(bucket), used_by))
        except BucketNotFound:
            rows.append(BucketRow(name, where, None, used_by))
        except NatsStorageError as error:
            rows.append(BucketRow(name, where, None, used_by, str(error)))
    if only and not rows:
        rows.append(BucketRow(only, where, None))
    return ServerReport(where, rows)
