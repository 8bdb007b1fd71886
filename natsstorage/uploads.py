"""Uploads that stream into the bucket while the request body arrives: ``NatsUploadHandler``.

Django's own handlers keep an upload in memory or write it whole to a temporary file, which
``save()`` then reads back and sends again. This handler publishes each file's chunks to a bucket
as the request is parsed, with only a few pieces in memory; the view gets a ``StagedFile``, which
reads them back from the bucket when code reads it (a form's checks, an image's dimensions).
Saving it through a ``NatsStorage`` of that bucket sends no byte again: only the metadata is
published, under the final name (chunks are keyed by nuid, metadata by name). Any other save
copies it, streamed. Files the request never saved are purged when it ends; what a process that
died leaves behind, ``natsos_gc`` collects.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import shutil
import tempfile
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import IO, TYPE_CHECKING, Any

from django.conf import settings
from django.core.files.storage import storages
from django.core.files.uploadedfile import UploadedFile
from django.core.files.uploadhandler import FileUploadHandler, StopFutureHandlers
from django.http import HttpRequest, QueryDict
from django.http.multipartparser import MultiPartParserError
from django.utils.datastructures import MultiValueDict

from natsstorage import conf, contenttypes, loop
from natsstorage.exceptions import NatsStorageError, NatsUnavailable
from natsstorage.files import PIECE_BYTES, ObjectSink, ObjectStream
from natsstorage.objectstore import DEFAULT_CHUNK_SIZE, ObjectInfo, encode_digest
from natsstorage.saving import SavingStorage
from natsstorage.storage import NatsStorage
from natsstorage.transfer import Upload

logger = logging.getLogger("natsstorage")

FAILURE = "natsstorage_upload_failure"  # the request attribute holding why its uploads were not stored

if TYPE_CHECKING:
    _UploadedFile = UploadedFile[bytes]
else:
    _UploadedFile = UploadedFile  # not subscriptable at run time


class UploadNotStored(NatsStorageError, MultiPartParserError):
    """A form's file could not go into its bucket: full, or refused (``status`` 507), or NATS away (503).

    Raised where ``request.POST`` or ``request.FILES`` is read, after every file of the request was purged.
    A ``MultiPartParserError``: Django answers 400 (its answer to a body it cannot read) wherever the body is
    parsed, the CSRF middleware included, never 500; ``UploadFailureMiddleware`` answers ``status`` instead.
    """

    def __init__(self, message: str, *, status: int) -> None:
        super().__init__(message)
        self.status = status


class Staging:
    """One file's chunks in a bucket: written as the request arrives, then committed once, or purged."""

    def __init__(self, storage: NatsStorage, upload: Upload) -> None:
        self.storage = storage
        self.upload = upload
        self._sink = ObjectSink(upload)  # hashes in this thread; at most a few pieces wait for the NATS loop
        self._pieces = io.BufferedWriter(self._sink, buffer_size=PIECE_BYTES)  # Django's 64 KiB into pieces
        self._sample = bytearray()
        self.info: ObjectInfo | None = None  # once every chunk is stored
        self._settled = False  # claimed by a save (committed, or being committed), or purged
        self._lock = threading.Lock()

    @property
    def sample(self) -> bytes:
        """The first bytes (``contenttypes.SNIFF_BYTES`` at most): what decides a text type's charset."""
        return bytes(self._sample)

    def write(self, data: bytes) -> None:
        if len(self._sample) < contenttypes.SNIFF_BYTES:
            self._sample += data[: contenttypes.SNIFF_BYTES - len(self._sample)]
        self._pieces.write(data)

    def finish(self, name: str) -> ObjectInfo:
        """Store the last chunk and wait until every chunk is in: the file's metadata, not yet published."""
        self._pieces.flush()
        self._sink.drain()
        digest = loop.run(self.upload.flush())
        assert digest is not None  # (every byte went through this upload: none resumed)
        self._pieces.close()  # its buffer (a piece) freed now, not with the request: a request has many files
        upload = self.upload
        raw = {
            "name": name,  # (for messages: it has none yet)
            "bucket": upload.bucket.name,
            "nuid": upload.nuid,
            "size": upload.size,
            "chunks": upload.chunks,
            "digest": encode_digest(digest),
            "options": {"max_chunk_size": upload.chunk_size},
        }
        self.info = ObjectInfo.from_raw(raw, seq=0, time=datetime.now(UTC))
        return self.info

    def claim(self, storage: SavingStorage) -> Upload | None:
        """The upload, to commit into ``storage``'s bucket if it is the one staged in and it is not committed
        yet; None: the save copies the file (two names never share chunks, which a delete of one would purge)."""
        same = (
            storage.config.bucket == self.storage.config.bucket
            and storage.config.connection == self.storage.config.connection
        )
        with self._lock:
            if not same or self.info is None or self._settled:
                return None
            self._settled = True
        self.upload.bucket = storage.bucket  # its caches learn the new name
        return self.upload

    def release(self) -> None:
        """The commit failed: nameless again, for another save or the purge at the end of the request."""
        with self._lock:
            self._settled = False

    def discard(self) -> None:
        """Purge the chunks unless a save committed them. Never raises (``Upload.abort``)."""
        with self._lock:
            if self._settled:
                return
            self._settled = True
        self._sink.abort()


class StagedFile(_UploadedFile):
    """An uploaded file whose chunks are in a bucket: read back from it, chunk by chunk, when code reads it."""

    def __init__(
        self,
        staged: Staging,
        name: str | None,
        content_type: str | None,
        charset: str | None,
        content_type_extra: dict[str, bytes] | None,
    ) -> None:
        assert staged.info is not None  # finished
        self.staged = staged  # what NatsStorage.save() commits (natsstorage.saving)
        self._copy: IO[bytes] | None = None  # a copy on disk, once code asked for a path
        content_type, charset = bounded(content_type, charset)
        super().__init__(self._reader(), name, content_type, staged.info.size, charset, content_type_extra)

    def _reader(self) -> IO[bytes]:
        info = self.staged.info
        assert info is not None
        stream = ObjectStream(self.staged.storage.bucket, info)
        return io.BufferedReader(stream, buffer_size=info.chunk_size or DEFAULT_CHUNK_SIZE)

    def open(self, mode: str | None = None, *args: Any, **kwargs: Any) -> StagedFile:
        """Back to the start (read again from the bucket when closed)."""
        if self.closed:
            self.file = self._reader()
        else:
            self.seek(0)
        return self

    @property
    def temporary_file_path(self) -> Callable[[], str]:
        """For a file over ``FILE_UPLOAD_MAX_MEMORY_SIZE`` only, as Django's handlers give one: code that asks
        for a path gets a copy in ``FILE_UPLOAD_TEMP_DIR``, made then. A ``forms.ImageField`` asks (Pillow reads
        the image from it); without a path it reads the file whole into memory, as it does a smaller one."""
        if self.size is None or self.size <= settings.FILE_UPLOAD_MAX_MEMORY_SIZE:
            raise AttributeError("temporary_file_path")
        return self._copy_on_disk

    def _copy_on_disk(self) -> str:
        if self._copy is None:
            suffix = ".upload" + os.path.splitext(self.name or "")[1]
            copy = tempfile.NamedTemporaryFile(suffix=suffix, dir=settings.FILE_UPLOAD_TEMP_DIR)  # noqa: SIM115
            try:
                with self._reader() as source:
                    shutil.copyfileobj(source, copy, PIECE_BYTES)
                copy.flush()
            except BaseException:
                copy.close()
                raise
            self._copy = copy
        return self._copy.name

    def close(self) -> None:
        try:
            super().close()
        finally:
            if self._copy is not None:
                copy, self._copy = self._copy, None
                with contextlib.suppress(FileNotFoundError):  # moved away (FileSystemStorage's save)
                    copy.close()


def bounded(content_type: str | None, charset: str | None) -> tuple[str, str | None]:
    """What a browser said a file is, in the one spelling ``contenttypes`` stores: a type and a valid charset."""
    kind = contenttypes.normalise(content_type or contenttypes.DEFAULT)
    if not charset:
        return kind, None
    with_charset = contenttypes.normalise(f"{kind}; charset={charset}")
    if with_charset == contenttypes.DEFAULT:  # a charset that does not parse: the type alone
        return kind, None
    kind, _, found = with_charset.partition("; charset=")
    return kind, found or None


class NatsUploadHandler(FileUploadHandler):
    """Streams each uploaded file into a bucket as the request body arrives: no temporary file, flat memory.

    The bucket is ``storage``'s, else that of the ``STORAGES`` alias ``NATSSTORAGE_UPLOAD_STORAGE`` names
    (``default``). When that storage is not a ``NatsStorage`` the handler steps aside and the handlers after
    it in ``FILE_UPLOAD_HANDLERS`` (Django's) take the files. Put it first there, or use ``stage_uploads``.
    """

    def __init__(self, request: HttpRequest | None = None, *, storage: NatsStorage | None = None) -> None:
        super().__init__(request)
        self._storage = storage
        self._resolved = storage is not None
        self.staged: list[Staging] = []  # this request's files, to purge at its end unless saved
        self._current: Staging | None = None  # the file being received
        self._purging = False

    def target(self) -> NatsStorage | None:
        """The storage whose bucket files are staged in; None: this handler steps aside."""
        if not self._resolved:
            found = storages[conf.upload_storage_alias()]
            self._storage = found if isinstance(found, NatsStorage) else None
            self._resolved = True
        return self._storage

    def handle_raw_input(
        self,
        input_data: IO[bytes],
        META: dict[str, str],
        content_length: int,
        boundary: str,
        encoding: str | None = None,
    ) -> tuple[QueryDict, MultiValueDict[str, UploadedFile[Any]]] | None:
        self.target()  # a misconfigured alias fails before any byte is read
        return None

    def new_file(
        self,
        field_name: str,
        file_name: str,
        content_type: str,
        content_length: int | None,
        charset: str | None = None,
        content_type_extra: dict[str, bytes] | None = None,
    ) -> None:
        super().new_file(field_name, file_name, content_type, content_length, charset, content_type_extra)
        self._current = None
        storage = self.target()
        if storage is None:
            return
        try:
            upload = loop.run(Upload.begin(storage.bucket, caller_hashes=True, name=file_name))
        except NatsStorageError as error:  # Django's handlers after this one take the file
            logger.warning("uploads are not staged in bucket %r: %s", storage.config.bucket, error)
            return
        self._current = Staging(storage, upload)
        self.staged.append(self._current)
        self._purge_at_request_end()
        raise StopFutureHandlers  # (so that no other handler opens a temporary file for it)

    def receive_data_chunk(self, raw_data: bytes, start: int) -> bytes | None:
        if self._current is None:
            return raw_data
        try:
            self._current.write(raw_data)
        except NatsStorageError as error:
            raise self._failed(error) from error
        except BaseException:
            self._current.discard()
            raise
        return None

    def file_complete(self, file_size: int) -> UploadedFile[Any] | None:
        staged, self._current = self._current, None
        if staged is None:
            return None
        try:
            staged.finish(f"the upload of {self.file_name!r}")
        except NatsStorageError as error:
            raise self._failed(error) from error
        except BaseException:
            staged.discard()
            raise
        return StagedFile(staged, self.file_name, self.content_type, self.charset, self.content_type_extra)

    def upload_interrupted(self) -> None:
        if self._current is not None:
            self._current.discard()

    def _failed(self, error: NatsStorageError) -> UploadNotStored:
        """Why the file being received cannot be stored, once every file of the request is purged: the
        request ends without its body (nothing of it can be saved), so the purge need not wait for its end."""
        self._current = None
        self.discard()
        storage = self.target()
        bucket = storage.config.bucket if storage is not None else "?"
        status = 503 if isinstance(error, NatsUnavailable) else 507
        failure = UploadNotStored(
            f"the upload of {self.file_name!r} could not be stored in bucket {bucket!r}: {error}", status=status
        )
        if self.request is not None:
            setattr(self.request, FAILURE, failure)  # for UploadFailureMiddleware
        logger.warning("%s", failure)
        return failure

    def discard(self) -> None:
        """Purge every file of this request that no save committed."""
        for staged in self.staged:
            staged.discard()

    def _purge_at_request_end(self) -> None:
        """Django closes the request once its response is sent (``request.close``, after the view, under WSGI,
        ASGI and the test client alike): then this request's files that no save committed are purged, whether
        the form was invalid, the view failed or the body was cut off mid-file."""
        request = self.request
        if request is None or self._purging:
            return
        self._purging = True
        close = request.close

        def close_and_purge() -> None:
            try:
                close()
            finally:
                self.discard()

        request.close = close_and_purge  # type: ignore[method-assign]


def stage_uploads(request: HttpRequest, storage: NatsStorage) -> None:
    """Stream this request's uploads into ``storage``'s bucket: call before ``request.POST`` or ``FILES`` is
    read (a view that stages per bucket is ``csrf_exempt`` and checks CSRF itself, afterwards, as Django's
    docs show for upload handlers). The project's other handlers stay after it."""
    others = [handler for handler in request.upload_handlers if not isinstance(handler, NatsUploadHandler)]
    request.upload_handlers = [NatsUploadHandler(request, storage=storage), *others]
