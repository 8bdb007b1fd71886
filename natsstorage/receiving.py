"""The views a browser uploads to directly: a signed link (``NatsStorage.upload_url``) that takes ``PUT``, a
multipart ``POST`` and tus 1.0.0 (``tus``), and the link a ``DirectUploadWidget`` asks for once its user has
picked a file.

The body is read in pieces of ``PIECE_BYTES`` (Django's request stream: under WSGI straight from the socket,
under ASGI from the file Django's handler spooled it to) and each goes to the bucket while the next arrives.
Every header is bounded before it is used; a bad request gets a 4xx and leaves nothing but what a resume needs.
A request that stops before the file's end stores every byte it received (the last chunk short), to go on from.
"""

from __future__ import annotations

import contextlib
import json
import logging
import posixpath
import re
from typing import Any, NoReturn

from django.core.exceptions import SuspiciousFileOperation, SuspiciousOperation
from django.core.files.uploadhandler import FileUploadHandler, StopUpload
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed, JsonResponse, UnreadablePostError
from django.http.multipartparser import MultiPartParser, MultiPartParserError
from django.views.decorators.csrf import csrf_exempt

from natsstorage import contenttypes, cors, direct, loop, registry, saving, signing, tus
from natsstorage.direct import Link, Result
from natsstorage.exceptions import BucketNotFound, CorruptObject, NatsStorageError, NatsUnavailable, ObjectChanged
from natsstorage.files import PIECE_BYTES
from natsstorage.loop import run
from natsstorage.saving import Taken
from natsstorage.storage import NatsStorage
from natsstorage.transfer import Upload

logger = logging.getLogger("natsstorage")

NUMBER = re.compile(r"[0-9]{1,15}", re.ASCII)  # a size or an offset: ASCII digits, few enough for int()
OFFSET_HEADER = "Upload-Offset"  # as tus names them: where this request's bytes start, and what is stored
LENGTH_HEADER = "Upload-Length"  # the whole file's size (default: where this request's bytes end)
RESULT_HEADER = "Upload-Result"  # a finished upload's signed result, for a form to submit (tus has no body)
MAX_FILE_NAME = 255  # characters of the file name a widget sends
MAX_PREPARE_BODY = 8 * 1024  # bytes of a widget's request for a link
FILE_FIELD = "file"  # the part of a multipart POST that holds the file
FORM_ROOM = 64 * 1024  # bytes a multipart POST may hold beside the file: boundaries, part headers, small fields


def _text(
    message: str, status: int, offset: int | None = None, *, headers: dict[str, str] | None = None
) -> HttpResponse:
    headers = {"Cache-Control": "no-store", **(headers or {})}
    if offset is not None:
        headers[OFFSET_HEADER] = str(offset)
    return HttpResponse(message, status=status, content_type="text/plain; charset=utf-8", headers=headers)


def _number(value: str | None, default: int | None = None) -> int | None:
    """A header's whole number; ``default`` when it is missing, None when it is not a number."""
    if value is None or value == "":
        return default
    return int(value) if NUMBER.fullmatch(value) else None


def _type_refused(content_type: str, link: Link, *, missing_allowed: bool = False) -> str | None:
    """Why the link does not take ``content_type``, if it does not (none given: only if it allows any)."""
    if not content_type and missing_allowed and not link.content_types:
        return None
    if len(content_type) <= contenttypes.MAX_LENGTH and direct.type_allowed(content_type, link.content_types):
        return None
    allowed = ", ".join(link.content_types) or "a type/subtype"
    return f"This link takes {allowed}, not {content_type[:100]!r}."


def storage_for(bucket: str, location: str) -> NatsStorage | None:
    """The configured storage a link or result was signed for, by its bucket and location."""
    for _, storage in registry.configured(NatsStorage):
        if storage.config.bucket == bucket and storage.config.location == location:
            return storage
    return None


METHODS = ["PUT", "POST", "HEAD", "PATCH", "DELETE", "OPTIONS"]


@csrf_exempt  # the signed link is the credential; no cookie is needed or used
def receive(request: HttpRequest, token: str) -> HttpResponse:
    """Take a file's bytes at a signed upload link: by ``PUT``, by a multipart ``POST`` form, or by tus 1.0.0
    (``POST`` to create, ``PATCH`` to append, ``HEAD``, ``DELETE``, ``OPTIONS``); docs/direct-uploads.md."""
    speaks_tus = tus.RESUMABLE in request.headers or request.method in ("PATCH", "DELETE", "OPTIONS")
    response = _receive(request, token, speaks_tus)
    if speaks_tus:
        response[tus.RESUMABLE] = tus.VERSION
    return cors.add(request, response)


def _receive(request: HttpRequest, token: str, speaks_tus: bool) -> HttpResponse:
    if request.method not in METHODS:
        return HttpResponseNotAllowed(METHODS)
    if request.method == "OPTIONS":  # a tus client's question, or a browser's CORS preflight: no token needed
        return _options(token)
    if speaks_tus and request.headers.get(tus.RESUMABLE) != tus.VERSION:
        response = _text(f"This server speaks tus {tus.VERSION}: send {tus.RESUMABLE}: {tus.VERSION}.", 412)
        response["Tus-Version"] = tus.VERSION
        return response
    try:
        link = Link.from_token(token)
    except signing.LinkRefused as error:
        return _text(str(error), 403)
    storage = storage_for(link.bucket, link.location)
    if storage is None:
        return _text("This link names no storage of this site.", 404)
    key = storage.key(link.name)
    try:
        where = run(direct.stored(storage.bucket, key, link.nuid))
    except NatsUnavailable as error:
        logger.warning("cannot take an upload: %s", error)
        return _text("The file store is unavailable; try again shortly.", 503)
    except BucketNotFound:
        return _text("This link's bucket does not exist.", 404)
    method = request.method
    if method == "POST" and speaks_tus:  # tus-js-client's overridePatchMethod, where PATCH cannot be sent
        method = {"PATCH": "PATCH", "DELETE": "DELETE"}.get(request.headers.get(tus.METHOD_OVERRIDE, ""), method)
    if method == "HEAD":
        return _head(link, where)
    if method == "POST":
        if speaks_tus:
            return _create(request, storage, link, key, where)
        return _post(request, storage, link, key, where)
    if method == "DELETE":
        return _terminate(storage, link, key, where)
    if method == "PATCH":
        return _patch(request, storage, link, key, where)
    return _put(request, storage, link, key, where)


def _options(token: str) -> HttpResponse:
    response = _text("", 204)
    response["Tus-Version"] = tus.VERSION
    response["Tus-Extension"] = tus.EXTENSIONS
    with contextlib.suppress(signing.LinkRefused):
        response["Tus-Max-Size"] = str(Link.from_token(token).max_size)
    return response


def _head(link: Link, where: direct.Stored) -> HttpResponse:
    response = _text("", 200, where.offset)
    if where.done is not None:
        response[LENGTH_HEADER] = str(where.done.size)
        response[RESULT_HEADER] = _result(link, where.done.size, where.done.digest)
    elif link.length is not None:
        response[LENGTH_HEADER] = str(link.length)
    return response


def _create(request: HttpRequest, storage: NatsStorage, link: Link, key: str, where: direct.Stored) -> HttpResponse:
    """tus creation: the file's size and type, checked; its upload is this link signed again with them
    (``Location``). The link's earlier chunks, if any, are dropped: a creation starts an upload anew."""
    if "Upload-Defer-Length" in request.headers:
        return _text(f"Send {LENGTH_HEADER}: creation-defer-length is not supported.", 400)
    length = _number(request.headers.get(LENGTH_HEADER))
    if length is None:
        return _text(f"Send {LENGTH_HEADER}, the file's size in bytes.", 400)
    if length > link.max_size:
        return _text(f"This link takes at most {link.max_size} bytes, not {length}.", 413)
    if _number(request.META.get("CONTENT_LENGTH"), 0) != 0:
        return _text("Send the file's bytes with PATCH to the upload's Location (no creation-with-upload).", 400)
    try:
        metadata = tus.metadata(request.headers.get(tus.METADATA, ""))
    except ValueError as error:
        return _text(str(error), 400)
    content_type = metadata.get(tus.FILETYPE, b"").decode()
    refused = _type_refused(content_type, link, missing_allowed=True)
    if refused is not None:
        return _text(f"{refused} (the {tus.FILETYPE} of {tus.METADATA})", 415)
    if where.done is not None:
        return _text("This upload is finished.", 409, where.offset)
    if where.chunks:
        run(direct.purge(storage.bucket, link.nuid, key))
    headers = {"Location": posixpath.join(posixpath.dirname(request.path), link.created(length, content_type))}
    if not length:  # an empty file: nothing to PATCH, so tus clients are done once it is created
        sizes = (0, 0, 0)
        done = _append(request, storage, link, key, direct.Stored(0), sizes, content_type, by_tus=True)
        if done.status_code != 204:
            return done
        headers[RESULT_HEADER] = done[RESULT_HEADER]
    return _text("", 201, 0, headers=headers)


def _terminate(storage: NatsStorage, link: Link, key: str, where: direct.Stored) -> HttpResponse:
    """tus termination: the chunks of an unfinished upload are removed. A finished one is the site's file."""
    if where.done is not None:
        return _text("This upload is finished: its file is deleted with the site's own means.", 409, where.offset)
    if where.chunks:
        run(direct.purge(storage.bucket, link.nuid, key))
    return _text("", 204)


def _patch(request: HttpRequest, storage: NatsStorage, link: Link, key: str, where: direct.Stored) -> HttpResponse:
    if (request.META.get("CONTENT_TYPE") or "").partition(";")[0].strip().lower() != tus.BODY_TYPE:
        return _text(f"Send the bytes as {tus.BODY_TYPE}.", 415, where.offset)
    if link.length is None:
        return _text(f"Create the upload first: POST {LENGTH_HEADER} to this link gives its Location.", 400)
    if not request.META.get("CONTENT_LENGTH"):
        return _text("Send the bytes with a Content-Length.", 411, where.offset)
    length = _number(request.META.get("CONTENT_LENGTH"))
    offset = _number(request.headers.get(OFFSET_HEADER))
    if length is None or offset is None:
        return _text(f"Content-Length and {OFFSET_HEADER} are whole numbers of bytes.", 400, where.offset)
    if offset + length > link.length:
        return _text(f"This upload is {link.length} bytes: the body goes past its end.", 400, where.offset)
    return _append(request, storage, link, key, where, (offset, length, link.length), link.content_type, by_tus=True)


def _put(request: HttpRequest, storage: NatsStorage, link: Link, key: str, where: direct.Stored) -> HttpResponse:
    content_type = request.META.get("CONTENT_TYPE") or ""
    refused = _type_refused(content_type, link, missing_allowed=True)
    if refused is not None:
        return _text(refused, 415, where.offset)
    if not request.META.get("CONTENT_LENGTH"):
        return _text("Send the file with a Content-Length.", 411, where.offset)
    length = _number(request.META.get("CONTENT_LENGTH"))
    offset = _number(request.headers.get(OFFSET_HEADER), 0)
    if length is None or offset is None:
        return _text(f"Content-Length and {OFFSET_HEADER} are whole numbers of bytes.", 400, where.offset)
    total = _number(request.headers.get(LENGTH_HEADER), offset + length)
    if total is None or offset + length > total:
        return _text(f"{LENGTH_HEADER} is the whole file's size: at least where this request ends.", 400)
    if total > link.max_size:
        if where.chunks and where.done is None:
            run(direct.purge(storage.bucket, link.nuid, key))
        return _text(f"This link takes at most {link.max_size} bytes, not {total}.", 413, 0)
    return _append(request, storage, link, key, where, (offset, length, total), content_type, by_tus=False)


def _append(
    request: HttpRequest,
    storage: NatsStorage,
    link: Link,
    key: str,
    where: direct.Stored,
    sizes: tuple[int, int, int],
    content_type: str,
    *,
    by_tus: bool,
) -> HttpResponse:
    """A ``PUT`` or a ``PATCH`` of ``sizes`` (where its bytes start, how many, the file's size), checked."""
    offset, length, total = sizes
    if where.done is not None:  # finished already: only the last request, sent again, is answered (its result)
        if offset == total == where.offset and length == 0:
            return _finished(link, where.done.size, where.done.digest, by_tus=by_tus)
        return _text("This upload is finished.", 409, where.offset)
    if offset != where.offset:
        return _text(f"The upload stands at byte {where.offset}: go on from there.", 409, where.offset)
    try:
        upload = run(direct.start(storage.bucket, key, link.nuid, where))
    except NatsUnavailable as error:
        logger.warning("cannot take an upload: %s", error)
        return _text("The file store is unavailable; try again shortly.", 503)
    except ObjectChanged:  # another request took the tail to go on from
        return _text("Another request is writing this upload.", 409, where.offset)
    except NatsStorageError as error:  # a chunk cut short: not an upload this view wrote
        logger.warning("cannot resume an upload: %s", error)
        return _text("This upload cannot be resumed: start again with a new link.", 409)
    if upload.written != offset:  # an earlier request's chunks still landing
        with contextlib.suppress(NatsStorageError):
            run(upload.flush())  # a short last chunk the resume took back goes back
        run(upload.abort(keep_chunks=True))
        return _text(f"The upload stands at byte {upload.size}: go on from there.", 409, upload.size)
    return _stream(request, storage, link, key, upload, sizes, content_type, by_tus=by_tus)


def _stream(
    request: HttpRequest,
    storage: NatsStorage,
    link: Link,
    key: str,
    upload: Upload,
    sizes: tuple[int, int, int],
    content_type: str,
    *,
    by_tus: bool,
) -> HttpResponse:
    """Read at most ``length`` bytes (the Content-Length, checked against the link's size) into the bucket:
    commit when they end the file (``offset + length == total``), else store every byte received (the last
    chunk short: ``direct.resume`` takes it back) to resume from."""
    offset, length, total = sizes
    received = 0
    try:
        while received < length:
            try:
                piece = request.read(min(PIECE_BYTES, length - received))
            except UnreadablePostError:  # the connection was cut
                break
            if not piece:
                break
            received += len(piece)
            _write(upload, piece)
        if received < length or offset + length < total:
            run(upload.flush())  # every byte received is stored, to resume from
            if received < length:
                return _text(f"The body ended early; the upload stands at byte {upload.size}.", 400, upload.size)
            return _text("", 204, upload.size)
        return _commit(storage, link, key, upload, content_type, by_tus=by_tus)
    except (NatsStorageError, FileExistsError) as error:
        return _stopped(upload, key, error, resumable=True)
    except BaseException:
        run(upload.abort())
        raise


def _stopped(upload: Upload, key: str, error: OSError, *, resumable: bool) -> HttpResponse:
    """The answer to what stopped an upload. Its whole chunks stay where its client may go on from them:
    after another writer's chunk (``ObjectChanged``), and, for a ``PUT``, while NATS is away."""
    keep = isinstance(error, ObjectChanged) or (resumable and isinstance(error, NatsUnavailable))
    run(upload.abort(keep_chunks=keep))
    if isinstance(error, ObjectChanged):  # the first chunk found another writer's after those read back
        return _text("Another request is writing this upload.", 409)
    if isinstance(error, FileExistsError):
        return _text("Another file took this name since the link was signed: ask for a new link.", 409, 0)
    if isinstance(error, NatsUnavailable):
        logger.warning("cannot take an upload: %s", error)
        return _text("The file store is unavailable; try again shortly.", 503)
    logger.warning("an upload to %r was refused: %s", key, error)  # by the server: a full bucket, say
    return _text("The file store refused this upload.", 507, 0)


def _write(upload: Upload, piece: bytes) -> None:
    writing = loop.submit(upload.write(piece), blocking=True)
    upload.hash(piece)  # here, while the loop publishes
    loop.wait(writing)


def _commit(
    storage: NatsStorage, link: Link, key: str, upload: Upload, content_type: str, *, by_tus: bool = False
) -> HttpResponse:
    """Name the object, once the stream holds exactly the chunks this upload counted."""
    resumed = upload.digest is None  # its digest is read back from its chunks, once they are all there
    run(upload.flush() if resumed else upload.drain())  # (else the last chunk goes with the metadata)
    try:
        if run(direct.chunk_count(storage.bucket, link.nuid)) != upload.chunks:
            raise CorruptObject("another request wrote beside this one")
        if resumed:
            upload.hashed(run(direct.digest_of(storage.bucket, key, link.nuid, upload.chunk_size, upload.size)))
    except CorruptObject as error:
        logger.info("an upload to %r was scrambled: %s", key, error)  # (its link's holder did it)
        run(direct.purge(storage.bucket, link.nuid, key))
        return _text("Two requests wrote this upload at once: start again from byte 0.", 409, 0)
    head = saving.head_for(storage, link.name, content_type or None)
    taken = Taken.REPLACE if storage.config.file_overwrite else Taken.REFUSE
    run(saving.commit(storage, upload, link.name, head, taken))
    info = run(storage.bucket.latest(key))
    assert info is not None
    return _finished(link, info.size, info.digest, by_tus=by_tus)


class _IntoBucket(FileUploadHandler):
    """Takes the one file part of a multipart ``POST`` (``FILE_FIELD``) straight into the upload, checking
    its type before its first byte and its size at every piece; any other file part is refused."""

    chunk_size = PIECE_BYTES

    def __init__(self, upload: Upload, link: Link) -> None:
        super().__init__()
        self.upload, self.link = upload, link
        self.refused: HttpResponse | None = None
        self.complete = False

    def _refuse(self, message: str, status: int) -> NoReturn:
        self.refused = _text(message, status, 0)
        raise StopUpload(connection_reset=True)

    def new_file(self, field_name: str, file_name: str, content_type: str, *args: Any, **kwargs: Any) -> None:
        super().new_file(field_name, file_name, content_type, *args, **kwargs)
        if field_name != FILE_FIELD or self.complete:
            self._refuse(f"Send one file, in the part named {FILE_FIELD!r}.", 400)
        if len(content_type) > contenttypes.MAX_LENGTH or not direct.type_allowed(
            content_type, self.link.content_types
        ):
            allowed = ", ".join(self.link.content_types) or "a type/subtype"
            self._refuse(f"This link takes {allowed}, not {content_type[:100]!r}.", 415)

    def receive_data_chunk(self, raw_data: bytes, start: int) -> None:
        if start + len(raw_data) > self.link.max_size:
            self._refuse(f"This link takes at most {self.link.max_size} bytes.", 413)
        _write(self.upload, raw_data)

    def file_complete(self, file_size: int) -> None:
        self.complete = True


def _post(request: HttpRequest, storage: NatsStorage, link: Link, key: str, where: direct.Stored) -> HttpResponse:
    """A whole file in a multipart form (as S3's presigned POST); it cannot be resumed."""
    length = _number(request.META.get("CONTENT_LENGTH"))
    if length is None:
        return _text("Send the form with a Content-Length.", 411)
    if length > link.max_size + FORM_ROOM:
        return _text(f"This link takes at most {link.max_size} bytes.", 413)
    if where.done is not None or where.chunks:
        return _text("This upload is under way or finished: a form cannot add to it.", 409, where.offset)
    try:
        upload = run(direct.start(storage.bucket, key, link.nuid, where))
    except NatsUnavailable as error:
        logger.warning("cannot take an upload: %s", error)
        return _text("The file store is unavailable; try again shortly.", 503)
    handler = _IntoBucket(upload, link)
    try:
        try:
            MultiPartParser(request.META, request, [handler], request.encoding).parse()
        except (MultiPartParserError, UnreadablePostError, SuspiciousOperation):
            handler.refused = handler.refused or _text("The form could not be read.", 400, 0)
        if handler.refused is not None or not handler.complete:
            run(upload.abort())
            return handler.refused or _text(f"The form holds no file part named {FILE_FIELD!r}.", 400, 0)
        return _commit(storage, link, key, upload, handler.content_type or "")
    except (NatsStorageError, FileExistsError) as error:
        return _stopped(upload, key, error, resumable=False)
    except BaseException:
        run(upload.abort())
        raise


def _result(link: Link, size: int, digest: str) -> str:
    return Result(link.bucket, link.location, link.name, size, digest).token()


def _finished(link: Link, size: int, digest: str, *, by_tus: bool = False) -> HttpResponse:
    """A finished upload's answer: for tus, ``204`` with the signed result in ``Upload-Result``; else ``201``
    and JSON ``{"name", "size", "digest", "result"}``."""
    result = _result(link, size, digest)
    headers = {"Cache-Control": "no-store", OFFSET_HEADER: str(size), RESULT_HEADER: result}
    if by_tus:
        return _text("", 204, headers=headers)
    answer = {"name": link.name, "size": size, "digest": digest, "result": result}
    return JsonResponse(answer, status=201, headers=headers)


@csrf_exempt  # what it gives is only what the signed ticket already allows
def prepare(request: HttpRequest) -> HttpResponse:
    """``POST {"ticket": ..., "filename": ...}``: an upload link for that file, as the ticket allows.

    A ``DirectUploadWidget`` renders a ticket (signed: the storage, the folder, the size and types allowed);
    the name is the folder and the file's name made valid, made free by ``get_available_name``.
    """
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    length = _number(request.META.get("CONTENT_LENGTH"))
    if length is None or length > MAX_PREPARE_BODY:
        return _text(f"Send at most {MAX_PREPARE_BODY} bytes of JSON.", 413)
    try:
        asked = json.loads(request.read(length))
        ticket = signing.loads(direct.TICKET, asked["ticket"])
        filename = asked["filename"]
    except (ValueError, KeyError, TypeError):
        return _text('Send {"ticket": ..., "filename": ...}.', 400)
    except signing.LinkRefused as error:
        return _text(str(error), 403)
    if not isinstance(filename, str) or not 0 < len(filename) <= MAX_FILE_NAME or not signing.one_line(filename):
        return _text("The file name is missing, too long or holds a control character.", 400)
    storage = storage_for(str(ticket.get("b")), str(ticket.get("l")))
    if storage is None:
        return _text("This ticket names no storage of this site.", 404)
    folder = str(ticket.get("f") or "")
    try:
        name = storage.generate_filename(posixpath.join(folder, posixpath.basename(filename.replace("\\", "/"))))
        url = storage.upload_url(
            name,
            max_size=int(ticket["m"]),  # type: ignore[call-overload]
            content_types=ticket["t"],  # type: ignore[arg-type]
            expire=int(ticket["e"]),  # type: ignore[call-overload]
            max_length=ticket.get("x"),  # type: ignore[arg-type]
        )
    except (SuspiciousFileOperation, ValueError):
        return _text("This file name cannot be stored.", 400)
    except NatsStorageError as error:  # asking whether the name is free: the store is down, or the bucket gone
        logger.warning("cannot sign an upload link: %s", error)
        return _text("The file store is unavailable; try again shortly.", 503)
    return JsonResponse({"url": request.build_absolute_uri(url)}, headers={"Cache-Control": "no-store"})
