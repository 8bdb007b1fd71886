"""Settings, declared and read in one place.

Each option is declared once, as a field of ``Config``: its type, default,
validation, one-line doc and whether it is secret. The checks, the
migration filter (``NatsStorage.deconstruct``) and the docs' options
table all read that declaration.

Precedence, lowest first: the defaults below, ``settings.NATSSTORAGE`` (a
dict with the same keys, for the whole project), then a storage's own
options (``NatsStorage(..., **options)`` or ``STORAGES[alias]["OPTIONS"]``).
When no ``servers`` is given anywhere, the ``NATS_URL`` environment variable
is used, as the NATS tools do, then ``nats://localhost:4222``.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable, Mapping
from dataclasses import MISSING, Field, dataclass, field, fields
from typing import Any, cast

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured, SuspiciousFileOperation
from django.utils.functional import Promise
from django.utils.module_loading import import_string

from natsstorage.connections import ConnectionSettings
from natsstorage.names import clean_location
from natsstorage.objectstore import BUCKET_NAME_RULE, CHUNK_SIZE, LISTING_IDLE, BucketConfig, valid_bucket_name
from natsstorage.redaction import kind, redact_urls

SETTING = "NATSSTORAGE"
STORAGES = "STORAGES"  # Django's; NatsStorage(alias=...) reads an entry's OPTIONS
SERVERS_ENVIRONMENT_VARIABLE = "NATS_URL"
DEFAULT_SERVERS = ("nats://localhost:4222",)
MAX_CHUNK_SIZE = 1024 * 1024  # the server's default max_payload
# The STORAGES alias whose bucket natsstorage.uploads.NatsUploadHandler stages uploads in (Django's default storage).
UPLOAD_STORAGE_SETTING = "NATSSTORAGE_UPLOAD_STORAGE"
DEFAULT_UPLOAD_STORAGE = "default"
# Origins (exact, as a browser sends them: "https://app.example.com") whose pages may send to upload links.
UPLOAD_CORS_SETTING = "NATSSTORAGE_UPLOAD_CORS_ORIGINS"
LISTING_MODES = ("auto", "server", "process")
SERVE_CACHE = 16 * 1024 * 1024
SERVE_FILES = 256 * 1024 * 1024


def _positive(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value > 0


def _int(low: int, high: int | None = None) -> Callable[[Any], bool]:
    def check(value: Any) -> bool:
        return (
            isinstance(value, int) and not isinstance(value, bool) and value >= low and (high is None or value <= high)
        )

    return check


def _bool(value: Any) -> bool:
    return isinstance(value, bool)


def _str(value: Any) -> bool:
    return isinstance(value, str)


def _optional_str(value: Any) -> bool:
    return value is None or isinstance(value, str)


def _servers(value: Any) -> bool:
    if isinstance(value, str):
        return bool(value.strip())
    return isinstance(value, list | tuple) and bool(value) and all(isinstance(url, str) and url for url in value)


def _monitor_url(value: Any) -> bool:
    return value is None or (isinstance(value, str) and value.startswith(("http://", "https://")) and _one_line(value))


def _location(value: Any) -> bool:
    try:
        clean_location(value)
    except (SuspiciousFileOperation, TypeError):
        return False
    return True


def _one_line(text: Any) -> bool:
    return isinstance(text, str) and "\n" not in text and "\r" not in text


def _headers(value: Any) -> bool:
    """Headers by name, and optionally ``Metadata``: the object's metadata map, as S3Storage takes it."""
    return isinstance(value, Mapping) and all(
        isinstance(key, str)
        and key
        and (
            _one_line(text)
            if key != "Metadata"
            else isinstance(text, Mapping) and all(isinstance(k, str) and _one_line(v) for k, v in text.items())
        )
        for key, text in value.items()
    )


def option(
    default: Any, valid: Callable[[Any], bool], expects: str, doc: str, *, secret: bool = False, shown: str = ""
) -> Any:
    """Declare one option: ``expects`` says what a valid value looks like; ``secret`` keeps it out of migrations,
    messages and reprs; ``shown`` is the default as the options table writes it, when ``repr`` does not say it well."""
    metadata = {"valid": valid, "expects": expects, "doc": doc, "secret": secret, "shown": shown}
    if isinstance(default, dict):
        return field(default_factory=lambda: dict(default), metadata=metadata, repr=not secret)
    return field(default=default, metadata=metadata, repr=not secret)


PATH = "the path of a PEM file"
SECONDS = "a number of seconds above 0"


@dataclass(frozen=True)
class Config:
    """One storage's resolved settings; every option of ``NatsStorage`` is a field here."""

    bucket: str = option("media", valid_bucket_name, BUCKET_NAME_RULE, "the bucket's name")
    location: str = option(
        "", _location, "a relative path such as 'media', without '..'", "a prefix inside the bucket for every name"
    )
    servers: tuple[str, ...] = option(
        DEFAULT_SERVERS,
        _servers,
        "a list of URLs or a comma-separated string, e.g. 'nats://127.0.0.1:4222'",
        "where NATS is (URLs may carry credentials)",
        secret=True,
        shown="`$NATS_URL`, then `nats://localhost:4222`",
    )
    user: str | None = option(None, _optional_str, "a string", "user name to authenticate with", secret=True)
    password: str | None = option(None, _optional_str, "a string", "password to authenticate with", secret=True)
    token: str | None = option(None, _optional_str, "a string", "token to authenticate with", secret=True)
    credentials: str | None = option(
        None,
        _optional_str,
        "the path of a .creds file",
        "a `.creds` file (JWT and NKey seed, as `nsc` makes them); needs the `nkeys` extra",
        secret=True,
    )
    tls_ca_file: str | None = option(None, _optional_str, PATH, "TLS: a CA to trust")
    tls_cert_file: str | None = option(None, _optional_str, PATH, "TLS: a client certificate")
    tls_key_file: str | None = option(None, _optional_str, PATH, "TLS: the client certificate's key", secret=True)
    # Not discovered: a client learns no monitoring port from the server, and reading /varz over NATS needs the
    # system account. Asked with connect_timeout as the bound, by the status command and the admin only.
    monitor_url: str | None = option(
        None,
        _monitor_url,
        "None or an http(s) URL, e.g. 'http://127.0.0.1:8222'",
        "a server's monitoring endpoint (its `http_port`): `natsos_status` and the admin's buckets page read "
        "its disk sync policy (`sync_interval`) from `/varz`",
        secret=True,
    )
    connect_timeout: float = option(2.0, _positive, SECONDS, "seconds to reach a server before `NatsUnavailable`")
    # Short: service comes back within about this long after NATS does; each background attempt
    # costs one connect (refused at once by a host that is up, up to connect_timeout for one that is not).
    connect_backoff: float = option(
        1.0,
        _positive,
        SECONDS,
        "after a failed connect, calls fail at once with `NatsUnavailable` while one background attempt every "
        "this many seconds reconnects",
    )
    timeout: float = option(
        10.0, _positive, SECONDS, "seconds any one network wait (reply, acknowledgement, chunk) may take"
    )
    # The NATS clients write 128 KiB; every client reads any size up to the server's
    # max_payload (which caps this), and 512 KiB needs a quarter of the per-message
    # work: 1.5x the throughput (bench/run.py).
    chunk_size: int = option(
        CHUNK_SIZE,
        _int(1, MAX_CHUNK_SIZE),
        f"a whole number of bytes from 1 to {MAX_CHUNK_SIZE}",
        "bytes per chunk message, capped by the server's `max_payload`",
    )
    window: int | None = option(
        None,
        lambda v: v is None or _int(1, 1024)(v),
        "None or a whole number of chunks from 1 to 1024",
        "chunks in flight per transfer; `None`: as many as fit in 8 MiB (bounds memory, keeps the link busy)",
    )
    listing_idle: float | None = option(
        LISTING_IDLE,
        lambda v: v is None or _positive(v),
        f"None or {SECONDS}",
        "seconds a process keeps a listing index nobody looks at (the bucket's names, a watch on the server); "
        "`None`: for as long as it runs",
    )
    listing: str = option(
        "auto",
        lambda v: v in LISTING_MODES,
        "'auto', 'server' or 'process'",
        "where `listdir()` and `exists()` of a missing name look: `'server'`, the bucket's index on the server "
        "(nats-server 2.12+, `manage.py natsos_index`); `'process'`, every name read into each process; `'auto'`, "
        "the server's when the bucket has one, else the process's with one warning",
    )
    file_overwrite: bool = option(
        False, _bool, "True or False", "replace an existing name instead of picking Django's alternative name"
    )
    create_bucket: bool = option(True, _bool, "True or False", "create a missing bucket on first use")
    description: str = option("", _str, "a string", "the bucket's description, when this storage creates it")
    ttl: float | None = option(
        None, lambda v: v is None or _positive(v), f"None or {SECONDS}", "seconds objects live, for a new bucket"
    )
    max_bytes: int = option(
        -1,
        lambda v: v == -1 or _int(1)(v),
        "-1 (no limit) or a whole number of bytes",
        "the bucket's size limit, when creating it",
    )
    storage: str = option(
        "file", lambda v: v in ("file", "memory"), "'file' or 'memory'", "where the server keeps a bucket it creates"
    )
    replicas: int = option(1, _int(1, 5), "a whole number from 1 to 5", "copies in a cluster, when creating the bucket")
    compression: bool = option(False, _bool, "True or False", "S2 compression on the server, when creating the bucket")
    object_parameters: Mapping[str, str] = option(
        {},
        _headers,
        "a dict of header names to one-line strings, and `Metadata`: a dict of strings",
        "headers stored with every object and sent by the view, e.g. `{'Cache-Control': 'max-age=86400'}`; "
        "`Metadata`: the object's metadata map",
    )
    base_url: str | Promise | None = option(
        None,
        lambda v: v is None or isinstance(v, str | Promise),
        "None or a URL (a lazy one too), e.g. 'https://cdn.example.com/media/'",
        "the URL of this storage's files, like `MEDIA_URL`; `None`: `natsstorage.urls` in your URLconf",
    )
    public: bool = option(False, _bool, "True or False", "plain, unsigned links; else signed and expiring")
    # An hour, like S3's presigned URLs by default.
    url_expiry: int = option(3600, _int(1), "a whole number of seconds above 0", "seconds a signed link works")
    staff_only: bool = option(False, _bool, "True or False", "the view also requires a logged-in staff user")
    # 16 MiB: 160 hot objects of 100 KiB per process, served with no round trip while the watch runs.
    serve_cache: int = option(
        SERVE_CACHE,
        _int(0),
        "0 (none) or a whole number of bytes",
        "bytes of objects up to 1 MiB that each process keeps for the view, least recently served dropped first "
        "(read and checked against the digest once); a copy is served with no request to the server while "
        "`serve_watch` runs, else while the metadata the server gives names it; `0`: none kept",
        shown="`16777216` (16 MiB)",
    )
    serve_watch: bool = option(
        True,
        _bool,
        "True or False",
        "while a process serves a bucket it watches the bucket's metadata (one consumer, one message per change): "
        "a kept copy is served with no request to the server, and dropped as a change arrives; `False`: every "
        "request asks for the object's metadata",
    )
    serve_cache_trust: float = option(
        0,
        lambda v: v == 0 or _positive(v),
        f"0 or {SECONDS}",
        "seconds the view serves a kept copy without asking the server whether the object changed, when no "
        "watch is live (`serve_watch=False`, or no permission to make a consumer): a save or a delete by "
        "another process is then seen up to this late (eventual, like a CDN's `max-age`); `0`: asked",
    )
    # 256 MiB under the temp directory: objects up to 32 MiB served with sendfile(), as WhiteNoise serves files.
    serve_files: int = option(
        SERVE_FILES,
        _int(0),
        "0 (none) or a whole number of bytes",
        "bytes of the copies on this host's disk of objects over 1 MiB (up to an eighth of it each) that the view "
        "serves, shared by the host's processes, least recently used removed first: checked once against the "
        "digest, sent with `sendfile()` while the metadata names them; `0`: none kept",
        shown="`268435456` (256 MiB)",
    )
    serve_files_dir: str | None = option(
        None,
        lambda v: v is None or (isinstance(v, str) and os.path.isabs(v)),
        "None or an absolute path",
        "where the disk copies are kept (a directory of the serving user's that no other user can write to); "
        "`None`: `natsstorage-<uid>` in the temporary directory",
    )

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
            connect_backoff=self.connect_backoff,
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


OPTIONS: dict[str, Field[Any]] = {declared.name: declared for declared in fields(Config)}
SECRETS = frozenset(name for name, declared in OPTIONS.items() if declared.metadata["secret"])


def problems(options: Any, where: str) -> list[tuple[str, str]]:
    """What is wrong with ``options``, as (message, hint) pairs; empty when all is well."""
    if not isinstance(options, Mapping):
        return [(f"{where} must be a dict, not {type(options).__name__}.", "Use a dict of option names to values.")]
    found = []
    for key, value in options.items():
        if key not in OPTIONS:
            found.append((f"{where} has an unknown key {key!r}.", f"Valid keys: {', '.join(sorted(OPTIONS))}."))
        elif not OPTIONS[key].metadata["valid"](value):
            found.append(
                (f"{where}[{key!r}] {_shown(key, value)} is not valid.", f"Use {OPTIONS[key].metadata['expects']}.")
            )
    if options.get("credentials") and importlib.util.find_spec("nkeys") is None:
        found.append(
            (f"{where}['credentials'] needs the nkeys package to sign in.", "pip install 'natsstorage[nkeys]'.")
        )
    return found


def _shown(key: str, value: Any) -> str:
    """A value as a message may show it: a secret option's by its type only, any other's without URL credentials."""
    if key in SECRETS:
        return f"(a {kind(value)}; secret, not shown)"
    return f"= {redact_urls(repr(value))}"


FILE_OPTIONS = ("credentials", "tls_ca_file", "tls_cert_file", "tls_key_file")


def missing_files(options: Mapping[str, Any], where: str) -> list[tuple[str, str]]:
    """A (message, hint) pair per file option whose file is not there: ssl and nats-py would say only
    "No such file or directory", without the path, at the first call."""
    found = []
    for key in FILE_OPTIONS:
        path = options.get(key)
        if isinstance(path, str) and path and not os.path.isfile(path):
            found.append((f"{where}[{key!r}] names {path!r}, which is not a file.", "Give the path of the file."))
    return found


def project_options() -> Any:
    return getattr(settings, SETTING, {})


def upload_storage_alias() -> Any:
    """The ``STORAGES`` alias uploads are staged in (``NATSSTORAGE_UPLOAD_STORAGE``; checked by ``checks``)."""
    return getattr(settings, UPLOAD_STORAGE_SETTING, DEFAULT_UPLOAD_STORAGE)


def upload_cors_origins() -> Any:
    """The origins upload links answer CORS requests from (``NATSSTORAGE_UPLOAD_CORS_ORIGINS``; checked by
    ``checks``); none by default: no CORS header is sent."""
    return getattr(settings, UPLOAD_CORS_SETTING, ())


def alias_of(backend: type, options: Mapping[str, Any]) -> str | None:
    """The ``STORAGES`` alias whose ``BACKEND(**OPTIONS)`` is a storage of class ``backend`` with ``options``,
    as Django builds one; None when the storage was made in code."""
    for alias, configured in getattr(settings, STORAGES, {}).items():
        if not isinstance(configured, Mapping) or configured.get("OPTIONS", {}) != options:
            continue
        try:
            if import_string(configured.get("BACKEND", "")) is backend:
                return str(alias)
        except ImportError:
            continue
    return None


def alias_options(alias: str, base: type) -> Mapping[str, Any]:
    """``STORAGES[alias]["OPTIONS"]``, for a storage made with ``alias=`` (a copy rebuilt from ``deconstruct()``
    or a pickle): its secrets come from settings. The entry's ``BACKEND`` must be a ``base``."""
    where = f"settings.{STORAGES}[{alias!r}]"
    configured = getattr(settings, STORAGES, {}).get(alias)
    if not isinstance(configured, Mapping):
        raise ImproperlyConfigured(f"alias={alias!r} names no entry of settings.{STORAGES}.")
    try:
        backend = import_string(configured.get("BACKEND", ""))
    except ImportError:
        backend = None
    if not (isinstance(backend, type) and issubclass(backend, base)):
        raise ImproperlyConfigured(f"alias={alias!r}: the BACKEND of {where} is not a {base.__name__}.")
    options = configured.get("OPTIONS", {})
    found = problems(options, f"{where}['OPTIONS']")
    if found:
        raise ImproperlyConfigured(" ".join(found[0]))
    return cast(Mapping[str, Any], options)


def resolve(bucket: str | None, options: Mapping[str, Any]) -> Config:
    """Merge the defaults, the project's settings and one storage's options."""
    project = project_options()
    for where, values in ((SETTING, project), ("NatsStorage options", options)):
        found = problems(values, where)
        if found:
            raise ImproperlyConfigured(" ".join(found[0]))
    merged = {**project, **options}
    for message, hint in missing_files(merged, "NatsStorage options"):
        raise ImproperlyConfigured(f"{message} {hint}")
    if bucket is not None:
        merged["bucket"] = bucket
        found = problems({"bucket": bucket}, "NatsStorage bucket")
        if found:
            raise ImproperlyConfigured(" ".join(found[0]))
    servers = merged.get("servers") or os.environ.get(SERVERS_ENVIRONMENT_VARIABLE) or DEFAULT_SERVERS
    if isinstance(servers, str):
        servers = servers.split(",")
    merged["servers"] = tuple(url.strip() for url in servers if url.strip())
    merged["location"] = clean_location(merged.get("location", ""))
    merged["object_parameters"] = dict(merged.get("object_parameters", {}))
    return Config(**merged)


def options_table() -> str:
    """The options table in Markdown, from the declarations above: docs/options.md shows it (docs/_ext)."""
    rows = ["| option | default | what it does |", "|---|---|---|"]
    for name, declared in OPTIONS.items():
        factory = cast(Callable[[], Any], declared.default_factory)
        default = declared.default if declared.default is not MISSING else factory()
        shown = declared.metadata["shown"] or f"`{default!r}`"
        secret = " Secret: never written into migrations." if declared.metadata["secret"] else ""
        rows.append(f"| `{name}` | {shown} | {declared.metadata['doc']}.{secret} |")
    return "\n".join(rows) + "\n"
