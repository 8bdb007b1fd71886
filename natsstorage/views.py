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
from dataclasses import dataclass, field, replace
from pathlib import Path

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
from django.utils.http import content_disposition_header, http_date

from natsstorage import contenttypes, links, loop, ranges, registry, servecache, servefiles, servewatch, signing
from natsstorage.exceptions import BucketNotFound, CorruptObject, NatsUnavailable
from natsstorage.files import CHUNKS_PER_HOP, begin_reading
from natsstorage.links import LinkRefused
from natsstorage.names import clean_name
from natsstorage.objectstore import Bucket, ObjectInfo
from natsstorage.saving import DEFAULT_CONTENT_TYPE
from natsstorage.static import NatsStaticStorage
from natsstorage.storage import NatsStorage, served_bucket
from natsstorage.transfer import Download

logger = logging.getLogger("natsstorage")

# Types a browser may show in place (of a type in its one spelling, ``contenttypes``); anything else
# (HTML, SVG, scripts...) is sent as an attachment so an uploaded file can never run in this site's origin.
INLINE_TYPES = re.compile(r"(image/(png|jpeg|gif|webp|avif|bmp|x-icon)|application/pdf|text/plain|audio/.+|video/.+)")
DOWNLOAD_PARAMETER = "download"  # ?download forces an attachment
# What a browser may do with an object of a bucket that is not a static one: show it, never run it.
# ``sandbox`` without ``allow-scripts`` runs no script, submits no form and opens no window;
# ``allow-same-origin`` only lets Chromium's audio and video player fetch the file it shows (with an
# opaque origin it refuses: CORS); ``default-src 'none'`` loads nothing else.
USER_CONTENT_POLICY = (
    "sandbox allow-same-origin; default-src 'none'; img-src 'self' data:; media-src 'self'; style-src 'unsafe-inline'"
)
STATICFILES = "STORAGES['staticfiles']"  # the label configured_storages() gives it
# A stored or asked Cache-Control that keeps a response out of shared caches, as one a signature or a login
# lets in must be (any other is replaced by the default ``private, no-cache``).
KEPT_PRIVATE = re.compile(r"\b(private|no-store)\b", re.IGNORECASE)
# Request headers (their ``META`` keys: no ``request.headers`` to build) that may make a GET want less than the
# whole object, or nothing: none is read ahead then.
CONDITIONAL_REQUEST_HEADERS = (
    "HTTP_IF_NONE_MATCH",
    "HTTP_IF_MODIFIED_SINCE",
    "HTTP_IF_MATCH",
    "HTTP_IF_UNMODIFIED_SINCE",
)
PARTIAL_REQUEST_HEADERS = ("HTTP_RANGE", *CONDITIONAL_REQUEST_HEADERS)
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


@dataclass
class Found:
    """An object to serve, where it is, and what was read of it with its metadata."""

    storage: NatsStorage
    info: ObjectInfo
    access: Access
    download: Download | None = None  # started by ``_find`` when it read ahead
    first: list[bytes] = field(default_factory=list)  # the chunks it read
    error: Exception | None = None  # what reading them raised: raised by the body, as any later read's
    data: bytes | None = None  # the whole object, from this process's copy (``servecache``)
    path: Path | None = None  # its checked copy on this host's disk (``servefiles``)


def serve(request: HttpRequest, bucket: str, name: str) -> HttpResponseBase:
    """``GET``/``HEAD`` one object of a served bucket, checking the link's signature unless it is public.

    A plain function: Django calls it in the worker's thread under WSGI (an async view would get an event
    loop of its own per request there) and in the request's thread under ASGI, where the body it returns is
    an async iterator, so no thread is held while it streams. The metadata, and the first chunks of a whole
    ``GET``, come in one hop to the NATS loop.
    """
    if request.method not in ("GET", "HEAD"):
        return HttpResponseNotAllowed(["GET", "HEAD"])
    name = clean_name(name)  # SuspiciousFileOperation: Django answers 400
    where = served(bucket, name)
    if where is None:
        raise Http404("No such file.")
    storage, access = where
    overrides = {header: request.GET[query] for header, query in signing.OVERRIDES.items() if query in request.GET}
    if not access.public or overrides:
        asked = {signing.OVERRIDES[header]: value for header, value in overrides.items()}
        try:
            signing.verify(bucket, name, request.GET.get(signing.EXPIRES), request.GET.get(signing.SIGNATURE), asked)
        except signing.LinkRefused as error:
            return HttpResponseForbidden(str(error), content_type="text/plain; charset=utf-8")
    if access.staff_only:
        refusal = _refuse_non_staff(request)
        if refusal is not None:
            return refusal
    copy = servecache.of(storage.bucket, storage.config.serve_cache).current(name, storage.config.serve_cache_trust)
    found: Found | None
    if copy is not None and storage.bucket.live(copy.info):  # current by the watch (or trusted): not asked
        found = Found(storage, copy.info, access, data=copy.data)
        found.path = servefiles.copy_for(storage.config, copy.info)
    else:
        # Nothing is read ahead for a request that may need none of it (a 304, a range, HEAD).
        whole = request.method == "GET" and not any(key in request.META for key in PARTIAL_REQUEST_HEADERS)
        try:
            found = loop.run(_find(storage, name, access, read_ahead=whole))
        except NatsUnavailable as error:
            return unavailable(error)
    if found is None:
        raise Http404("No such file.")
    return object_response(
        request,
        found.storage,
        found.info,
        public=found.access.public and not found.access.staff_only,  # a login decides: no shared cache keeps it
        overrides=overrides,
        static=found.access.static,
        found=found,
    )


async def _find(storage: NatsStorage, name: str, access: Access, *, read_ahead: bool) -> Found | None:
    """The object ``name`` (what it links to, for a link), and with ``read_ahead`` its first chunks; on the loop.

    What the metadata names is kept (``servecache``: with its bytes when small; ``servefiles`` copies a large
    one to disk) for the next requests, which the watch started here (``servewatch``) spares the lookup. A
    one-chunk object served lately is asked for with its metadata, in one round trip (``begin_reading``).
    """
    followed = False
    cache = servecache.of(storage.bucket, storage.config.serve_cache)
    if storage.config.serve_watch and cache.capacity:
        servewatch.follow(storage.bucket, cache)
    mark, copy = cache.mark(), cache.get(name)

    async def locate() -> tuple[Bucket, ObjectInfo]:
        nonlocal followed
        info = await storage.bucket.info(name)
        if info is None:
            raise FileNotFoundError(name)
        if info.link is None:
            return storage.bucket, info
        followed = True
        return await links.follow(storage.bucket, info, served_bucket)

    try:
        if read_ahead and copy is None:
            bucket, info, download, first = await begin_reading(storage.bucket, name, locate)
        else:
            (bucket, info), download, first = await locate(), None, []
    except (BucketNotFound, FileNotFoundError, LinkRefused):
        cache.forget(name)
        return None
    found = Found(storage, info, access, download, first)
    if copy is not None and not followed and copy.serves(info):
        cache.confirm(copy, mark)
        found.data, found.path = copy.data, servefiles.copy_for(storage.config, info)
        return found
    cache.forget(name)  # replaced, deleted or now a link (if kept): read as any other
    if followed:
        target = served(bucket.name, info.name)
        if target is None:
            return None
        found.storage, rules = target
        if (access.public and not rules.public) or (rules.staff_only and not access.staff_only):
            return None  # the link's own rules let in a request the target's would not
        found.access = replace(rules, static=rules.static and access.static)
    found.path = servefiles.copy_for(found.storage.config, info)  # the settings its response fills by
    if found.path is not None:
        if not followed:
            cache.keep(name, info, None, mark)  # its metadata: the bytes are on disk
        return found
    to_keep = not followed and cache.takes(info)
    if read_ahead and found.download is None and info.chunks > 1:
        found.download = await Download.begin(bucket, info)
        try:
            found.first = await found.download.read_many(CHUNKS_PER_HOP)
            while to_keep and found.download.chunks < info.chunks:  # all of it, to keep (1 MiB at most)
                found.first += await found.download.read_many(CHUNKS_PER_HOP)
        except Exception as error:  # noqa: BLE001 - raised by the body, once the status line is sent
            found.error = error
    read_whole = found.download is not None and found.error is None and found.download.chunks == info.chunks
    if to_keep and read_whole:
        cache.keep(name, info, found.first, mark)  # every chunk is here and matched the digest
    return found


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
    found: Found | None = None,
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
        # A CDN revalidates by the ETag (the digest): a metadata lookup and a 304, as an object can be replaced
        # under its name; a stored Cache-Control (``object_parameters``, hashed static names) may say more.
        # ``private`` when a signature or a login lets the request in: no shared cache keeps a copy.
        "Cache-Control": "public, no-cache" if public else "private, no-cache",
        "X-Content-Type-Options": "nosniff",
        **sent,
    }
    if not public and not KEPT_PRIVATE.search(headers["Cache-Control"] or ""):
        headers["Cache-Control"] = "private, no-cache"  # else a shared cache could hand it to anyone who asks
    if not static:
        headers["Content-Security-Policy"] = USER_CONTENT_POLICY
    if any(key in request.META for key in CONDITIONAL_REQUEST_HEADERS):
        base = HttpResponse(headers=headers)  # the headers a 304 repeats
        conditional = get_conditional_response(request, etag=etag, last_modified=last_modified, response=base)
        if conditional is not None and conditional is not base:
            return conditional

    start, length, status = 0, size, 200
    header = request.META.get("HTTP_RANGE")
    if header and ranges.if_range_passes(request.META.get("HTTP_IF_RANGE"), etag, last_modified):
        chosen = ranges.byte_range(header, size)
        if chosen == ranges.UNSATISFIABLE:
            return HttpResponse(status=416, headers={"Content-Range": f"bytes */{size}"})
        if chosen is not None:
            start, end = chosen
            length, status = end - start + 1, 206
            headers["Content-Range"] = f"bytes {start}-{end}/{size}"
    headers["Content-Length"] = str(length)

    if request.method == "HEAD":
        return HttpResponse(status=status, headers=headers)
    if found is not None and found.data is not None:
        return HttpResponse(found.data[start : start + length], status=status, headers=headers)
    asgi = isinstance(request, ASGIRequest)
    if found is not None and found.path is not None:
        from_disk = servefiles.response(found.path, size, start, length, status, headers, asgi=asgi)
        if from_disk is not None:
            return from_disk  # else removed meanwhile: from the bucket
    if found is not None:  # the serving view's: the next request reads a copy on disk
        servefiles.fill_for(storage.config, storage.bucket, info)
    body = (AsyncBody if asgi else Body)(storage, info, start, length, found)
    return StreamingHttpResponse(body, status=status, headers=headers)


def _failed(info: ObjectInfo) -> None:
    # The status line is gone; all that is left is to cut the connection and say why here.
    logger.exception("serving %r from bucket %r failed mid-stream; the connection is cut", info.name, info.bucket)


class Body:
    """``length`` bytes of an object from ``start``, a batch of chunks per hop to the NATS loop, iterated in a
    WSGI worker's thread (``loop.run``); ``AsyncBody`` in an ASGI server's loop (``loop.arun``). Django
    calls ``close()`` when the response ends, read through or not."""

    def __init__(self, storage: NatsStorage, info: ObjectInfo, start: int, length: int, found: Found | None) -> None:
        self.bucket = storage.bucket
        self.info = info
        self.start, self.end = start, start + length
        self.position = 0  # of the next chunk's first byte
        self.download = found.download if found is not None else None
        self.ahead = found.first if found is not None else []
        self.error = found.error if found is not None else None

    async def _next(self) -> list[bytes]:
        """The next chunks (on the loop); from the chunk that holds ``start`` at first: a range near the end
        costs about one chunk."""
        if self.download is None:
            self.download, self.position = await Download.at(self.bucket, self.info, self.start)
        return await self.download.read_many(CHUNKS_PER_HOP)

    def _cut(self, chunks: list[bytes]) -> Iterator[bytes]:
        """What of ``chunks`` (read from ``position``) lies between ``start`` and ``end``."""
        if not chunks or not chunks[0]:
            missing = self.end - self.position
            raise CorruptObject(f"{self.info.name!r} in bucket {self.info.bucket!r} ended {missing} bytes early")
        for chunk in chunks:
            following = self.position + len(chunk)
            if following > self.start and self.position < self.end:
                if self.position >= self.start and following <= self.end:
                    yield chunk
                else:
                    yield chunk[max(0, self.start - self.position) : self.end - self.position]
            self.position = following

    def _taken(self) -> list[bytes]:
        """The chunks read ahead, once (or what reading them raised)."""
        if self.error is not None:
            raise self.error
        chunks, self.ahead = self.ahead, []
        return chunks

    def __iter__(self) -> Iterator[bytes]:
        try:
            while self.position < self.end:
                yield from self._cut(self._taken() or loop.run(self._next()))
        except Exception:
            _failed(self.info)
            raise
        finally:
            self.close()

    def close(self) -> None:
        """End the download if it is still under way (a client gone, a range); safe from any thread."""
        download, self.download = self.download, None
        if download is not None and download.receiving:
            loop.submit(download.close())  # only sends a message: nothing to wait for


class AsyncBody(Body):
    __iter__ = None  # type: ignore[assignment]  # so that Django iterates it asynchronously

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            while self.position < self.end:
                for piece in self._cut(self._taken() or await loop.arun(self._next())):
                    yield piece
        except Exception:
            _failed(self.info)
            raise
        finally:
            self.close()
