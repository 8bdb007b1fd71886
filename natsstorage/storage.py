"""``NatsStorage``: Django's Storage API on a NATS JetStream Object Store bucket."""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from functools import cached_property, partial
from typing import IO, Any, ClassVar
from urllib.parse import urlencode

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured, SuspiciousFileOperation
from django.core.files.storage import Storage
from django.core.signals import setting_changed
from django.urls import NoReverseMatch, reverse

from natsstorage import conf, connections, garbage, index, links, loop, objectstore, saving, signing
from natsstorage.changes import Changes
from natsstorage.exceptions import CorruptObject
from natsstorage.files import (
    WRITE_MODES,
    AsyncNatsFile,
    AsyncNatsWriter,
    NatsFile,
    ObjectSink,
    ObjectStream,
    normal_mode,
)
from natsstorage.garbage import OrphanChunks
from natsstorage.index import Entry, Index, Page
from natsstorage.jetstream import let_go
from natsstorage.loop import run
from natsstorage.names import MAX_NAME_BYTES, clean_name, clean_prefix
from natsstorage.objectstore import Bucket, BucketStatus, ObjectInfo
from natsstorage.saving import Taken
from natsstorage.transfer import Download, Upload

PATH = "natsstorage.NatsStorage"  # what migrations import


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
            partial(connections.connection, config.connection),
            timeout=config.timeout,
            chunk_size=config.chunk_size,
            window=config.window,
            create=config.bucket_config if config.create_bucket else None,
            listing_idle=config.listing_idle,
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

    # -- the one coroutine behind each sync method and its async twin ------------

    async def _located(self, name: str, *, verbatim: bool = False) -> tuple[Bucket, ObjectInfo]:
        """The bucket and metadata of the object ``name`` is, or links to (``verbatim``: a bucket key)."""
        info = await self.bucket.info(name if verbatim else self.key(name))
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

    async def _open_for_reading(
        self, name: str, *, verbatim: bool = False
    ) -> tuple[Bucket, ObjectInfo, Download | None, list[bytes]]:
        """The object's metadata and, when it is one chunk, its data, checked: in one hop to the NATS loop.

        The chunk of a one-chunk object this process wrote or read lately is asked for with the metadata,
        in the same round trip; it is used when the metadata names it.
        """
        nuid = self.bucket.known_chunk(name if verbatim else self.key(name))
        early = asyncio.ensure_future(Download.ask_only_chunk(self.bucket, nuid)) if nuid else None
        try:
            bucket, info = await self._located(name, verbatim=verbatim)
            if info.chunks != 1:
                return bucket, info, None, []
            if bucket is not self.bucket or info.nuid != nuid:
                let_go(early)
                early = None
            download = await Download.begin(bucket, info, only_chunk=early)
            early = None
            try:
                return bucket, info, download, [await download.read()]
            except CorruptObject:  # said when the data is read, as for any object
                return bucket, info, None, []
        finally:
            let_go(early)

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
        head = saving.head_for(self, name, None)

        def commit(sink: ObjectSink) -> None:
            run(saving.commit(self, sink.upload, name, head, taken))

        def open_sink() -> ObjectSink:
            return ObjectSink(run(Upload.begin(self.bucket, caller_hashes=True, name=key)), commit)

        return NatsFile(name, mode, open_sink=open_sink, encoding=encoding, newline=newline)

    def save(self, name: str | None, content: IO[Any], max_length: int | None = None) -> str:
        """Django's ``save()``, without a round trip to ask whether the name is free first (see ``saving``)."""
        token = saving.SAVING.set(saving.Saving(str(content.name if name is None else name), max_length))
        try:
            return super().save(name, content, max_length)
        finally:
            saving.SAVING.reset(token)

    def _save(self, name: str, content: IO[Any]) -> str:
        return saving.save(self, name, content)

    def is_name_available(self, name: str, max_length: int | None = None) -> bool:
        # Only an object takes a name here: a "directory" does not (the Object Store has none).
        if max_length and len(name) > max_length:
            return False
        if self.config.file_overwrite or saving.SAVING.get() is not None:
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
        return marker[:-1] + (signing.uri(location) + "/" if location else "")

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
        relative = signing.uri(name).lstrip("/")
        link = root + relative
        overrides = signing.response_overrides(parameters)
        if self.config.public and not overrides:
            return link
        seconds = expire.total_seconds() if isinstance(expire, timedelta) else expire
        expiry = int(seconds) if seconds is not None else self.config.url_expiry
        # Signed for the name the link carries (a backslash reads as "/" there), which is what the view checks.
        carried = self.key(name.replace("\\", "/").lstrip("/"))
        query = signing.sign(self.config.bucket, carried, expiry=expiry, overrides=overrides)
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

    def object_info(self, key: str) -> ObjectInfo:
        """The metadata stored under ``key``, whatever the name (a link's own, not followed)."""
        info = run(self.bucket.info(key))
        if info is None:
            raise self._missing(key)
        return info

    def object_infos(self, keys: list[str]) -> list[ObjectInfo | None]:
        """``object_info`` of many keys at once (None for each not there): a page of rows in one round trip."""
        return run(self.bucket.infos(keys))

    def open_object(self, key: str) -> NatsFile:
        """Read what is stored under ``key``, following a link, whatever the name: also names another
        client wrote that Django code may not use (control characters, ``..``), for the admin and commands."""
        bucket, info, download, fetched = run(self._open_for_reading(key, verbatim=True))
        return NatsFile(key, "rb", info=info, open_stream=partial(ObjectStream, bucket, info, download, fetched))

    def update_object(
        self,
        key: str,
        *,
        seq: int,
        description: str | None = None,
        headers: Mapping[str, list[str]] | None = None,
    ) -> ObjectInfo:
        """``update_meta`` of what is stored under ``key``, whatever the name, only if its metadata is still
        the version at ``seq`` (what an editor was shown); ``ObjectChanged`` when another writer came first."""
        info = run(self.bucket.update_meta(key, description=description, headers=headers, expected_seq=seq))
        if info is None:
            raise self._missing(key)
        return info

    def follow_link(
        self, link: ObjectInfo, buckets: Callable[[str], Bucket | None] | None = None
    ) -> tuple[Bucket, ObjectInfo]:
        """The bucket and metadata of what ``link`` names, followed once as nats.go does; ``buckets(name)``: the
        bucket a link into another one may lead to (default: one a storage of this project serves)."""
        return run(links.follow(self.bucket, link, buckets or served_bucket))

    def delete_object(self, key: str) -> bool:
        """Delete what is stored under ``key``, whatever the name; False when nothing was there."""
        return run(self.bucket.delete(key))

    def destroy(self) -> None:
        """Delete the bucket and every object in it, for good."""
        run(self.bucket.destroy())
        run(index.forget(self.bucket))

    def listing_page(
        self, prefix: str = "", *, order: str = "name", descending: bool = False, offset: int = 0, limit: int = 100
    ) -> Page:
        """One page of ``listing(prefix)`` sorted by ``order`` ("name", "size" or "mtime"), with the count
        and total size of all: what an admin page shows, without sorting the whole bucket."""
        if order not in ("name", "size", "mtime"):
            raise ValueError(f"order by 'name', 'size' or 'mtime', not {order!r}")
        return run(index.page(self.bucket, prefix, order, descending, offset, limit))

    def listing(self, prefix: str = "") -> list[Entry]:
        """Name, size, modified time and link-ness of the live objects whose names start with ``prefix``,
        by name: from this process's index of the bucket, at the cost of what it returns once made."""
        return run(index.listing(self.bucket, prefix))

    def objects(self, prefix: str = "") -> list[ObjectInfo]:
        """The bucket's live objects whose names start with ``prefix``, sorted by name."""
        return run(self.bucket.sorted_objects(prefix))

    def watch(self, *, history: bool = False) -> Changes:
        """Changes to the bucket's objects as they happen (``history``: each object's latest first)."""
        return Changes(self.bucket.watch(history=history))

    def orphans(self, *, min_age: timedelta) -> list[OrphanChunks]:
        """Chunks no object points to, untouched for ``min_age`` (left by writers that died mid-upload)."""
        return run(garbage.orphans(self.bucket, min_age=min_age))

    def purge_orphans(self, orphans: list[OrphanChunks]) -> int:
        """Remove what ``orphans`` found; the number of chunk messages removed."""
        return run(garbage.purge(self.bucket, orphans))

    # -- async twins, for async views ----------------------------------------------

    async def asave(self, name: str | None, content: IO[Any], max_length: int | None = None) -> str:
        # Reading ``content`` is blocking file I/O: it gets a worker thread.
        return await sync_to_async(self.save, thread_sensitive=False)(name, content, max_length)

    async def aexists(self, name: str) -> bool:
        return await loop.arun(self._exists(name))

    async def asize(self, name: str) -> int:
        return (await loop.arun(self._info(name))).size

    async def adelete(self, name: str) -> None:
        if not name:
            raise ValueError("The name must be given to delete().")
        await loop.arun(self.bucket.delete(self.key(name)))

    async def alistdir(self, path: str) -> tuple[list[str], list[str]]:
        return await loop.arun(self._listdir(path))

    async def ainfo(self, name: str) -> ObjectInfo:
        return await loop.arun(self._info(name))

    async def aupdate_meta(
        self,
        name: str,
        *,
        description: str | None = None,
        headers: Mapping[str, str | list[str]] | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> ObjectInfo:
        return await loop.arun(self._update_meta(name, description, headers, metadata))

    async def aopen(self, name: str, mode: str = "rb") -> AsyncNatsFile | AsyncNatsWriter:
        """Open from async code; use ``async with``. ``rb`` streams a read; ``wb`` (``xb``: only if new)
        a write that appears, whole, on ``close()``."""
        mode = normal_mode(mode)
        if mode in ("wb", "xb"):
            name = clean_name(name)
            head, taken = saving.head_for(self, name, None), Taken.REFUSE if mode == "xb" else Taken.REPLACE
            upload = await loop.arun(Upload.begin(self.bucket, name=self.key(name)))

            async def commit(upload: Upload) -> str:
                await saving.commit(self, upload, name, head, taken)
                return name

            return AsyncNatsWriter(name, upload, commit)
        if mode != "rb":
            raise ValueError(f"aopen() streams bytes: use 'rb', 'wb' or 'xb', not {mode!r}")
        bucket, info = await loop.arun(self._located(name))
        return AsyncNatsFile(info, await loop.arun(Download.begin(bucket, info)))


# What can make an entry unusable: control characters, backslashes (a '..' between them), lone surrogates.
_SUSPECT = re.compile(r"[\x00-\x1f\x7f-\x9f\\\ud800-\udfff]")


def served_bucket(name: str) -> Bucket | None:
    """The bucket ``name`` as a configured storage serves it (for links into it), or None."""
    from natsstorage.status import configured_storages  # it imports this module

    for _, storage in configured_storages():
        if storage.config.bucket == name:
            return storage.bucket
    return None


def _usable(prefix: str, entry: str) -> bool:
    """Whether Django code may use ``prefix + entry``: the full check only for an entry that could fail it."""
    if not _SUSPECT.search(entry) and len(prefix) + len(entry) <= MAX_NAME_BYTES // 4:
        return True  # the prefix is clean, and the index never lists '', '.' or '..'
    try:
        clean_name(prefix + entry)
    except SuspiciousFileOperation:
        return False
    return True


def close_connections() -> None:
    """Close this process's NATS connections (before forking, or at the end of a test run);
    the next call on any storage connects again."""
    connections.close_connections()


def bucket_names(**options: Any) -> list[str]:
    """Every Object Store bucket on the server that the settings (and ``options``) point to."""
    config = conf.resolve(None, options)

    async def names() -> list[str]:
        nc = await connections.connection(config.connection)
        return await objectstore.bucket_names(nc, timeout=config.timeout)

    return run(names())
