"""Expiring signatures for file URLs, with the project's SECRET_KEY (and SECRET_KEY_FALLBACKS).

A link carries its own expiry time, signed together with the bucket, the
object name and any response headers the link asks for (a download file
name, a content type), so changing ``url_expiry`` later neither shortens nor
extends links already handed out, nobody can change what a link asks for,
and no server-side state is needed.
"""

from __future__ import annotations

import time
from collections.abc import Mapping

from django.core import signing
from django.utils.encoding import filepath_to_uri

SALT = "natsstorage.url"
EXPIRES = "expires"  # query parameters
SIGNATURE = "signature"
# Response headers a signed link may ask the view to send, by header: their query parameter (as S3's).
OVERRIDES = {
    "Content-Disposition": "response-content-disposition",
    "Content-Type": "response-content-type",
    "Cache-Control": "response-cache-control",
    "Content-Language": "response-content-language",
}


class LinkRefused(Exception):
    """Why a link does not give access; the message is safe to show."""


def _signer() -> signing.Signer:
    return signing.Signer(salt=SALT)


def _value(bucket: str, name: str, expires: int, overrides: Mapping[str, str]) -> str:
    # Names and header values never hold control characters (see names.py and the view), so "\n"
    # cannot be forged.
    signed = [bucket, name, str(expires), *(f"{key}={overrides[key]}" for key in sorted(overrides))]
    return "\n".join(signed)


def sign(
    bucket: str, name: str, *, expiry: int, overrides: Mapping[str, str] | None = None, now: float | None = None
) -> dict[str, str]:
    """The query parameters that let ``name`` in ``bucket`` be read for ``expiry`` seconds, with ``overrides``
    (query parameter to value, e.g. a download file name) as part of what is signed."""
    overrides = overrides or {}
    expires = int(now if now is not None else time.time()) + expiry
    signature = _signer().signature(_value(bucket, name, expires, overrides))
    return {**overrides, EXPIRES: str(expires), SIGNATURE: signature}


def verify(
    bucket: str,
    name: str,
    expires: str | None,
    signature: str | None,
    overrides: Mapping[str, str] | None = None,
) -> None:
    """Raise ``LinkRefused`` unless the parameters are a valid, unexpired signature of (bucket, name, overrides)."""
    if not expires or not signature:
        raise LinkRefused("This link is not signed.")
    if not expires.isdigit():
        raise LinkRefused("This link has been tampered with.")
    try:
        _signer().unsign(f"{_value(bucket, name, int(expires), overrides or {})}{_signer().sep}{signature}")
    except signing.BadSignature:
        raise LinkRefused("This link has been tampered with.") from None
    if int(expires) < time.time():
        raise LinkRefused("This link has expired.")


# What ``url(parameters=...)`` may ask the view to send, by django-storages' (S3's) names and by header name.
RESPONSE_PARAMETERS = {
    "ResponseContentDisposition": "Content-Disposition",
    "ResponseContentType": "Content-Type",
    "ResponseCacheControl": "Cache-Control",
    "ResponseContentLanguage": "Content-Language",
}


def uri(name: str) -> str:
    """``name`` as a URL path, as Django's storages write it (``filepath_to_uri``: a backslash reads as ``/``)."""
    return filepath_to_uri(name)


def response_overrides(parameters: Mapping[str, str] | None) -> dict[str, str]:
    """``url(parameters=...)`` as the query parameters the view reads (``OVERRIDES``)."""
    overrides = {}
    headers = {header.lower(): header for header in RESPONSE_PARAMETERS.values()}
    for key, value in (parameters or {}).items():
        header = RESPONSE_PARAMETERS.get(key) or headers.get(key.lower())
        if header is None:
            raise ValueError(
                f"url() parameters may be {', '.join([*RESPONSE_PARAMETERS, *headers.values()])}, not {key!r}"
            )
        if not isinstance(value, str) or "\n" in value or "\r" in value:
            raise ValueError(f"url() parameter {key!r} must be a one-line string")
        overrides[OVERRIDES[header]] = value
    return overrides
