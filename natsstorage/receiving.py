"""The views a browser uploads to directly: ``PUT``/``HEAD`` on a signed link (``NatsStorage.upload_url``),
and the link a ``DirectUploadWidget`` asks for once its user has picked a file.

The body is read in pieces of ``PIECE_BYTES`` (Django's request stream: under WSGI straight from the socket,
under ASGI from the file Django's handler spooled it to) and each goes to the bucket while the next arrives.
Every header is bounded before it is used; a bad request gets a 4xx and leaves nothing but what a resume needs.
"""

from __future__ import annotations

import json
import logging
import posixpath
import re

from django.core.exceptions import SuspiciousFileOperation
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed, JsonResponse, UnreadablePostError
from django.views.decorators.csrf import csrf_exempt

from natsstorage import contenttypes, direct, loop, registry, saving, signing
from natsstorage.direct import Link, Result
from natsstorage.exceptions import NatsStorageError, NatsUnavailable, ObjectChanged
from natsstorage.files import PIECE_BYTES
from natsstorage.loop import run
from natsstorage.saving import Taken
from natsstorage.storage import NatsStorage
from natsstorage.transfer import Upload

logger = logging.getLogger("natsstorage")

NUMBER = re.compile(r"[0-9]{1,15}", re.ASCII)  # a size or an offset: ASCII digits, few enough for int()
OFFSET_HEADER = "Upload-Offset"  # as tus names them: where this request's bytes start, and what is stored
LENGTH_HEADER = "Upload-Length"  # the whole file's size (default: where this request's bytes end)
MAX_FILE_NAME = 255  # characters of the file name a widget sends
MAX_PREPARE_BODY = 8 * 1024  # bytes of a widget's request for a link


def _text(message: str, status: int, offset: int | None = None) -> HttpResponse:
    headers = {"Cache-Control": "no-store"}
    if offset is not None:
        headers[OFFSET_HEADER] = str(offset)
    return HttpResponse(message, status=status, content_type="text/plain; charset=utf-8", headers=headers)


def _number(value: str | None, default: int | None = None) -> int | None:
    """A header's whole number; ``default`` when it is missing, None when it is not a number."""
    if value is None or value == "":
        return default
    return int(value) if NUMBER.fullmatch(value) else None


def storage_for(bucket: str, location: str) -> NatsStorage | None:
    """The configured storage a link or result was signed for, by its bucket and location."""
    for _, storage in registry.configured(NatsStorage):
        if storage.config.bucket == bucket and storage.config.location == location:
            return storage
    return None


@csrf_exempt  # the signed link is the credential; no cookie is needed or used
def receive(request: HttpRequest, token: str) -> HttpResponse:
    """``PUT`` a file's bytes (or the rest of them) to a signed upload link; ``HEAD`` says how many are stored."""
    if request.method not in ("PUT", "HEAD"):
        return HttpResponseNotAllowed(["PUT", "HEAD"])
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
    if request.method == "HEAD":
        response = _text("", 200, where.offset)
        if where.done is not None:
            response[LENGTH_HEADER] = str(where.done.size)
        return response
    return _put(request, storage, link, key, where)


def _put(request: HttpRequest, storage: NatsStorage, link: Link, key: str, where: direct.Stored) -> HttpResponse:
    content_type = request.META.get("CONTENT_TYPE") or ""
    if len(content_type) > contenttypes.MAX_LENGTH or not (
        direct.type_allowed(content_type, link.content_types) or (not content_type and not link.content_types)
    ):
        allowed = ", ".join(link.content_types) or "a type/subtype"
        return _text(f"This link takes {allowed}, not {content_type[:100]!r}.", 415, where.offset)
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
    if where.done is not None:  # finished already: only the last request, sent again, is answered (its result)
        if offset == total == where.offset and length == 0:
            return _finished(storage, link, where.done.size, where.done.digest)
        return _text("This upload is finished.", 409, where.offset)
    if offset != where.offset:
        return _text(f"The upload stands at byte {where.offset}: go on from there.", 409, where.offset)
    try:
        upload = run(direct.start(storage.bucket, key, link.nuid, where))
    except NatsUnavailable as error:
        logger.warning("cannot take an upload: %s", error)
        return _text("The file store is unavailable; try again shortly.", 503)
    except NatsStorageError as error:  # a chunk cut short: not an upload this view wrote
        logger.warning("cannot resume an upload: %s", error)
        return _text("This upload cannot be resumed: start again with a new link.", 409)
    if upload.size != offset:  # an earlier request's chunks still landing
        run(upload.abort(keep_chunks=True))
        return _text(f"The upload stands at byte {upload.size}: go on from there.", 409, upload.size)
    return _stream(request, storage, link, key, upload, (offset, length, total), content_type)


def _stream(
    request: HttpRequest,
    storage: NatsStorage,
    link: Link,
    key: str,
    upload: Upload,
    sizes: tuple[int, int, int],
    content_type: str,
) -> HttpResponse:
    """Read at most ``length`` bytes (the Content-Length, checked against the link's size) into the bucket:
    commit when they end the file (``offset + length == total``), else keep the whole chunks to resume from."""
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
            writing = loop.submit(upload.write(piece), blocking=True)
            upload.hash(piece)  # here, while the loop publishes
            loop.wait(writing)
        if received < length or offset + length < total:
            run(upload.abort(keep_chunks=True))  # what is stored in whole chunks stays, to resume from
            stored = upload.chunks * upload.chunk_size
            if received < length:
                return _text(f"The body ended early; the upload stands at byte {stored}.", 400, stored)
            return _text("", 204, stored)
        run(upload.drain())
        if run(direct.chunk_count(storage.bucket, link.nuid)) != upload.chunks:
            run(direct.purge(storage.bucket, link.nuid, key))  # another request wrote beside this one
            return _text("Two requests wrote this upload at once: start again from byte 0.", 409, 0)
        head = saving.head_for(storage, link.name, content_type or None)
        taken = Taken.REPLACE if storage.config.file_overwrite else Taken.REFUSE
        run(saving.commit(storage, upload, link.name, head, taken))
    except ObjectChanged:  # the first chunk found another writer's after those this request read back
        run(upload.abort(keep_chunks=True))
        return _text("Another request is writing this upload.", 409)
    except FileExistsError:
        run(upload.abort())
        return _text("Another file took this name since the link was signed: ask for a new link.", 409, 0)
    except NatsUnavailable as error:
        run(upload.abort(keep_chunks=True))
        logger.warning("cannot take an upload: %s", error)
        return _text("The file store is unavailable; try again shortly.", 503)
    except NatsStorageError as error:  # refused by the server: a full bucket, say
        run(upload.abort())
        logger.warning("an upload to %r was refused: %s", key, error)
        return _text("The file store refused this upload.", 507, 0)
    except BaseException:
        run(upload.abort())
        raise
    info = run(storage.bucket.latest(key))
    assert info is not None
    return _finished(storage, link, info.size, info.digest)


def _finished(storage: NatsStorage, link: Link, size: int, digest: str) -> JsonResponse:
    result = Result(link.bucket, link.location, link.name, size, digest)
    answer = {"name": link.name, "size": size, "digest": digest, "result": result.token()}
    return JsonResponse(answer, status=201, headers={"Cache-Control": "no-store", OFFSET_HEADER: str(size)})


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
        ticket = signing.loads(TICKET, asked["ticket"])
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
        )
    except (SuspiciousFileOperation, ValueError):
        return _text("This file name cannot be stored.", 400)
    return JsonResponse({"url": request.build_absolute_uri(url)}, headers={"Cache-Control": "no-store"})


TICKET = "upload-ticket"  # the kind of signed token a widget renders
