"""One spelling of a ``Content-Type``: what is stored with an object and what the view sends.

A browser reads a ``Content-Type`` its own way: from ``video/mp4,text/html`` it
takes the *last* type of the list, and it renders HTML that a check of the part
before the first ``;`` let through as a video. So whatever an upload, another
NATS client or a header editor wrote is reduced to a single ``type/subtype`` in
lower case, with a ``charset`` kept when it is a valid one and every other
parameter dropped; a list, or anything that does not parse, is
``application/octet-stream`` (which the view sends as an attachment).
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Mapping

DEFAULT = "application/octet-stream"
MAX_LENGTH = 255  # longer is not a content type anyone writes (RFC 6838 limits each name to 127)
SNIFF_BYTES = 64 * 1024  # how much of a text object is decoded to decide that it is UTF-8
_TOKEN = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"  # RFC 9110 5.6.2
_PARAMETER = rf"""\s*;\s*({_TOKEN})=({_TOKEN}|"(?:[^"\\\x00-\x1f\x7f]|\\[^\x00-\x1f\x7f])*")"""
_MEDIA_TYPE = re.compile(rf"\s*({_TOKEN})/({_TOKEN})((?:{_PARAMETER})*)\s*;?\s*", re.ASCII)
_PARAMETERS = re.compile(_PARAMETER, re.ASCII)
_CHARSET = re.compile(r"[A-Za-z0-9][A-Za-z0-9!#$%&'+\-^_`{}~.:]{0,39}", re.ASCII)


def normalise(value: object, *, sample: bytes | None = None) -> str:
    """``value`` as one ``type/subtype`` (plus a valid ``charset``), else ``application/octet-stream``.

    ``sample``: the first bytes of the object, when known. A ``text/*`` type without a charset then gets
    ``charset=utf-8`` if the first ``SNIFF_BYTES`` of them are UTF-8 (a character cut at the end counts).
    """
    if not isinstance(value, str) or len(value) > MAX_LENGTH or "," in value:
        return DEFAULT  # a comma anywhere may be read as a list, of which a browser takes the last
    match = _MEDIA_TYPE.fullmatch(value)
    if match is None:
        return DEFAULT
    kind, subtype = match[1].lower(), match[2].lower()
    if "*" in (kind, subtype):
        return DEFAULT  # a pattern (Accept's */*), not the type of anything
    charset = None
    for name, quoted in _PARAMETERS.findall(match[3]):
        if name.lower() == "charset":
            charset = _charset(quoted.strip('"'))
    if charset is None and kind == "text" and sample is not None and is_utf8(sample):
        charset = "utf-8"
    return f"{kind}/{subtype}; charset={charset}" if charset else f"{kind}/{subtype}"


def _charset(value: str) -> str | None:
    """A charset's name in lower case if it is one (Python knows it), else None."""
    if not _CHARSET.fullmatch(value):
        return None
    try:
        codecs.lookup(value)
    except LookupError:
        return None
    return value.lower()


def is_utf8(sample: bytes) -> bool:
    """Whether the first ``SNIFF_BYTES`` of ``sample`` are UTF-8, but for a character cut at the end."""
    try:
        codecs.getincrementaldecoder("utf-8")().decode(sample[:SNIFF_BYTES], final=False)
    except UnicodeDecodeError:
        return False
    return True


def in_headers(headers: Mapping[str, list[str]]) -> dict[str, list[str]]:
    """``headers`` with their ``Content-Type`` in its one spelling: one value (several are a list: the default)."""
    found = [values for key, values in headers.items() if key.lower() == "content-type"]
    if not found:
        return dict(headers)
    values = [value for given in found for value in given]
    content_type = normalise(values[0]) if len(values) == 1 else DEFAULT
    kept = {key: list(values) for key, values in headers.items() if key.lower() != "content-type"}
    return {"Content-Type": [content_type], **kept}
