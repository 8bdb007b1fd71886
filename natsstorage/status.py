"""What the buckets hold, for ``natsos_status`` and the admin: one row per bucket, never raising for an outage.

Buckets are looked for on every server the project points to: the one of
``settings.NATSSTORAGE`` and those of any configured ``NatsStorage`` (in
``STORAGES`` or on a model's ``FileField``) with its own ``servers``. A
configured bucket that does not exist yet still gets a row, as does a
server that cannot be reached (with its error instead of figures).

When the ``monitor_url`` option names a server's monitoring endpoint, its
``/varz`` says when that server fsyncs what JetStream acknowledged
(``sync_interval``): see docs/durability.md.
"""

from __future__ import annotations

import asyncio
import base64
import http.client
import json
import urllib.request
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any
from urllib.parse import unquote, urlsplit

from natsstorage import conf, connections, humanize, index, loop, objectstore, registry
from natsstorage.connections import ConnectionSettings
from natsstorage.exceptions import BucketNotFound, NatsStorageError
from natsstorage.objectstore import Bucket, BucketStatus
from natsstorage.storage import NatsStorage

VARZ_LIMIT = 1024 * 1024  # bytes of /varz read at most; a server's is a few KiB
NANOSECONDS = 1e9
# nats-server 2.9 reports no sync settings: it fsyncs every 60 s, fixed (2.10 made it `sync_interval`, default 2 min).
SYNC_INTERVAL_2_9 = 60.0
MAX_INTERVAL = 10 * 365 * 86400  # seconds: a larger sync_interval is no server's (and no timedelta's)
MAX_ERROR = 200  # characters of an endpoint's own error text shown
# The oldest nats-server natsstorage serves (docs/index.md): Debian stable's 2.9; what newer ones add is detected.
OLDEST_SUPPORTED_SERVER = (2, 9)


@dataclass(frozen=True)
class SyncPolicy:
    """When a server fsyncs what JetStream acknowledged, as its monitoring endpoint's ``/varz`` says."""

    always: bool  # sync_interval: always, fsync before every acknowledgement
    interval: float  # seconds between background fsyncs

    def __str__(self) -> str:
        if self.always:
            return "every write"
        return f"every {humanize.duration(self.interval)}" if self.interval >= 1 else f"every {self.interval:g} s"

    @classmethod
    def from_varz(cls, varz: Any) -> SyncPolicy:
        """Raises ValueError for what is not a server's /varz with JetStream enabled."""
        jetstream = varz.get("jetstream") if isinstance(varz, dict) else None
        config = jetstream.get("config") if isinstance(jetstream, dict) else None
        if not isinstance(config, dict):
            raise ValueError("its /varz shows no JetStream")
        interval = config.get("sync_interval", SYNC_INTERVAL_2_9 * NANOSECONDS)
        always = config.get("sync_always", False)
        valid = type(interval) in (int, float) and 0 <= interval <= MAX_INTERVAL * NANOSECONDS
        if not (valid and isinstance(always, bool)):
            raise ValueError("its /varz has sync settings that are not a server's")
        return cls(always=always, interval=interval / NANOSECONDS)


def redacted(url: str) -> str:
    """A URL without user info, for messages."""
    parts = urlsplit(url)
    return parts._replace(netloc=parts.netloc.rpartition("@")[2]).geturl()


def read_varz(url: str, timeout: float) -> Any:
    """``/varz`` at the monitoring endpoint ``url``, blocking: at most ``timeout`` per network wait, size bounded.
    Directly, never through an HTTP proxy of the environment; user info in the URL is sent as Basic auth
    (nats-server's endpoint has none, a proxy in front of it may)."""
    parts = urlsplit(url)
    request = urllib.request.Request(redacted(url).rstrip("/") + "/varz")
    if parts.username is not None:
        login = f"{unquote(parts.username)}:{unquote(parts.password or '')}".encode()
        request.add_unredirected_header("Authorization", f"Basic {base64.b64encode(login).decode()}")
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(request, timeout=timeout) as response:
        body = response.read(VARZ_LIMIT + 1)
    if len(body) > VARZ_LIMIT:
        raise ValueError(f"its /varz is larger than {humanize.size(VARZ_LIMIT)}")
    return json.loads(body)


async def sync_policy(config: conf.Config) -> tuple[SyncPolicy | None, str]:
    """The sync policy of the server at ``config.monitor_url``, or why there is none ("" when not configured).
    Never waits longer than ``connect_timeout``."""
    if config.monitor_url is None:
        return None, ""
    where = redacted(config.monitor_url)
    timeout = config.connect_timeout
    try:
        varz = await asyncio.wait_for(asyncio.to_thread(read_varz, config.monitor_url, timeout), timeout)
        return SyncPolicy.from_varz(varz), ""
    except TimeoutError:
        return None, f"monitoring endpoint {where} did not answer within {timeout:g} s"
    except (OSError, http.client.HTTPException, ValueError) as error:  # refused, not HTTP, not JSON, not /varz
        return None, f"monitoring endpoint {where}: {' '.join(str(error).split())[:MAX_ERROR]}"


@dataclass(frozen=True)
class BucketRow:
    """One bucket on one server: its figures, or why there are none."""

    name: str
    server: str  # the server URLs, without user info
    status: BucketStatus | None  # None: missing, or unreachable (see error)
    used_by: tuple[str, ...] = ()  # e.g. "STORAGES['default']", "testapp.Document.upload"
    error: str = ""  # why the server could not tell; empty when it answered
    sync: SyncPolicy | None = None  # the server's, when its monitoring endpoint is configured and answered

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


@dataclass(frozen=True)
class ServerReport:
    """One server: whether it answered, and its bucket rows."""

    server: str  # the server URLs, without user info
    rows: list[BucketRow]
    error: str = ""  # why it could not be read; empty when it answered
    sync: SyncPolicy | None = None  # when it fsyncs, from monitor_url
    sync_error: str = ""  # why monitor_url told no sync policy; empty when it did, or is not configured
    version: str = ""  # the nats-server's version, as its INFO gave it; empty when it did not answer

    @property
    def reachable(self) -> bool:
        return not self.error

    @property
    def warning(self) -> str:
        """What to know about the server that answered: that it is older than the docs support, or nothing."""
        return too_old(self.version)


def too_old(version: str) -> str:
    """A warning when the nats-server ``version`` (e.g. "2.8.4") is older than the oldest supported, else ""."""
    try:
        found = tuple(int(part) for part in version.split("-")[0].split(".")[:3])
    except ValueError:
        return ""  # not a release's version (a build of the server's main branch): nothing to compare
    if len(found) < 3 or found[:2] >= OLDEST_SUPPORTED_SERVER:
        return ""
    oldest = ".".join(map(str, OLDEST_SUPPORTED_SERVER))
    return f"nats-server {version} is older than {oldest}, the oldest natsstorage supports: upgrade it"


def server_reports(bucket: str | None = None) -> list[ServerReport]:
    """A report per server the project uses, each with a row per bucket (only ``bucket`` when given)."""
    servers: dict[ConnectionSettings, _Server] = {}
    project = conf.resolve(None, {})
    servers[project.connection] = _Server(project)
    for label, storage in registry.configured(NatsStorage):
        config = storage.config
        server = servers.setdefault(config.connection, _Server(config))
        server.used_by.setdefault(config.bucket, []).append(label)
    return [loop.run(_server_report(server, bucket)) for server in servers.values()]


def bucket_rows(bucket: str | None = None) -> list[BucketRow]:
    """Every server's bucket rows, sorted by server and name."""
    return [row for report in server_reports(bucket) for row in report.rows]


async def _server_report(server: _Server, only: str | None) -> ServerReport:
    (sync, sync_error), report = await asyncio.gather(sync_policy(server.config), _bucket_report(server, only))
    rows = [replace(row, sync=sync) for row in report.rows]
    return replace(report, rows=rows, sync=sync, sync_error=sync_error)


async def _bucket_report(server: _Server, only: str | None) -> ServerReport:
    config = server.config
    where = config.connection.where
    try:
        nc = await connections.connection(config.connection)
        version = _version(nc.connected_server_version)
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
    return ServerReport(where, rows, version=version)


def _version(version: Any) -> str:
    """nats-py's ``ServerVersion`` as text; "" when the server sent none it can parse."""
    try:
        return f"{version.major}.{version.minor}.{version.patch}"
    except ValueError:
        return ""
