"""Secrets kept out of messages, logs and reprs: a URL without its credentials, a value by its type only.

It imports no other module of the package, so that any (the settings', the connection's) may use it.
"""

from __future__ import annotations

import re

# Whatever stands between "://" and the last "@" before the host: "user:password@", or a token.
_USERINFO = re.compile(r"(?<=://)[^\s'\"]*@")


def redact_url(url: str) -> str:
    """``url`` without ``user:password@`` or ``token@``: ``nats://alice:s3cret@host:4222`` -> ``nats://host:4222``."""
    scheme, sep, rest = url.rpartition("://")
    return f"{scheme}{sep}{rest.rsplit('@', 1)[-1]}"


def redact_urls(text: str) -> str:
    """``text`` with the credentials of every URL in it removed (a repr, a message)."""
    return _USERINFO.sub("", text)


def kind(value: object) -> str:
    """What ``value`` is, never what it holds: ``bytes``, ``int``, ``list of int and str``."""
    if isinstance(value, list | tuple | set | frozenset | dict):
        kinds = sorted({type(item).__name__ for item in value})
        return f"{type(value).__name__} of {' and '.join(kinds)}" if kinds else f"empty {type(value).__name__}"
    return type(value).__name__
