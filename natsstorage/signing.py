"""Expiring signatures for file URLs, with the project's SECRET_KEY (and SECRET_KEY_FALLBACKS).

A link carries its own expiry time, signed together with the bucket and the
object name, so changing ``url_expiry`` later neither shortens nor extends
links already handed out, and no server-side state is needed.
"""

from __future__ import annotations

import time

from django.core import signing

SALT = "natsstorage.url"
EXPIRES = "expires"  # query parameters
SIGNATURE = "signature"


class LinkRefused(Exception):
    """Why a link does not give access; the message is safe to show."""


def _signer() -> signing.Signer:
    return signing.Signer(salt=SALT)


def _value(bucket: str, name: str, expires: int) -> str:
    # Names never hold control characters (see names.py), so "\n" cannot be forged.
    return f"{bucket}\n{name}\n{expires}"


def sign(bucket: str, name: str, *, expiry: int, now: float | None = None) -> dict[str, str]:
    """The query parameters that let ``name`` in ``bucket`` be read for ``expiry`` seconds."""
    expires = int(now if now is not None else time.time()) + expiry
    return {EXPIRES: str(expires), SIGNATURE: _signer().signature(_value(bucket, name, expires))}


def verify(bucket: str, name: str, expires: str | None, signature: str | None) -> None:
    """Raise ``LinkRefused`` unless the parameters are a valid, unexpired signature of (bucket, name)."""
    if not expires or not signature:
        raise LinkRefused("This link is not signed.")
    if not expires.isdigit():
        raise LinkRefused("This link has been tampered with.")
    try:
        _signer().unsign(f"{_value(bucket, name, int(expires))}{_signer().sep}{signature}")
    except signing.BadSignature:
        raise LinkRefused("This link has been tampered with.") from None
    if int(expires) < time.time():
        raise LinkRefused("This link has expired.")
