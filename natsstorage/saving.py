"""How a storage writes an object: one hop for what fits a piece, streamed otherwise, named by compare-and-set.

``save()`` asks nothing before it writes: the compare-and-set that publishes
the metadata says whether the name was free. A taken name gets Django's
``get_available_name`` (or a subclass's override), whose checks ask nothing
either: the names the commits found taken are taken, the others are left to
the next commit's compare-and-set.
"""

from __future__ import annotations

import asyncio
import enum
import hashlib
import io
import mimetypes
from collections.abc import Iterator
from concurrent.futures import Future
from contextvars import ContextVar
from dataclasses import dataclass
from typing import IO, Any, Protocol

from django.core.files.base import File

from natsstorage import contenttypes, loop
from natsstorage.conf import Config
from natsstorage.exceptions import ObjectChanged
from natsstorage.files import PIECE_BYTES, ObjectSink
from natsstorage.jetstream import let_go
from natsstorage.loop import run
from natsstorage.names import clean_name
from natsstorage.objectstore import Bucket, ObjectInfo
from natsstorage.transfer import Upload

DEFAULT_CONTENT_TYPE = contenttypes.DEFAULT
METADATA_PARAMETER = "Metadata"  # in get_object_parameters(): the object's metadata map, as S3Storage names it
MAX_COMMIT_ATTEMPTS = 100  # concurrent writers of one name each win within a few
HASH_BESIDE_BYTES = 256 * 1024  # a piece at least this big is hashed by the caller's thread, beside the publishing


class SavingStorage(Protocol):
    """What a save asks of its storage (a ``NatsStorage``, which imports this module)."""

    @property
    def bucket(self) -> Bucket: ...
    @property
    def config(self) -> Config: ...
    def key(self, name: str) -> str: ...
    def get_object_parameters(self, name: str) -> dict[str, Any]: ...
    def get_available_name(self, name: str, max_length: int | None = None) -> str: ...


class Staged(Protocol):
    """An upload whose chunks are in a bucket already, waiting for a name (``natsstorage.uploads``)."""

    @property
    def sample(self) -> bytes: ...  # its first bytes, which decide a text type's charset
    def claim(self, storage: SavingStorage) -> Upload | None: ...  # to commit there; None: copy it
    def release(self) -> None: ...  # the commit failed: still nameless


class Taken(enum.Enum):
    """What a commit does when another object holds the name."""

    REPLACE = "replace"  # overwrite it
    REFUSE = "refuse"  # raise FileExistsError (open(..., "x"))
    REPORT = "report"  # return False: the caller picks another name


class Unknown(enum.Enum):
    VALUE = "unknown"


@dataclass(frozen=True)
class Saving:
    """A ``save()`` under way: what its name checks are asked about again when the name proves taken."""

    name: str  # as given to save()
    max_length: int | None
    taken: frozenset[str] = frozenset()  # the keys its commits found taken: any other is a commit's to try


# Set by save() around Django's get_available_name(), whose checks it leaves to the commit's
# compare-and-set: they cost no round trip of their own.
SAVING: ContextVar[Saving | None] = ContextVar("natsstorage_saving", default=None)


@dataclass(frozen=True)
class Head:
    """What an object carries beside its data: its headers and its ``metadata`` map."""

    headers: dict[str, list[str]]
    metadata: dict[str, str]


def head_for(storage: SavingStorage, name: str, content_type: str | None, sample: bytes | None = None) -> Head:
    """From ``get_object_parameters(name)``, asked once, in the caller's thread (an override may use the
    database): its ``Metadata`` is the metadata map, as S3Storage takes it; the rest are headers.

    The ``Content-Type`` is stored in its one spelling (``contenttypes``); ``sample``: the object's first
    bytes, when known, which give a text type its ``charset=utf-8``."""
    parameters = storage.get_object_parameters(name)
    headers = {key: [value] for key, value in parameters.items() if key != METADATA_PARAMETER}
    for key in [key for key in headers if key.lower() == "content-type"]:
        content_type = headers.pop(key)[0]  # the parameters' own, over the upload's
    content_type = content_type or mimetypes.guess_type(name)[0] or DEFAULT_CONTENT_TYPE
    metadata = dict(parameters.get(METADATA_PARAMETER) or {})
    return Head({"Content-Type": [contenttypes.normalise(content_type, sample=sample)]} | headers, metadata)


async def commit(
    storage: SavingStorage,
    upload: Upload,
    name: str,
    head: Head,
    taken: Taken,
    previous: ObjectInfo | None | Unknown = Unknown.VALUE,
) -> bool:
    """Publish a written object under ``name``; False when another object holds it (``Taken.REPORT``).

    ``previous``: the name's latest metadata, if asked for; else what this process knows of it. A new
    object assumes the name free (or the deletion marker this process left there) and a replacement
    the version this process knows, else it looks first: the compare-and-set says when they are not.
    """
    bucket, key = storage.bucket, storage.key(name)
    if previous is Unknown.VALUE:
        previous = await _previous(bucket, key, taken)
    for _ in range(MAX_COMMIT_ATTEMPTS):
        if previous is not None and taken is not Taken.REPLACE and bucket.live(previous):
            if taken is Taken.REFUSE:
                raise FileExistsError(f"{name!r} is already in the NATS bucket {bucket.name!r}")
            return False
        try:
            await upload.commit(key, previous=previous, headers=head.headers, metadata=head.metadata)
        except ObjectChanged:
            previous = await bucket.latest(key)
            continue
        return True
    raise ObjectChanged(f"{name!r} in bucket {bucket.name!r} kept changing while being saved")


def save(storage: SavingStorage, name: str, content: IO[Any], *, taken: Taken | None = None) -> str:
    """``Storage._save``: the name the object got; ``taken``: what a taken name gets (default: by file_overwrite)."""
    name = clean_name(name)
    content_type = getattr(content, "content_type", None)
    if taken is None:
        taken = Taken.REPLACE if storage.config.file_overwrite else Taken.REPORT
    staged: Staged | None = getattr(content, "staged", None)
    upload = staged.claim(storage) if staged is not None else None
    if staged is not None and upload is not None:
        return _commit_staged(storage, name, staged, upload, content_type, taken)
    first, rest = _first_piece(content)
    sample = first[: contenttypes.SNIFF_BYTES]  # what decides a text type's charset
    head = head_for(storage, name, content_type, sample)
    if rest is None and len(first) >= HASH_BESIDE_BYTES:
        upload, published = _put_hashing_beside(storage, name, first, head, taken)
    elif rest is None:
        upload, published = run(_put(storage, name, first, head, taken))
    else:
        upload, published = _stream(storage, name, first, rest, head, taken)
    try:
        refused: set[str] = set()
        while not published:  # another object holds the name
            name = _alternative_name(storage, name, refused)
            published = run(commit(storage, upload, name, head_for(storage, name, content_type, sample), taken))
    except BaseException:
        run(upload.abort())
        raise
    return name


def _commit_staged(
    storage: SavingStorage, name: str, staged: Staged, upload: Upload, content_type: str | None, taken: Taken
) -> str:
    """A staged upload's chunks are in the bucket: only its metadata goes. Not aborted when that fails:
    its staging purges it at the end of the request."""
    try:
        published = run(commit(storage, upload, name, head_for(storage, name, content_type, staged.sample), taken))
        refused: set[str] = set()
        while not published:
            name = _alternative_name(storage, name, refused)
            published = run(commit(storage, upload, name, head_for(storage, name, content_type, staged.sample), taken))
    except BaseException:
        staged.release()
        raise
    return name


def _assumed(bucket: Bucket, key: str, taken: Taken) -> ObjectInfo | None | Unknown:
    """What a commit at ``key`` expects there without asking (``Unknown``: it must ask); on the NATS loop.

    Whether a name is taken is only ever the server's to say: a name known taken is still assumed free."""
    if taken is not Taken.REPLACE:
        return bucket.known_deleted(key)
    known = bucket.known.get(key)
    return Unknown.VALUE if known is None else known


async def _previous(bucket: Bucket, key: str, taken: Taken) -> ObjectInfo | None:
    """What a commit at ``key`` expects there: what this process knows, else (a replacement) the server's answer."""
    previous = _assumed(bucket, key, taken)
    return await bucket.latest(key) if previous is Unknown.VALUE else previous


async def _put(
    storage: SavingStorage,
    name: str,
    data: bytes,
    head: Head,
    taken: Taken,
    digest: Future[bytes] | None = None,
) -> tuple[Upload, bool]:
    """An object in hand, no bigger than a piece, stored in one hop to the NATS loop (``digest``: its
    SHA-256, being computed by the caller's thread meanwhile)."""
    bucket, key = storage.bucket, storage.key(name)
    upload = await Upload.begin(bucket, name=key, caller_hashes=digest is not None)
    try:
        # A replacement of a version this process does not know asks for it while the chunk travels.
        previous = _assumed(bucket, key, taken)
        asked = asyncio.ensure_future(bucket.latest(key)) if previous is Unknown.VALUE else None
        try:
            await upload.write(data)
            if digest is not None:
                upload.hashed(await asyncio.wrap_future(digest))
            if asked is not None:
                previous = await asked
        finally:
            let_go(asked)
        return upload, await commit(storage, upload, name, head, taken, previous)
    except BaseException:
        await upload.abort()
        raise


def _put_hashing_beside(
    storage: SavingStorage, name: str, data: bytes, head: Head, taken: Taken
) -> tuple[Upload, bool]:
    """``_put`` of a piece worth hashing in the caller's thread (hashlib lets go of the GIL): the NATS loop
    publishes the chunks meanwhile, and the metadata follows once the digest is in."""
    digest: Future[bytes] = Future()
    work = loop.submit(_put(storage, name, data, head, taken, digest))
    try:
        digest.set_result(hashlib.sha256(data).digest())
    finally:
        digest.cancel()  # a no-op once set; else the upload is aborted
    return loop.wait(work)


def _stream(
    storage: SavingStorage, name: str, first: bytes, rest: Iterator[bytes], head: Head, taken: Taken
) -> tuple[Upload, bool]:
    """An object bigger than a piece: the caller's thread reads and hashes while the NATS loop publishes."""
    bucket, key = storage.bucket, storage.key(name)
    sink = ObjectSink(run(Upload.begin(bucket, caller_hashes=True, name=key)))
    asked = loop.submit(_previous(bucket, key, taken))  # a replacement's question, if any, while the data goes
    try:
        # The buffer gathers Django's small chunks into pieces worth a hop to the loop.
        pieces = io.BufferedWriter(sink, buffer_size=PIECE_BYTES)
        pieces.write(first)
        for piece in rest:
            pieces.write(piece)
        pieces.flush()
        sink.drain()
        return sink.upload, run(commit(storage, sink.upload, name, head, taken, loop.wait(asked)))
    except BaseException:
        asked.cancel()
        sink.abort()
        raise
    finally:
        sink.close()


def _alternative_name(storage: SavingStorage, name: str, refused: set[str]) -> str:
    """Django's answer to ``name``, which a commit just found taken; ``refused``: the keys found so far.

    Its checks ask the server nothing: a name a commit found taken is, any other is the next commit's to try
    (a round trip and a hop to the NATS loop fewer per name, and only a name taken meanwhile costs a commit)."""
    refused.add(storage.key(name))
    saving = SAVING.get() or Saving(name, None)  # None: _save() called directly
    token = SAVING.set(Saving(saving.name, saving.max_length, frozenset(refused)))
    try:
        return storage.get_available_name(saving.name, max_length=saving.max_length)
    finally:
        SAVING.reset(token)


def _first_piece(content: IO[Any]) -> tuple[bytes, Iterator[bytes] | None]:
    """Up to a piece of ``content``; then the rest of it, or None when that was all."""
    # Django's own File.chunks() reads a piece at a time when asked (nothing to join); an override may take no size.
    by_piece = getattr(getattr(content, "chunks", None), "__func__", None) is File.chunks
    pieces = content.chunks(PIECE_BYTES) if by_piece else content.chunks()  # type: ignore[attr-defined]
    chunks = (chunk.encode() if isinstance(chunk, str) else chunk for chunk in pieces)
    head: list[bytes] = []
    size = 0
    for chunk in chunks:
        head.append(chunk)
        size += len(chunk)
        if size > PIECE_BYTES:
            return b"".join(head), chunks
    return head[0] if len(head) == 1 else b"".join(head), None
