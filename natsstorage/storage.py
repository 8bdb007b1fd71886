"""``NatsStorage``: Django's Storage API on a NATS JetStream Object Store bucket."""

from __future__ import annotations

import mimetypes
from collections import deque
from collections.abc import Mapping
from concurrent.futures import Future
from datetime import datetime
from functools import cached_property, partial
from typing import IO, Any, Unpack
from urllib.parse import quote, urlencode

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.files.storage import Storage
from django.core.signals import setting_changed
from django.urls import NoReverseMatch, reverse
from django.utils.deconstruct import deconstructible

from natsstorage import _bridge, conf, objectstore, signing
from natsstorage._bridge import run
from natsstorage.exceptions import NatsStorageError, ObjectChanged
from natsstorage.files import AsyncNatsFile, NatsFile, ObjectStream
from natsstorage.names import clean_name, clean_prefix
from natsstorage.objectstore import Bucket, ObjectInfo

DEFAULT_CONTENT_TYPE = "application/octet-stream"
MAX_COMMIT_ATTEMPTS = 100  # concurrent writers of one name each win within a few
PIECE_BYTES = 1024 * 1024  # read from the content and handed to the NATS loop at once
PIECES_IN_FLIGHT = 3
URL_SAFE = "/~:@!$&'()*+,;="  # what reverse() leaves unquoted in a path (RFC 3986 sub-delims)


@deconstructible(path="natsstorage.NatsStorage")
class NatsStorage(Storage):
    """Files kept in a NATS JetStream Object Store bucket.

    ``NatsStorage("configs")`` stores into the bucket ``configs``, creating it
    on first use. Options (see ``natsstorage.conf.Config``) override
    ``settings.NATSSTORAGE``; only the arguments given here are recorded in
    migrations, so keep secrets in settings.
    """

    def __init__(self, bucket: str | None = None, **options: Unpack[conf.Options]) -> None:
        self._bucket_name = bucket
        self._options: Mapping[str, Any] = options
        found = conf.problems(options, "NatsStorage options")
        if found:
            raise ImproperlyConfigured(" ".join(found[0]))
        setting_changed.connect(self._setting_changed)

    def _setting_changed(self, *, setting: str, **kwargs: Any) -> None:
        if setting == conf.SETTING:
            self.__dict__.pop("config", None)
            self.__dict__.pop("bucket", None)

    @cached_property
    def config(self) -> conf.Config:
        return conf.resolve(self._bucket_name, self._options)

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
        return f"<NatsStorage bucket={self.config.bucket!r}>"

    # -- the one coroutine behind each sync method and its async twin ------------

    async def _info(self, name: str) -> ObjectInfo:
        info = await self.bucket.info(clean_name(name))
        if info is None:
            raise FileNotFoundError(f"{name!r} is not in the NATS bucket {self.config.bucket!r}")
        return info

    async def _listdir(self, path: str) -> tuple[list[str], list[str]]:
        prefix = clean_prefix(path)
        directories: set[str] = set()
        files: list[str] = []
        async for name in self.bucket.names():
            if name.startswith(prefix):
                head, slash, _ = name[len(prefix) :].partition("/")
                if slash:
                    directories.add(head)
                elif head:
                    files.append(head)
        return sorted(directories), sorted(files)

    async def _update_meta(
        self, name: str, description: str | None, headers: Mapping[str, str | list[str]] | None
    ) -> ObjectInfo:
        lists = None
        if headers is not None:
            lists = {key: [value] if isinstance(value, str) else list(value) for key, value in headers.items()}
        info = await self.bucket.update_meta(clean_name(name), description=description, headers=lists)
        if info is None:
            raise FileNotFoundError(f"{name!r} is not in the NATS bucket {self.config.bucket!r}")
        return info

    # -- Django's Storage API ----------------------------------------------------

    def _open(self, name: str, mode: str = "rb") -> NatsFile:
        if mode != "rb":
            raise ValueError(
                f"NatsStorage opens files for reading only ('rb'), not {mode!r}; write with storage.save()"
            )
        info = run(self._info(name))
        if info.is_link:
            raise NatsStorageError(
                f"{name!r} in bucket {self.config.bucket!r} is an Object Store link; natsstorage does not follow links"
            )
        return NatsFile(info, partial(ObjectStream, self.bucket, info))

    def _save(self, name: str, content: IO[Any]) -> str:
        name = clean_name(name)
        content_type = getattr(content, "content_type", None) or mimetypes.guess_type(name)[0] or DEFAULT_CONTENT_TYPE
        upload = run(self.bucket.upload(caller_hashes=True, name=name))
        # Without overwriting, Django has just seen the name free: assume it still is (no
        # round trip) and learn otherwise from the compare-and-set. To overwrite, ask for
        # the version to replace now, before the chunks queue up ahead of the question,
        # and take the answer at the end.
        asked = _bridge.submit(self.bucket.latest(name)) if self.config.file_overwrite else None
        writes: deque[Future[None]] = deque()
        try:
            # Read and hash the next piece here while the NATS loop publishes the last ones:
            # a few pieces of several chunks each in flight, in order (Upload.write queues them).
            for piece in content.chunks(max(self.config.chunk_size, PIECE_BYTES)):  # type: ignore[attr-defined]
                data = piece.encode() if isinstance(piece, str) else piece
                writes.append(_bridge.submit(upload.write(data)))
                upload.hash(data)
                if len(writes) >= PIECES_IN_FLIGHT:
                    _bridge.wait(writes.popleft())
            while writes:
                _bridge.wait(writes.popleft())
            previous = _bridge.wait(asked) if asked is not None else None
            for _ in range(MAX_COMMIT_ATTEMPTS):
                if previous is not None and self.bucket.live(previous) and not self.config.file_overwrite:
                    name, previous = self.get_available_name(name), None
                    continue
                try:
                    run(upload.commit(name, previous=previous, headers={"Content-Type": [content_type]}))
                except ObjectChanged:
                    previous = run(self.bucket.latest(name))
                    continue
                return name
            raise ObjectChanged(f"{name!r} in bucket {self.config.bucket!r} kept changing while being saved")
        except BaseException:
            for started in (*writes, asked):
                if started is not None:
                    started.cancel()  # send no more; abort() waits for what went out, then purges it
            run(upload.abort())
            raise

    def get_available_name(self, name: str, max_length: int | None = None) -> str:
        if self.config.file_overwrite:
            return clean_name(name)
        return super().get_available_name(clean_name(name), max_length)

    def delete(self, name: str) -> None:
        run(self.bucket.delete(clean_name(name)))

    def exists(self, name: str) -> bool:
        return run(self.bucket.info(clean_name(name))) is not None

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

    def url(self, name: str | None) -> str:
        """A link served by ``natsstorage.urls``: signed and expiring unless the storage is ``public``.

        Built locally, without touching the network.
        """
        name = clean_name(name or "")
        config = self.config
        if config.base_url:
            link = config.base_url + quote(f"{config.bucket}/{name}", safe=URL_SAFE)
        else:
            try:
                link = reverse("natsstorage:serve", kwargs={"bucket": config.bucket, "name": name})
            except NoReverseMatch:
                raise ImproperlyConfigured(
                    f"NatsStorage for bucket {config.bucket!r} has no URL: add "
                    "path('files/', include('natsstorage.urls')) to your URLconf, or set the base_url option"
                ) from None
        if config.public:
            return link
        return link + "?" + urlencode(signing.sign(config.bucket, name, expiry=config.url_expiry))

    def info(self, name: str) -> ObjectInfo:
        """The object's metadata: size, digest, content type, description, headers."""
        return run(self._info(name))

    def update_meta(
        self, name: str, *, description: str | None = None, headers: Mapping[str, str | list[str]] | None = None
    ) -> ObjectInfo:
        """Change an object's description and/or headers without rewriting its data."""
        return run(self._update_meta(name, description, headers))

    # -- async twins, for async views ----------------------------------------------

    async def asave(self, name: str | None, content: IO[Any], max_length: int | None = None) -> str:
        # Reading ``content`` is blocking file I/O: it gets a worker thread.
        return await sync_to_async(self.save, thread_sensitive=False)(name, content, max_length)

    async def aexists(self, name: str) -> bool:
        return await _bridge.arun(self.bucket.info(clean_name(name))) is not None

    async def asize(self, name: str) -> int:
        return (await _bridge.arun(self._info(name))).size

    async def adelete(self, name: str) -> None:
        await _bridge.arun(self.bucket.delete(clean_name(name)))

    async def alistdir(self, path: str) -> tuple[list[str], list[str]]:
        return await _bridge.arun(self._listdir(path))

    async def ainfo(self, name: str) -> ObjectInfo:
        return await _bridge.arun(self._info(name))

    async def aupdate_meta(
        self, name: str, *, description: str | None = None, headers: Mapping[str, str | list[str]] | None = None
    ) -> ObjectInfo:
        return await _bridge.arun(self._update_meta(name, description, headers))

    async def aopen(self, name: str) -> AsyncNatsFile:
        """Open for streaming reads from async code; use ``async with``."""
        info = await _bridge.arun(self._info(name))
        return AsyncNatsFile(info, await _bridge.arun(self.bucket.download(info)))


def bucket_names(**options: Unpack[conf.Options]) -> list[str]:
    """Every Object Store bucket on the server that the settings (and ``options``) point to."""
    config = conf.resolve(None, options)

    async def names() -> list[str]:
        nc = await _bridge.connection(config.connection)
        return await objectstore.bucket_names(nc, timeout=config.timeout)

    return run(names())
