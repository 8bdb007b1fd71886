"""Expiring signatures for file URLs, with the project's SECRET_KEY (and SECRET_KEY_FALLBACKS).

A link carries its own expiry time, signed together with the bucket, the
object name and any response headers the link asks for (a download file
name, a content type), so changing ``url_expiry`` later neither shortens nor
extends links already handed out, nobody can change what a link asks for,
and no server-side state is needed.

What is signed is one JSON array of those parts, so no choice of values can
make two different requests sign alike; a part holding a control character
is refused before it is signed or checked.
"""

from __future__ import annotations

import json
import re
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


# Control characters (a header's tab aside): none may be in a header value, nor in anything signed.
CONTROL_CHARACTERS = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f]")
EXPIRY = re.compile(r"[0-9]{1,15}", re.ASCII)  # seconds since 1970: ASCII digits, few enough for int()
SIGNATURE_FORMAT = re.compile(r"[A-Za-z0-9_\-]{1,200}", re.ASCII)  # base64url, as Signer writes it


def one_line(value: str) -> bool:
    """Whether ``value`` may be sent as a header's value, or signed: no control character."""
    return CONTROL_CHARACTERS.search(value) is None


class LinkRefused(Exception):
    """Why a link does not give access; the message is safe to show."""


def _signer() -> signing.Signer:
    return signing.Signer(salt=SALT)


def _value(bucket: str, name: str, expires: int, overrides: Mapping[str, str]) -> str:
    # JSON: each part quoted and escaped, so no value can pass for two parts or for another parameter.
    return json.dumps([bucket, name, expires, sorted(overrides.items())], separators=(",", ":"))


def _refused(bucket: str, name: str, overrides: Mapping[str, str]) -> str | None:
    """What a link may not sign, if anything: a part with a control character."""
    for part in (bucket, name, *overrides, *overrides.values()):
        if not isinstance(part, str) or not one_line(part):
            return f"{part!r} holds a control character"
    return None


def sign(
    bucket: str, name: str, *, expiry: int, overrides: Mapping[str, str] | None = None, now: float | None = None
) -> dict[str, str]:
    """The query parameters that let ``name`` in ``bucket`` be read for ``expiry`` seconds, with ``overrides``
    (query parameter to value, e.g. a download file name) as part of what is signed."""
    overrides = overrides or {}
    refused = _refused(bucket, name, overrides)
    if refused is not None:
        raise ValueError(f"cannot sign a link: {refused}")
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
    overrides = overrides or {}
    if not EXPIRY.fullmatch(expires) or not SIGNATURE_FORMAT.fullmatch(signature) or _refused(bucket, name, overrides):
        raise LinkRefused("This link has been tampered with.")
    try:
        _signer().unsign(f"{_value(bucket, name, int(expires), overrides)}{_signer().sep}{signature}")
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
        if not isinstance(value, str) or not one_line(value):
            raise ValueError(f"url() parameter {key!r} must be a string without control characters")
        overrides[OVERRIDES[header]] = value
    return overrides


MAX_TOKEN = 4096  # characters: a signed token is a few hundred; longer is refused before it is checked


def dumps(kind: str, value: Mapping[str, object], *, expiry: int, now: float | None = None) -> str:
    """``value`` (JSON) as a signed token that expires in ``expiry`` seconds, valid only as a ``kind`` token
    (an upload link's, an upload's result...): a token of one kind never passes for another."""
    expires = int(now if now is not None else time.time()) + expiry
    return signing.dumps({**value, "expires": expires}, salt=f"{SALT}.{kind}", compress=True)


def loads(kind: str, token: object) -> dict[str, object]:
    """The value of a ``kind`` token from ``dumps``; ``LinkRefused`` when it is not one, or has expired."""
    if not isinstance(token, str) or not 0 < len(token) <= MAX_TOKEN or not one_line(token):
        raise LinkRefused("This link has been tampered with.")
    try:
        value = signing.loads(token, salt=f"{SALT}.{kind}")
    except (signing.BadSignature, ValueError):
        raise LinkRefused("This link has been tampered with.") from None
    if not isinstance(value, dict) or not isinstance(value.get("expires"), int):
        raise LinkRefused("This link has been tampered with.")
    if value["expires"] < time.time():
        raise LinkRefused("This link has expired.")
    return value
