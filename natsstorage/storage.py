"""``NatsStorage``: Django's Storage API on a NATS JetStream Object Store bucket."""

from __future__ import annotations

import asyncio
import enum
import io
import mimetypes
import os
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cached_property, partial
from typing import IO, Any, ClassVar
from urllib.parse import quote, urlencode

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured, SuspiciousFileOperation
from django.core.files.storage import Storage
from django.core.signals import setting_changed
from django.urls import NoReverseMatch, reverse

from natsstorage import _bridge, conf, index, links, objectstore, signing
from natsstorage._bridge import run
from natsstorage.changes import Changes
from natsstorage.exceptions import CorruptObject, ObjectChanged
from natsstorage.files import (
    PIECE_BYTES,
    WRITE_MODES,
    AsyncNatsFile,
    AsyncNatsWriter,
    NatsFile,
    ObjectSink,
    ObjectStream,
    normal_mode,
)
from natsstorage.index import Entry, Index
from natsstorage.names import clean_name, clean_prefix
from natsstorage.objectstore import Bucket, BucketStatus, ObjectInfo, OrphanChunks
from natsstorage.transfer import Download, Upload

DEFAULT_CONTENT_TYPE = "application/octet-stream"
MAX_COMMIT_ATTEMPTS = 100  # concurrent writers of one name each win within a few
PATH = "natsstorage.NatsStorage"  # what migrations import
METADATA_PARAMETER = "Metadata"  # in get_object_parameters(): the object's metadata map, as S3Storage names it


class Taken(enum.Enum):
    """What a commit does when another object holds the name."""

    REPLACE = "replace"  # overwrite it
    REFUSE = "refuse"  # raise FileExistsError (open(..., "x"))
    REPORT = "report"  # return False: the caller picks another name


class Unknown(enum.Enum):
    VALUE = "unknown"


@dataclass(frozen=True)
class _Saving:
    name: str  # as given to save(): what get_available_name() is asked about again
    max_length: int | None


# Set by save() around Django's get_available_name(), whose checks it leaves to the commit's
# compare-and-set: they cost no round trip of their own. Holds save()'s max_length.
_SAVING: ContextVar[_Saving | None] = ContextVar("natsstorage_saving", default=None)
# What ``url(parameters=...)`` may ask the view to send, by django-storages' (S3's) names and by header name.
RESPONSE_PARAMETERS = {
    "ResponseContentDisposition": "Content-Disposition",
    "ResponseContentType": "Content-Type",
    "ResponseCacheControl": "Cache-Control",
    "ResponseContentLanguage": "Content-Language",
}


class NatsStorage(Storage):
    """Files kept in a NATS JetStream Object Store bucket.

    ``NatsStorage("configs")`` stores into the bucket ``configs``, creating it
    on first use. Options (the fields of ``natsstorage.conf.Config``) override
    ``settings.NATSSTORAGE``. Migrations record the arguments given here, less
    the secret ones (credentials, servers).
    """

    # A subclass's own defaults: over settings.NATSSTORAGE, under the options it is given.
    defaults: ClassVar[Mapping[str, Any]] = {}
    _constructor_args: tuple[tuple[Any, ...], dict[str, Any]]

    def __new__(cls, *args: Any, **kwargs: Any) -> NatsStorage:
        storage = super().__new__(cls)
        storage._constructor_args = (args, kwargs)  # what deconstruct() writes into migrations
        return storage

    def __init__(self, bucket: str | None = None, **options: Any) -> None:
        self._bucket_name = bucket
        self._options: Mapping[str, Any] = options
        found = conf.problems(options, "NatsStorage options")
        if found:
            raise ImproperlyConfigured(" ".join(found[0]))
        setting_changed.connect(self._setting_changed)

    def deconstruct(self) -> tuple[str, tuple[Any, ...], dict[str, Any]]:
        """For migrations: the arguments given, without secrets, so none lands in a migration file
        and changing one makes no new migration."""
        args, kwargs = self._constructor_args
        path = PATH if type(self) is NatsStorage else f"{type(self).__module__}.{type(self).__qualname__}"
        return path, args, {key: value for key, value in kwargs.items() if key not in conf.SECRETS}

    def __getstate__(self) -> dict[str, Any]:
        # The bucket handle holds asyncio state of the loop thread: a copy makes its own.
        state = self.__dict__.copy()
        state.pop("config", None)
        state.pop("bucket", None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        setting_changed.connect(self._setting_changed)

    def _setting_changed(self, *, setting: str, **kwargs: Any) -> None:
        if setting == conf.SETTING:
            self.__dict__.pop("config", None)
            self.__dict__.pop("bucket", None)

    @cached_property
    def config(self) -> conf.Config:
        return conf.resolve(self._bucket_name, {**self.defaults, **self._options})

    @cached_property
    def bucket(self) -> Bucket:
        config = self.config
        return Bucket(
            config.bucket,
            partial(_bridge.connection, config.connection),
            timeout=config.timeout,
            chunk_size=config.chunk_size,
            window=config.window,
            create=config.bucket_config if config.create_bucket else None,
        )

    def __repr__(self) -> str:
        location = f" location={self.config.location!r}" if self.config.location else ""
        return f"<{type(self).__name__} bucket={self.config.bucket!r}{location}>"

    # -- names: Django's names are relative to ``location``; the bucket's keys are not -------

    def key(self, name: str | os.PathLike[str]) -> str:
        """The object name in the bucket for the storage name ``name``; raises SuspiciousFileOperation."""
        name = clean_name(name)
        return f"{self.config.location}/{name}" if self.config.location else name

    def _prefix(self, path: str | os.PathLike[str] | None) -> str:
        location = self.config.location
        return (f"{location}/" if location else "") + clean_prefix(path)

    def _missing(self, name: str | os.PathLike[str]) -> FileNotFoundError:
        return FileNotFoundError(f"{os.fspath(name)!r} is not in the NATS bucket {self.config.bucket!r}")

    def get_object_parameters(self, name: str) -> dict[str, Any]:
        """Headers stored with the object ``name`` and sent by the view, and its ``Metadata`` map;
        override to vary them by name."""
        return dict(self.config.object_parameters)

    def _headers(self, name: str, content_type: str | None) -> dict[str, list[str]]:
        content_type = content_type or mimetypes.guess_type(name)[0] or DEFAULT_CONTENT_TYPE
        parameters = self.get_object_parameters(name)
        headers = {key: [value] for key, value in parameters.items() if key != METADATA_PARAMETER}
        return {"Content-Type": [content_type]} | headers

    def _metadata(self, name: str) -> dict[str, str]:
        """The object's ``metadata`` map: ``get_object_parameters(name)["Metadata"]``, as S3Storage takes it."""
        return dict(self.get_object_parameters(name).get(METADATA_PARAMETER) or {})

    # -- the one coroutine behind each sync method and its async twin ------------

    async def _located(self, name: str) -> tuple[Bucket, ObjectInfo]:
        """The bucket and metadata of the object ``name`` is, or links to."""
        info = await self.bucket.info(self.key(name))
        if info is None:
            raise self._missing(name)
        if info.link is None:
            return self.bucket, info
        return await links.follow(self.bucket, info, served_bucket)

    async def _info(self, name: str) -> ObjectInfo:
        return (await self._located(name))[1]

    async def _listdir(self, path: str | os.PathLike[str] | None) -> tuple[list[str], list[str]]:
        prefix = self._prefix(path)
        directories, files = (await Index.of(self.bucket)).listdir(prefix)
        # Names other clients wrote that Django code may not use (control characters, '..') are not listed.
        return sorted(filter(partial(_usable, prefix), directories)), sorted(filter(partial(_usable, prefix), files))

    async def _exists(self, name: str | os.PathLike[str] | None) -> bool:
        """An object, or a "directory": the storage's root, or a prefix some object's name has."""
        if os.fspath(name or "") in ("", ".", "./"):
            return True
        key = self.key(name)  # type: ignore[arg-type]
        if await self.bucket.info(key) is not None:
            return True
        return (await Index.of(self.bucket)).has_under(key + "/")

    async def _update_meta(
        self,
        name: str,
        description: str | None,
        headers: Mapping[str, str | list[str]] | None,
        metadata: Mapping[str, str] | None,
    ) -> ObjectInfo:
        lists = None
        if headers is not None:
            lists = {key: [value] if isinstance(value, str) else list(value) for key, value in headers.items()}
        key = self.key(name)
        info = await self.bucket.update_meta(key, description=description, headers=lists, metadata=metadata)
        if info is None:
            raise self._missing(name)
        return info

    async def _commit(
        self,
        upload: Upload,
        name: str,
        headers: Mapping[str, list[str]],
        taken: Taken,
        previous: ObjectInfo | None | Unknown = Unknown.VALUE,
    ) -> bool:
        """Publish a written object under ``name``; False when another object holds it (``Taken.REPORT``).

        ``previous``: the name's latest metadata, if known; else a new name is assumed free (the
        compare-and-set says when it is not) and a replacement looks first.
        """
        key = self.key(name)
        if previous is Unknown.VALUE:
            previous = await self.bucket.latest(key) if taken is Taken.REPLACE else None
        for _ in range(MAX_COMMIT_ATTEMPTS):
            if previous is not None and taken is not Taken.REPLACE and self.bucket.live(previous):
                if taken is Taken.REFUSE:
                    raise FileExistsError(f"{name!r} is already in the NATS bucket {self.config.bucket!r}")
                return False
            try:
                await upload.commit(key, previous=previous, headers=headers, metadata=self._metadata(name))
            except ObjectChanged:
                previous = await self.bucket.latest(key)
                continue
            return True
        raise ObjectChanged(f"{name!r} in bucket {self.config.bucket!r} kept changing while being saved")

    async def _open_for_reading(self, name: str) -> tuple[Bucket, ObjectInfo, Download | None, list[bytes]]:
        """The object's metadata and, when it is one chunk, its data, checked: in one hop to the NATS loop."""
        bucket, info = await self._located(name)
        if info.chunks != 1:
            return bucket, info, None, []
        download = await Download.begin(bucket, info)
        try:
            return bucket, info, download, [await download.read()]
        except CorruptObject:  # said when the data is read, as for any object
            return bucket, info, None, []

    async def _put(self, name: str, data: bytes, headers: Mapping[str, list[str]], taken: Taken) -> tuple[Upload, bool]:
        """An object in hand, no bigger than a piece, stored in one hop to the NATS loop."""
        upload = await Upload.begin(self.bucket, name=self.key(name))
        try:
            # A replacement asks for the version it replaces while its chunk travels.
            asked = asyncio.ensure_future(self.bucket.latest(self.key(name))) if taken is Taken.REPLACE else None
            try:
                await upload.write(data)
                previous = await asked if asked is not None else None
            finally:
                if asked is not None:
                    asked.cancel()
            return upload, await self._commit(upload, name, headers, taken, previous)
        except BaseException:
            await upload.abort()
            raise

    def _stream(
        self, name: str, head: bytes, rest: Iterator[bytes], headers: Mapping[str, list[str]], taken: Taken
    ) -> tuple[Upload, bool]:
        """An object bigger than a piece: the caller's thread reads and hashes while the NATS loop publishes."""
        sink = ObjectSink(run(Upload.begin(self.bucket, caller_hashes=True, name=self.key(name))))
        asked = _bridge.submit(self.bucket.latest(self.key(name))) if taken is Taken.REPLACE else None
        try:
            # The buffer gathers Django's small chunks into pieces worth a hop to the loop.
            pieces = io.BufferedWriter(sink, buffer_size=PIECE_BYTES)
            pieces.write(head)
            for piece in rest:
                pieces.write(piece)
            pieces.flush()
            sink.drain()
            previous = _bridge.wait(asked) if asked is not None else None
            return sink.upload, run(self._commit(sink.upload, name, headers, taken, previous))
        except BaseException:
            if asked is not None:
                asked.cancel()
            sink.abort()
            raise
        finally:
            sink.close()

    def _alternative_name(self, name: str) -> str:
        """Django's answer to a taken name, by the checks ``save()`` left to the commit."""
        saving = _SAVING.get()
        token = _SAVING.set(None)  # these checks ask the server
        try:
            if saving is None:  # _save() called directly
                return self.get_available_name(name)
            return self.get_available_name(saving.name, max_length=saving.max_length)
        finally:
            _SAVING.reset(token)

    # -- Django's Storage API ----------------------------------------------------

    def open(self, name: str, mode: str = "rb", *, encoding: str | None = None, newline: str | None = None) -> NatsFile:
        """Stream an object: ``rb``/``r`` read it, ``wb``/``w`` write it (``xb``/``x``: only if new).

        A written object appears, whole, when the file is closed; an error inside ``with`` leaves none.
        Text modes take ``encoding`` and ``newline`` as the built-in ``open()`` does.
        """
        return self._open(name, mode, encoding=encoding, newline=newline)

    def _open(
        self, name: str, mode: str = "rb", *, encoding: str | None = None, newline: str | None = None
    ) -> NatsFile:
        mode = normal_mode(mode)
        if mode in WRITE_MODES.values():
            return self._open_for_writing(name, mode, encoding=encoding, newline=newline)
        bucket, info, download, fetched = run(self._open_for_reading(name))
        stream = partial(ObjectStream, bucket, info, download, fetched)
        return NatsFile(clean_name(name), mode, info=info, open_stream=stream, encoding=encoding, newline=newline)

    def _open_for_writing(self, name: str, mode: str, *, encoding: str | None, newline: str | None) -> NatsFile:
        name = clean_name(name)
        key, taken = self.key(name), Taken.REFUSE if mode.startswith("x") else Taken.REPLACE
        if taken is Taken.REFUSE and run(self.bucket.info(key)) is not None:
            raise FileExistsError(f"{name!r} is already in the NATS bucket {self.config.bucket!r}")
        headers = self._headers(name, None)

        def commit(sink: ObjectSink) -> None:
            run(self._commit(sink.upload, name, headers, taken))

        def open_sink() -> ObjectSink:
            return ObjectSink(run(Upload.begin(self.bucket, caller_hashes=True, name=key)), commit)

        return NatsFile(name, mode, open_sink=open_sink, encoding=encoding, newline=newline)

    def save(self, name: str | None, content: IO[Any], max_length: int | None = None) -> str:
        """Django's ``save()``, without a round trip to ask whether the name is free first.

        The compare-and-set that publishes the object answers that; only a taken name
        costs the checks of Django's ``get_available_name`` (and a subclass's override).
        """
        token = _SAVING.set(_Saving(str(content.name if name is None else name), max_length))
        try:
            return super().save(name, content, max_length)
        finally:
            _SAVING.reset(token)

    def _save(self, name: str, content: IO[Any]) -> str:
        name = clean_name(name)
        content_type = getattr(content, "content_type", None)
        taken = Taken.REPLACE if self.config.file_overwrite else Taken.REPORT
        head, rest = _first_piece(content)
        if rest is None:
            upload, published = run(self._put(name, head, self._headers(name, content_type), taken))
        else:
            upload, published = self._stream(name, head, rest, self._headers(name, content_type), taken)
        try:
            while not published:  # another object holds the name
                name = self._alternative_name(name)
                published = run(self._commit(upload, name, self._headers(name, content_type), taken))
        except BaseException:
            run(upload.abort())
            raise
        return name

    def is_name_available(self, name: str, max_length: int | None = None) -> bool:
        # Only an object takes a name here: a "directory" does not (the Object Store has none).
        if max_length and len(name) > max_length:
            return False
        if self.config.file_overwrite or _SAVING.get() is not None:
            return True  # overwritten, or checked by save()'s compare-and-set
        return run(self.bucket.info(self.key(name))) is None

    def get_alternative_name(self, file_root: str, file_ext: str) -> str:
        if self.config.file_overwrite:  # only a name too long for max_length gets here: truncate it
            return f"{file_root}{file_ext}"
        return super().get_alternative_name(file_root, file_ext)

    def delete(self, name: str) -> None:
        if not name:
            raise ValueError("The name must be given to delete().")
        run(self.bucket.delete(self.key(name)))

    def exists(self, name: str) -> bool:
        return run(self._exists(name))

    def listdir(self, path: str) -> tuple[list[str], list[str]]:
        return run(self._listdir(path))

    def size(self, name: str) -> int:
        return run(self._info(name)).size

    def get_modified_time(self, name: str) -> datetime:
        """When the current version was stored, by the NATS server's clock."""
        mtime = run(self._info(name)).mtime
        return mtime if settings.USE_TZ else mtime.astimezone().replace(tzinfo=None)

    # The Object Store keeps one version per name and no creation time.
    get_created_time = get_modified_time

    @property
    def location(self) -> str:
        """The prefix of this storage's names inside the bucket (``""``: none)."""
        return self.config.location

    @property
    def base_url(self) -> str | None:
        """The URL of this storage's files, ending in ``/``: the ``base_url`` option (a lazy one is
        evaluated now, not at construction), else where ``natsstorage.urls`` serves the location.

        Assignable, as ``FileSystemStorage.base_url`` is; ``None`` then means files have no URL."""
        configured = self.__dict__.get("_base_url", self.config.base_url)
        if "_base_url" in self.__dict__ and configured is None:
            return None
        if configured is not None:
            url = str(configured)
            return url if url.endswith("/") else url + "/"
        try:
            marker = reverse("natsstorage:serve", kwargs={"bucket": self.config.bucket, "name": "_"})
        except NoReverseMatch:
            raise ImproperlyConfigured(
                f"NatsStorage for bucket {self.config.bucket!r} has no URL: add "
                "path('files/', include('natsstorage.urls')) to your URLconf, or set the base_url option"
            ) from None
        location = self.config.location
        return marker[:-1] + (uri(location) + "/" if location else "")

    @base_url.setter
    def base_url(self, value: str | None) -> None:
        self.__dict__["_base_url"] = value

    def url(
        self,
        name: str | None,
        expire: int | timedelta | None = None,
        parameters: Mapping[str, str] | None = None,
    ) -> str:
        """A link to ``name``: signed and expiring unless the storage is ``public``. Built locally.

        ``expire`` (seconds) overrides ``url_expiry`` for this link. ``parameters`` ask the view to
        send a header, by django-storages' names (``ResponseContentDisposition``,
        ``ResponseContentType``, ...) or the header's; they are signed with the link.
        """
        root = self.base_url
        if root is None:
            raise ValueError("This file is not accessible via a URL.")
        if name is None:
            return root
        relative = uri(name).lstrip("/")
        link = root + relative
        overrides = response_overrides(parameters)
        if self.config.public and not overrides:
            return link
        seconds = expire.total_seconds() if isinstance(expire, timedelta) else expire
        expiry = int(seconds) if seconds is not None else self.config.url_expiry
        query = signing.sign(self.config.bucket, self.key(name.lstrip("/")), expiry=expiry, overrides=overrides)
        return link + "?" + urlencode(query)

    def info(self, name: str) -> ObjectInfo:
        """The object's metadata: size, digest, content type, description, headers."""
        return run(self._info(name))

    def update_meta(
        self,
        name: str,
        *,
        description: str | None = None,
        headers: Mapping[str, str | list[str]] | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> ObjectInfo:
        """Change an object's description, headers and/or ``metadata`` map without rewriting its data."""
        return run(self._update_meta(name, description, headers, metadata))

    # -- the bucket as a whole, for commands, the admin and tests ----------------------------
    # These name objects as the bucket does, whatever the storage's ``location``.

    def status(self) -> BucketStatus:
        """The bucket's figures, as ``nats object status`` shows them; ``BucketNotFound`` if it is missing."""
        return run(index.status(self.bucket))

    def bucket_exists(self) -> bool:
        """Whether the bucket is on the server; never creates it."""
        return run(self.bucket.exists())

    def destroy(self) -> None:
        """Delete the bucket and every object in it, for good."""
        run(self.bucket.destroy())
        run(index.forget(self.bucket))

    def listing(self, prefix: str = "") -> list[Entry]:
        """Name, size, modified time and link-ness of the live objects whose names start with ``prefix``,
        by name: from this process's index of the bucket, at the cost of what it returns once made."""
        return run(_listing(self.bucket, prefix))

    def objects(self, prefix: str = "") -> list[ObjectInfo]:
        """The bucket's live objects whose names start with ``prefix``, sorted by name."""
        return run(_sorted_objects(self.bucket, prefix))

    def watch(self, *, history: bool = False) -> Changes:
        """Changes to the bucket's objects as they happen (``history``: each object's latest first)."""
        return Changes(self.bucket.watch(history=history))

    def orphans(self, *, min_age: timedelta) -> list[OrphanChunks]:
        """Chunks no object points to, untouched for ``min_age`` (left by writers that died mid-upload)."""
        return run(self.bucket.orphans(min_age=min_age))

    def purge_orphans(self, orphans: list[OrphanChunks]) -> int:
        """Remove what ``orphans`` found; the number of chunk messages removed."""
        return run(self.bucket.purge_orphans(orphans))

    # -- async twins, for async views ----------------------------------------------

    async def asave(self, name: str | None, content: IO[Any], max_length: int | None = None) -> str:
        # Reading ``content`` is blocking file I/O: it gets a worker thread.
        return await sync_to_async(self.save, thread_sensitive=False)(name, content, max_length)

    async def aexists(self, name: str) -> bool:
        return await _bridge.arun(self._exists(name))

    async def asize(self, name: str) -> int:
        return (await _bridge.arun(self._info(name))).size

    async def adelete(self, name: str) -> None:
        if not name:
            raise ValueError("The name must be given to delete().")
        await _bridge.arun(self.bucket.delete(self.key(name)))

    async def alistdir(self, path: str) -> tuple[list[str], list[str]]:
        return await _bridge.arun(self._listdir(path))

    async def ainfo(self, name: str) -> ObjectInfo:
        return await _bridge.arun(self._info(name))

    async def aupdate_meta(
        self,
        name: str,
        *,
        description: str | None = None,
        headers: Mapping[str, str | list[str]] | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> ObjectInfo:
        return await _bridge.arun(self._update_meta(name, description, headers, metadata))

    async def aopen(self, name: str, mode: str = "rb") -> AsyncNatsFile | AsyncNatsWriter:
        """Open from async code; use ``async with``. ``rb`` streams a read; ``wb`` (``xb``: only if new)
        a write that appears, whole, on ``close()``."""
        mode = normal_mode(mode)
        if mode in ("wb", "xb"):
            name = clean_name(name)
            headers, taken = self._headers(name, None), Taken.REFUSE if mode == "xb" else Taken.REPLACE
            upload = await _bridge.arun(Upload.begin(self.bucket, name=self.key(name)))

            async def commit(upload: Upload) -> str:
                await self._commit(upload, name, headers, taken)
                return name

            return AsyncNatsWriter(name, upload, commit)
        if mode != "rb":
            raise ValueError(f"aopen() streams bytes: use 'rb', 'wb' or 'xb', not {mode!r}")
        bucket, info = await _bridge.arun(self._located(name))
        return AsyncNatsFile(info, await _bridge.arun(Download.begin(bucket, info)))


def served_bucket(name: str) -> Bucket | None:
    """The bucket ``name`` as a configured storage serves it (for links into it), or None."""
    from natsstorage.status import configured_storages  # it imports this module

    for _, storage in configured_storages():
        if storage.config.bucket == name:
            return storage.bucket
    return None


def _usable(prefix: str, entry: str) -> bool:
    try:
        clean_name(prefix + entry)
    except SuspiciousFileOperation:
        return False
    return True


def _first_piece(content: IO[Any]) -> tuple[bytes, Iterator[bytes] | None]:
    """Up to a piece of ``content``; then the rest of it, or None when that was all."""
    chunks = (chunk.encode() if isinstance(chunk, str) else chunk for chunk in content.chunks())  # type: ignore[attr-defined]
    head: list[bytes] = []
    size = 0
    for chunk in chunks:
        head.append(chunk)
        size += len(chunk)
        if size > PIECE_BYTES:
            return b"".join(head), chunks
    return head[0] if len(head) == 1 else b"".join(head), None


def uri(name: str) -> str:
    """``name`` as a URL path: Django's ``filepath_to_uri``, except that a backslash stays a backslash
    (``%5C``), so that the link names the very object ``name`` does."""
    return quote(name, safe="/~!*()'")


def response_overrides(parameters: Mapping[str, str] | None) -> dict[str, str]:
    """``url(parameters=...)`` as the query parameters the view reads (``signing.OVERRIDES``)."""
    overrides = {}
    headers = {header.lower(): header for header in RESPONSE_PARAMETERS.values()}
    for key, value in (parameters or {}).items():
        header = RESPONSE_PARAMETERS.get(key) or headers.get(key.lower())
        if header is None:
            raise ValueError(
                f"url() parameters may be {', '.join([*RESPONSE_PARAMETERS, *headers.values()])}, not {key!r}"
            )
        if not isinstance(value, str) or "\n" in value or "\r" in value:
            raise ValueError(f"url() parameter {key!r} must be a one-line string")
        overrides[signing.OVERRIDES[header]] = value
    return overrides


async def _listing(bucket: Bucket, prefix: str) -> list[Entry]:
    return list((await Index.of(bucket)).under(prefix))


async def _sorted_objects(bucket: Bucket, prefix: str) -> list[ObjectInfo]:
    return sorted([info async for info in bucket.objects() if info.name.startswith(prefix)], key=lambda i: i.name)


def close_connections() -> None:
    """Close this process's NATS connections (before forking, or at the end of a test run);
    the next call on any storage connects again."""
    _bridge.close_connections()


def bucket_names(**options: Any) -> list[str]:
    """Every Object Store bucket on the server that the settings (and ``options``) point to."""
    config = conf.resolve(None, options)

    async def names() -> list[str]:
        nc = await _bridge.connection(config.connection)
        return await objectstore.bucket_names(nc, timeout=config.timeout)

    return run(names())
