"""Serving objects over HTTP: the view behind ``NatsStorage.url()``.

Only buckets that a configured storage uses are served: a ``settings.STORAGES``
entry whose backend is a ``NatsStorage``, or the storage of a model's
``FileField``. Any other bucket on the server is a 404, whatever its name, so
links cannot be guessed into buckets the project never meant to publish.

The response streams chunk by chunk: a sync iterator under WSGI, an async one
under ASGI (so no thread is held per download).
"""

from __future__ import annotations

import logging
import mimetypes
import posixpath
import re
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass, replace

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.handlers.asgi import ASGIRequest
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseBase,
    HttpResponseForbidden,
    HttpResponseNotAllowed,
    StreamingHttpResponse,
)
from django.urls import NoReverseMatch, reverse
from django.utils.cache import get_conditional_response
from django.utils.http import content_disposition_header, http_date, parse_http_date_safe

from natsstorage import contenttypes, links, loop, registry, signing
from natsstorage.exceptions import BucketNotFound, CorruptObject, NatsUnavailable
from natsstorage.files import AsyncNatsFile, ObjectStream
from natsstorage.links import LinkRefused
from natsstorage.names import clean_name
from natsstorage.objectstore import ObjectInfo
from natsstorage.saving import DEFAULT_CONTENT_TYPE
from natsstorage.static import NatsStaticStorage
from natsstorage.storage import NatsStorage, served_bucket
from natsstorage.transfer import Download

logger = logging.getLogger("natsstorage")

# Types a browser may show in place (of a type in its one spelling, ``contenttypes``); anything else
# (HTML, SVG, scripts...) is sent as an attachment so an uploaded file can never run in this site's origin.
INLINE_TYPES = re.compile(r"(image/(png|jpeg|gif|webp|avif|bmp|x-icon)|application/pdf|text/plain|audio/.+|video/.+)")
DOWNLOAD_PARAMETER = "download"  # ?download forces an attachment
# One range, of ASCII digits that int() takes (several ranges, or longer numbers, are answered with the whole).
RANGE = re.compile(r"bytes=([0-9]{0,100})-([0-9]{0,100})", re.IGNORECASE | re.ASCII)
# What a browser may do with an object of a bucket that is not a static one: show it, never run it.
# ``sandbox`` without ``allow-scripts`` runs no script, submits no form and opens no window;
# ``allow-same-origin`` only lets Chromium's audio and video player fetch the file it shows (with an
# opaque origin it refuses: CORS); ``default-src 'none'`` loads nothing else.
USER_CONTENT_POLICY = (
    "sandbox allow-same-origin; default-src 'none'; img-src 'self' data:; media-src 'self'; style-src 'unsafe-inline'"
)
STATICFILES = "STORAGES['staticfiles']"  # the label configured_storages() gives it
UNSATISFIABLE = (-1, -1)
# Headers an object may carry (``object_parameters``, ``get_object_parameters``) that the view sends.
STORED_HEADERS = ("Cache-Control", "Content-Disposition", "Content-Language", "Content-Encoding", "Expires")


@dataclass(frozen=True)
class Access:
    """How a bucket may be read over HTTP, merged over every storage that uses it."""

    public: bool  # only when every storage of the bucket says public
    staff_only: bool  # when any storage of the bucket says so
    static: bool = False  # only when every storage of the bucket serves static files: no sandbox then


def served(bucket: str, key: str) -> tuple[NatsStorage, Access] | None:
    """The storage that serves the object ``key`` of ``bucket``, and its access rules; None when none does.

    Storages sharing a bucket under different locations (``media/``, ``static/``) each serve their own:
    the one with the longest location holding ``key`` decides.
    """
    using = [
        (label, storage)
        for label, storage in registry.configured(NatsStorage)
        if storage.config.bucket == bucket
        and (not storage.config.location or key.startswith(storage.config.location + "/"))
    ]
    if not using:
        return None
    deepest = max(len(storage.config.location) for _, storage in using)
    using = [(label, storage) for label, storage in using if len(storage.config.location) == deepest]
    access = Access(
        public=all(storage.config.public for _, storage in using),
        staff_only=any(storage.config.staff_only for _, storage in using),
        static=all(isinstance(storage, NatsStaticStorage) or label == STATICFILES for label, storage in using),
    )
    return using[0][1], access


async def serve(request: HttpRequest, bucket: str, name: str) -> HttpResponseBase:
    """``GET``/``HEAD`` one object of a served bucket, checking the link's signature unless it is public."""
    if request.method not in ("GET", "HEAD"):
        return HttpResponseNotAllowed(["GET", "HEAD"])
    name = clean_name(name)  # SuspiciousFileOperation: Django answers 400
    found = served(bucket, name)
    if found is None:
        raise Http404("No such file.")
    storage, access = found
    overrides = {header: request.GET[query] for header, query in signing.OVERRIDES.items() if query in request.GET}
    if not access.public or overrides:
        asked = {signing.OVERRIDES[header]: value for header, value in overrides.items()}
        try:
            signing.verify(bucket, name, request.GET.get(signing.EXPIRES), request.GET.get(signing.SIGNATURE), asked)
        except signing.LinkRefused as error:
            return HttpResponseForbidden(str(error), content_type="text/plain; charset=utf-8")
    if access.staff_only:
        refusal = await sync_to_async(_refuse_non_staff)(request)
        if refusal is not None:
            return refusal
    try:
        info = await loop.arun(storage.bucket.info(name))
    except BucketNotFound:
        info = None
    except NatsUnavailable as error:
        return unavailable(error)
    if info is None:
        raise Http404("No such file.")
    if info.link is not None:
        followed = await _follow(storage, info, access)
        if followed is None:
            raise Http404("No such file.")
        storage, info, access = followed
    return object_response(request, storage, info, public=access.public, overrides=overrides, static=access.static)


async def _follow(
    storage: NatsStorage, link: ObjectInfo, access: Access
) -> tuple[NatsStorage, ObjectInfo, Access] | None:
    """What a link names, if a storage of this project serves it and its rules ask no more than the link's did."""
    try:
        bucket, info = await loop.arun(links.follow(storage.bucket, link, served_bucket))
    except (FileNotFoundError, LinkRefused):
        return None
    found = served(bucket.name, info.name)
    if found is None:
        return None
    target, rules = found
    if (access.public and not rules.public) or (rules.staff_only and not access.staff_only):
        return None  # the link's own rules let in a request the target's would not
    return target, info, replace(rules, static=rules.static and access.static)


def unavailable(error: NatsUnavailable) -> HttpResponse:
    logger.warning("cannot serve a file: %s", error)
    return HttpResponse(
        "The file store is unavailable; try again shortly.",
        status=503,
        content_type="text/plain; charset=utf-8",
        headers={"Retry-After": "5"},
    )


def _refuse_non_staff(request: HttpRequest) -> HttpResponseBase | None:
    # Imported here: a site without django.contrib.auth serves its files too (staff_only needs it).
    from django.contrib.auth.views import redirect_to_login

    user = getattr(request, "user", None)
    if user is None:  # no AuthenticationMiddleware: nobody is known to be staff
        return HttpResponseForbidden("Staff only.", content_type="text/plain; charset=utf-8")
    if not user.is_authenticated:
        try:
            login_url = reverse("admin:login")
        except NoReverseMatch:
            login_url = str(settings.LOGIN_URL)
        return redirect_to_login(request.get_full_path(), login_url)
    if not (user.is_active and user.is_staff):
        return HttpResponseForbidden("Staff only.", content_type="text/plain; charset=utf-8")
    return None


def stored_headers(info: ObjectInfo) -> dict[str, str]:
    """The headers stored with the object that the view sends (``object_parameters``), one line each."""
    found = {}
    for header in STORED_HEADERS:
        for key, values in info.headers.items():
            if key.lower() == header.lower() and values and signing.one_line(values[0]):
                found[header] = values[0]
    return found


def content_type(info: ObjectInfo, asked: str | None) -> str:
    """The type sent: a signed link's, else the stored one (several are a list), else guessed from the name."""
    if asked is not None:
        return contenttypes.normalise(asked)
    stored = [value for key, values in info.headers.items() if key.lower() == "content-type" for value in values]
    if len(stored) > 1:
        return contenttypes.DEFAULT
    return contenttypes.normalise(stored[0] if stored else mimetypes.guess_type(info.name)[0] or DEFAULT_CONTENT_TYPE)


def object_response(
    request: HttpRequest,
    storage: NatsStorage,
    info: ObjectInfo,
    *,
    public: bool,
    overrides: Mapping[str, str] | None = None,
    static: bool = False,
) -> HttpResponseBase:
    """The response for one object: conditional (304), ranged (206/416), HEAD or the whole, streamed.

    Headers stored with the object, then those a signed link asks for, replace the defaults; a type
    a browser would run (HTML, SVG) is still sent as an attachment, and unless the object is ``static``
    (a static files bucket: the site's own) the browser is told to run nothing in it.
    """
    size = info.size
    etag = f'"{info.digest.partition("=")[2].rstrip("=") or info.nuid}"'
    last_modified = int(info.mtime.timestamp())
    sent = {**stored_headers(info), **(overrides or {})}
    sent_type = content_type(info, sent.pop("Content-Type", None))
    inline = INLINE_TYPES.fullmatch(sent_type.partition(";")[0]) is not None
    attachment = DOWNLOAD_PARAMETER in request.GET or not inline
    disposition = sent.pop("Content-Disposition", None)
    if disposition is None or (attachment and not disposition.lower().startswith("attachment")):
        disposition = content_disposition_header(attachment, posixpath.basename(info.name))
    headers = {
        "Content-Type": sent_type,
        "Content-Disposition": disposition,
        "ETag": etag,
        "Last-Modified": http_date(last_modified),
        "Accept-Ranges": "bytes",
        # Revalidation is one metadata lookup and a 304; objects can be replaced under the same name.
        "Cache-Control": "public, no-cache" if public else "private, no-cache",
        "X-Content-Type-Options": "nosniff",
        **sent,
    }
    if not static:
        headers["Content-Security-Policy"] = USER_CONTENT_POLICY
    base = HttpResponse(headers=headers)
    conditional = get_conditional_response(request, etag=etag, last_modified=last_modified, response=base)
    if conditional is not None and conditional is not base:
        return conditional

    start, length, status = 0, size, 200
    header = request.headers.get("Range")
    if header and _if_range_passes(request.headers.get("If-Range"), etag, last_modified):
        chosen = _byte_range(header, size)
        if chosen == UNSATISFIABLE:
            return HttpResponse(status=416, headers={"Content-Range": f"bytes */{size}"})
        if chosen is not None:
            start, end = chosen
            length, status = end - start + 1, 206
            headers["Content-Range"] = f"bytes {start}-{end}/{size}"
    headers["Content-Length"] = str(length)

    if request.method == "HEAD":
        return HttpResponse(status=status, headers=headers)
    if isinstance(request, ASGIRequest):
        body: Iterator[bytes] | AsyncIterator[bytes] = _achunks(storage, info, start, length)
    else:
        body = _chunks(storage, info, start, length)
    return StreamingHttpResponse(body, status=status, headers=headers)


def _if_range_passes(value: str | None, etag: str, last_modified: int) -> bool:
    if not value:
        return True
    if value.startswith(('"', "W/")):
        return value == etag  # a weak validator never matches (RFC 9110 13.1.5)
    return parse_http_date_safe(value) == last_modified


def _byte_range(header: str, size: int) -> tuple[int, int] | None:
    """(first, last) byte of a single satisfiable range, UNSATISFIABLE, or None to send the whole."""
    match = RANGE.fullmatch(header.strip())
    if match is None:
        return None
    first, last = match.groups()
    if not first:
        if not last:
            return None
        suffix = int(last)
        return UNSATISFIABLE if suffix == 0 or size == 0 else (max(0, size - suffix), size - 1)
    start = int(first)
    if last and int(last) < start:
        return None  # invalid: ignored, as RFC 9110 asks
    if start >= size:
        return UNSATISFIABLE
    end = min(int(last), size - 1) if last else size - 1
    return start, end


def _failed(info: ObjectInfo) -> None:
    # The status line is gone; all that is left is to cut the connection and say why here.
    logger.exception("serving %r from bucket %r failed mid-stream; the connection is cut", info.name, info.bucket)


def _chunks(storage: NatsStorage, info: ObjectInfo, start: int, length: int) -> Iterator[bytes]:
    stream = ObjectStream(storage.bucket, info)
    try:
        stream.seek(start)
        chunk_size = info.chunk_size or storage.config.chunk_size
        while length > 0:
            data = stream.read(min(length, chunk_size))
            if not data:
                raise CorruptObject(f"{info.name!r} in bucket {info.bucket!r} ended {length} bytes early")
            length -= len(data)
            yield data
    except Exception:
        _failed(info)
        raise
    finally:
        stream.close()


async def _achunks(storage: NatsStorage, info: ObjectInfo, start: int, length: int) -> AsyncIterator[bytes]:
    end = start + length
    source: AsyncNatsFile | None = None
    try:
        if length:
            # From the chunk that holds ``start``: a range near the end costs about one chunk.
            download, position = await loop.arun(Download.at(storage.bucket, info, start))
            source = AsyncNatsFile(info, download)
            async for chunk in source:
                following = position + len(chunk)
                if following > start:
                    yield chunk[max(0, start - position) : end - position]
                position = following
                if position >= end:
                    break
            if position < end:
                raise CorruptObject(f"{info.name!r} in bucket {info.bucket!r} ended {end - position} bytes early")
    except Exception:
        _failed(info)
        raise
    finally:
        if source is not None:
            await source.close()
