"""CORS for upload links: a page on another origin (an app on app.example.com, its uploads sent to the media
origin) may send to them, when ``NATSSTORAGE_UPLOAD_CORS_ORIGINS`` lists its origin exactly.

The link is the credential, so no cookie is asked for (no ``Access-Control-Allow-Credentials``) and no
origin but one listed is ever named (never ``*``). With the setting empty, the default, no CORS header is sent.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from django.http import HttpRequest, HttpResponse
from django.utils.cache import patch_vary_headers

from natsstorage import conf

ORIGIN = re.compile(r"https?://([a-z0-9-]+(\.[a-z0-9-]+)*|\[[0-9a-f:.]+\])(:[0-9]{1,5})?", re.ASCII)
METHODS = "HEAD, OPTIONS, PATCH, POST, PUT, DELETE"
# What tus clients send (tus-js-client adds X-Request-ID and X-HTTP-Method-Override when asked to).
HEADERS = (
    "Content-Type, Tus-Resumable, Upload-Length, Upload-Offset, Upload-Metadata, "
    "X-Requested-With, X-Request-ID, X-HTTP-Method-Override"
)
EXPOSED = (
    "Upload-Offset, Upload-Length, Upload-Result, Location, Tus-Resumable, Tus-Version, Tus-Extension, Tus-Max-Size"
)
MAX_AGE = "86400"  # seconds a browser may keep a preflight's answer (Chromium keeps at most 2 hours)


def valid_origin(origin: object) -> bool:
    """An origin as a browser sends it: scheme, lower-case host and port, no path, no trailing slash."""
    return isinstance(origin, str) and ORIGIN.fullmatch(origin) is not None


def origins() -> frozenset[str]:
    """The origins allowed, those that are valid (``checks`` reports the others)."""
    configured = conf.upload_cors_origins()
    if isinstance(configured, str) or not isinstance(configured, Iterable):
        return frozenset()
    return frozenset(origin for origin in configured if valid_origin(origin))


def preflight(request: HttpRequest) -> bool:
    return request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers


def add(request: HttpRequest, response: HttpResponse) -> HttpResponse:
    """``response`` with the CORS headers ``request``'s origin gets: none unless it is listed."""
    allowed = origins()
    if not allowed:
        return response
    patch_vary_headers(response, ["Origin"])  # the answer depends on it, for any cache in between
    origin = request.headers.get("Origin", "")
    if origin not in allowed:
        return response
    response["Access-Control-Allow-Origin"] = origin
    if preflight(request):
        response["Access-Control-Allow-Methods"] = METHODS
        response["Access-Control-Allow-Headers"] = HEADERS
        response["Access-Control-Max-Age"] = MAX_AGE
    else:
        response["Access-Control-Expose-Headers"] = EXPOSED
    return response
