"""``NatsStorage``: Django's Storage API on a NATS JetStream Object Store bucket."""

from __future__ import annotations

import errno
import os
from collections.abc import Mapping
from datetime import datetime
from functools import cached_property, partial
from typing import IO, Any, ClassVar

from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib.staticfiles.storage import HashedFilesMixin
from django.core.exceptions import ImproperlyConfigured
from django.core.files.storage import Storage
from django.core.signals import setting_changed

from natsstorage import conf, connections, contenttypes, links, listingindex, loop, registry, saving
from natsstorage.addresses import Addresses
from natsstorage.files import (
    WRITE_MODES,
    AsyncNatsFile,
    AsyncNatsWriter,
    NatsFile,
    ObjectSink,
    ObjectStream,
    begin_reading,
    normal_mode,
)
from natsstorage.index import Index
from natsstorage.loop import run
from natsstorage.names import clean_name, clean_prefix, usable
from natsstorage.objectstore import Bucket, ObjectInfo
from natsstorage.rebuilding import Rebuildable
from natsstorage.saving import Taken
from natsstorage.spooled import SpooledFile, edit_mode
from natsstorage.transfer import Download, Upload


class NatsStorage(Rebuildable, Addresses, Storage):
    """Files kept in a NATS JetStream Object Store bucket.

    ``NatsStorage("configs")`` stores into the bucket ``configs``, creating it
    on first use. Options (the fields of ``natsstorage.conf.Config``) override
    ``settings.NATSSTORAGE``; ``alias="media"`` takes ``STORAGES["media"]["OPTIONS"]``
    under them. Migrations and pickles record the arguments given here, less the
    secret ones (credentials, servers); a storage built from ``STORAGES`` adds its
    alias there, so that a copy rebuilt in another process reads them from settings.
    The bucket as a whole (its figures, listings, any name it holds) is
    ``natsstorage.buckettools.BucketTools(storage)``'s.
    """

    # A subclass's own defaults: over settings.NATSSTORAGE, under the options it is given.
    defaults: ClassVar[Mapping[str, Any]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if issubclass(cls, HashedFilesMixin):  # Django writes its url() into stylesheets: links that never expire
            cls.defaults = {"public": True, **cls.defaults}

    def __init__(self, bucket: str | None = None, *, alias: str | None = None, **options: Any) -> None:
        self._bucket_name = bucket
        self._options: Mapping[str, Any] = options
        found = conf.problems(options, "NatsStorage options")
        if found:
            raise ImproperlyConfigured(" ".join(found[0]))
        self._remember_alias(alias)
        setting_changed.connect(self._setting_changed)

    def _setting_changed(self, *, setting: str, **kwargs: Any) -> None:
        if setting == conf.SETTING or (setting == conf.STORAGES and self._alias is not None):
            self.__dict__.pop("config", None)
            self.__dict__.pop("bucket", None)

    @cached_property
    def config(self) -> conf.Config:
        configured = conf.alias_options(self._alias, NatsStorage) if self._alias is not None else {}
        return conf.resolve(self._bucket_name, {**self.defaults, **configured, **self._options})

    @cached_property
    def bucket(self) -> Bucket:
        if self._secrets_left_out:
            raise ImproperlyConfigured(
                self._left_out_message(list(self._secrets_left_out), "this unpickled copy has none")
            )
        config = self.config
        return Bucket(
            config.bucket,
            partial(connections.connection, config.connection),
            timeout=config.timeout,
            chunk_size=config.chunk_size,
            window=config.window,
            create=config.bucket_config if config.create_bucket else None,
            listing_idle=config.listing_idle,
            listing=config.listing,
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
        """Raised as FileSystemStorage's and InMemoryStorage's are: ENOENT and the name; here, also the bucket."""
        where = f"No such file or directory in the NATS bucket {self.config.bucket!r}"
        return FileNotFoundError(errno.ENOENT, where, os.fspath(name))

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
        server = await listingindex.of(self.bucket)
        if server is not None:
            directories, files = await server.listdir(prefix)
        else:
            directories, files = (await Index.of(self.bucket)).listdir(prefix)
        # Names other clients wrote that Django code may not use (control characters, '..') are not listed.
        allowed = partial(usable, clean_prefix(path))  # what Django code names, relative to the location
        return sorted(filter(allowed, directories)), sorted(filter(allowed, files))

    async def _exists(self, name: str | os.PathLike[str] | None) -> bool:
        """An object, or a "directory": the storage's root, or a prefix some object's name has."""
        if os.fspath(name or "") in ("", ".", "./"):
            return True
        key = self.key(name)  # type: ignore[arg-type]
        if await self.bucket.info(key) is not None:
            return True
        server = await listingindex.of(self.bucket)
        if server is not None:
            return await server.has_directory(key)
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
            lists = contenttypes.in_headers(lists)
        key = self.key(name)
        info = await self.bucket.update_meta(key, description=description, headers=lists, metadata=metadata)
        if info is None:
            raise self._missing(name)
        return info

    async def _open_for_reading(
        self, name: str, *, verbatim: bool = False
    ) -> tuple[Bucket, ObjectInfo, Download | None, list[bytes]]:
        key = name if verbatim else self.key(name)
        return await begin_reading(self.bucket, key, partial(self._located, name, verbatim=verbatim))

    # -- Django's Storage API ----------------------------------------------------

    def open(
        self, name: str, mode: str = "rb", *, encoding: str | None = None, newline: str | None = None
    ) -> NatsFile | SpooledFile:
        """Stream an object: ``rb``/``r`` read it, ``wb``/``w`` write it (``xb``/``x``: only if new); ``r+b``,
        ``w+b``, ``ab``, ``a+b`` (or text) edit a spooled copy, written back on close (``natsstorage.spooled``).

        A written object appears, whole, when the file is closed; an error inside ``with`` leaves none.
        Text modes take ``encoding`` and ``newline`` as the built-in ``open()`` does.
        """
        return self._open(name, mode, encoding=encoding, newline=newline)

    def _open(
        self, name: str, mode: str = "rb", *, encoding: str | None = None, newline: str | None = None
    ) -> NatsFile | SpooledFile:
        if edit_mode(mode) is not None:
            return SpooledFile(self, name, edit_mode(mode) or mode, encoding=encoding, newline=newline)
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
        if self.config.file_overwrite:
            return True
        if type(self).exists is not NatsStorage.exists:
            return not self.exists(name)  # an override knows more (Django asks it too)
        under_way = saving.SAVING.get()
        if under_way is not None:
            return not under_way.taken or self.key(name) not in under_way.taken  # else: save()'s compare-and-set
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


def served_bucket(name: str) -> Bucket | None:
    """The bucket ``name`` as a configured storage serves it (where a link may lead), or None."""
    for _, storage in registry.configured(NatsStorage):
        if storage.config.bucket == name:
            return storage.bucket
    return None
