"""Settings, read in one place.

Precedence, lowest first: the defaults below, ``settings.NATSSTORAGE`` (a
dict with the same keys, for the whole project), then a storage's own
options (``NatsStorage(..., **options)`` or ``STORAGES[alias]["OPTIONS"]``).
When no ``servers`` is given anywhere, the ``NATS_URL`` environment variable
is used, as the NATS tools do, then ``nats://localhost:4222``.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any, TypedDict

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from natsstorage._bridge import ConnectionSettings
from natsstorage.objectstore import BUCKET_NAME, CHUNK_SIZE, BucketConfig

SETTING = "NATSSTORAGE"
SERVERS_ENVIRONMENT_VARIABLE = "NATS_URL"
DEFAULT_SERVERS = ("nats://localhost:4222",)
MAX_CHUNK_SIZE = 1024 * 1024  # the server's default max_payload


class Options(TypedDict, total=False):
    """The keyword options of ``NatsStorage``; ``settings.NATSSTORAGE`` takes these and ``bucket``."""

    servers: str | Sequence[str]
    user: str
    password: str
    token: str
    credentials: str
    tls_ca_file: str
    tls_cert_file: str
    tls_key_file: str
    connect_timeout: float
    timeout: float
    chunk_size: int
    window: int | None
    file_overwrite: bool
    create_bucket: bool
    description: str
    ttl: float | None
    max_bytes: int
    storage: str
    replicas: int
    compression: bool
    base_url: str | None
    public: bool
    url_expiry: int
    staff_only: bool


@dataclass(frozen=True)
class Config:
    """One storage's resolved settings."""

    bucket: str = "media"
    servers: tuple[str, ...] = DEFAULT_SERVERS
    user: str | None = None
    password: str | None = None
    token: str | None = None
    credentials: str | None = None  # path of a .creds file (JWT + NKey)
    tls_ca_file: str | None = None
    tls_cert_file: str | None = None
    tls_key_file: str | None = None
    # Seconds to reach a server before an operation fails with NatsUnavailable.
    connect_timeout: float = 2.0
    # Seconds any one network wait (a reply, an acknowledgement, a chunk) may take.
    timeout: float = 10.0
    # Bytes per chunk message. The NATS clients write 128 KiB; every client reads
    # any size up to the server's max_payload (which caps this), and 512 KiB
    # needs a quarter of the per-message work: 1.5x the throughput (bench/run.py).
    chunk_size: int = CHUNK_SIZE
    # Chunks in flight per transfer; None: as many as fit in 8 MiB, which keeps
    # a link busy while bounding what one upload or download holds in memory.
    window: int | None = None
    # False: like FileSystemStorage, a taken name gets Django's alternative name.
    file_overwrite: bool = False
    # Create a missing bucket on first use, as the NATS clients' os("name") does.
    create_bucket: bool = True
    # Used only when this storage creates a missing bucket.
    description: str = ""
    ttl: float | None = None
    max_bytes: int = -1
    storage: str = "file"
    replicas: int = 1
    compression: bool = False
    # Where natsstorage.urls is reachable, e.g. "https://cdn.example.com/files/";
    # None: reverse() it in this project's URLconf.
    base_url: str | None = None
    # False: url() signs each link and the view refuses unsigned or expired ones.
    public: bool = False
    # Seconds a signed link works; an hour, like S3's presigned URLs by default.
    url_expiry: int = 3600
    # True: the view also requires a logged-in, active staff user.
    staff_only: bool = False

    @property
    def connection(self) -> ConnectionSettings:
        return ConnectionSettings(
            servers=self.servers,
            user=self.user,
            password=self.password,
            token=self.token,
            credentials=self.credentials,
            tls_ca_file=self.tls_ca_file,
            tls_cert_file=self.tls_cert_file,
            tls_key_file=self.tls_key_file,
            connect_timeout=self.connect_timeout,
        )

    @property
    def bucket_config(self) -> BucketConfig:
        return BucketConfig(
            description=self.description,
            ttl=self.ttl,
            max_bytes=self.max_bytes,
            storage=self.storage,
            replicas=self.replicas,
            compression=self.compression,
        )


KEYS = frozenset(field.name for field in fields(Config))


def _positive(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value > 0


def _int(low: int, high: int | None = None) -> Callable[[Any], bool]:
    def check(value: Any) -> bool:
        return (
            isinstance(value, int) and not isinstance(value, bool) and value >= low and (high is None or value <= high)
        )

    return check


def _optional_str(value: Any) -> bool:
    return value is None or isinstance(value, str)


def _servers(value: Any) -> bool:
    if isinstance(value, str):
        return bool(value.strip())
    return isinstance(value, list | tuple) and bool(value) and all(isinstance(url, str) and url for url in value)


# key -> (is the value valid, what a valid value looks like)
RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "bucket": (lambda v: isinstance(v, str) and bool(BUCKET_NAME.match(v)), "letters, digits, '-' and '_' only"),
    "servers": (_servers, "a list of URLs or a comma-separated string, e.g. 'nats://127.0.0.1:4222'"),
    "user": (_optional_str, "a string"),
    "password": (_optional_str, "a string"),
    "token": (_optional_str, "a string"),
    "credentials": (_optional_str, "the path of a .creds file"),
    "tls_ca_file": (_optional_str, "the path of a PEM file"),
    "tls_cert_file": (_optional_str, "the path of a PEM file"),
    "tls_key_file": (_optional_str, "the path of a PEM file"),
    "connect_timeout": (_positive, "a number of seconds above 0"),
    "timeout": (_positive, "a number of seconds above 0"),
    "chunk_size": (_int(1, MAX_CHUNK_SIZE), f"a whole number of bytes from 1 to {MAX_CHUNK_SIZE}"),
    "window": (lambda v: v is None or _int(1, 1024)(v), "None or a whole number of chunks from 1 to 1024"),
    "file_overwrite": (lambda v: isinstance(v, bool), "True or False"),
    "create_bucket": (lambda v: isinstance(v, bool), "True or False"),
    "description": (lambda v: isinstance(v, str), "a string"),
    "ttl": (lambda v: v is None or _positive(v), "None or a number of seconds above 0"),
    "max_bytes": (lambda v: v == -1 or _int(1)(v), "-1 (no limit) or a whole number of bytes"),
    "storage": (lambda v: v in ("file", "memory"), "'file' or 'memory'"),
    "replicas": (_int(1, 5), "a whole number from 1 to 5"),
    "compression": (lambda v: isinstance(v, bool), "True or False"),
    "base_url": (lambda v: v is None or (isinstance(v, str) and v.endswith("/")), "None or a URL ending in '/'"),
    "public": (lambda v: isinstance(v, bool), "True or False"),
    "url_expiry": (_int(1), "a whole number of seconds above 0"),
    "staff_only": (lambda v: isinstance(v, bool), "True or False"),
}


def problems(options: Any, where: str) -> list[tuple[str, str]]:
    """What is wrong with ``options``, as (message, hint) pairs; empty when all is well."""
    if not isinstance(options, Mapping):
        return [(f"{where} must be a dict, not {type(options).__name__}.", "Use a dict of option names to values.")]
    found = []
    for key, value in options.items():
        if key not in RULES:
            found.append((f"{where} has an unknown key {key!r}.", f"Valid keys: {', '.join(sorted(KEYS))}."))
        elif not RULES[key][0](value):
            found.append((f"{where}[{key!r}] = {value!r} is not valid.", f"Use {RULES[key][1]}."))
    if options.get("credentials") and importlib.util.find_spec("nkeys") is None:
        found.append(
            (f"{where}['credentials'] needs the nkeys package to sign in.", "pip install 'natsstorage[nkeys]'.")
        )
    return found


def project_options() -> Any:
    return getattr(settings, SETTING, {})


def resolve(bucket: str | None, options: Mapping[str, Any]) -> Config:
    """Merge the defaults, the project's settings and one storage's options."""
    project = project_options()
    for where, values in ((SETTING, project), ("NatsStorage options", options)):
        found = problems(values, where)
        if found:
            raise ImproperlyConfigured(" ".join(found[0]))
    merged = {**project, **options}
    if bucket is not None:
        merged["bucket"] = bucket
        found = problems({"bucket": bucket}, "NatsStorage bucket")
        if found:
            raise ImproperlyConfigured(" ".join(found[0]))
    servers = merged.get("servers") or os.environ.get(SERVERS_ENVIRONMENT_VARIABLE) or DEFAULT_SERVERS
    if isinstance(servers, str):
        servers = servers.split(",")
    merged["servers"] = tuple(url.strip() for url in servers if url.strip())
    return Config(**merged)
