"""Which object names Django code may use, and their one spelling.

The Object Store itself takes any UTF-8 string (it base64-encodes names into
subjects), so ``.``, ``*``, ``>``, ``$`` and spaces are safe. What is refused
here is what would be dangerous or ambiguous the day the same names meet a
file system, a URL or another storage: absolute names, ``.``/``..`` and empty
segments, control characters, and names too long for a subject.
"""

from __future__ import annotations

import os
import re

from django.core.exceptions import SuspiciousFileOperation

# S3's limit too. The longest key, a location and a name of this many bytes each, is 2,732 characters of
# base64 in its metadata subject, 2,989 in the longest bucket's (objectstore.MAX_BUCKET_NAME): a protocol line
# with its reply subject and sizes stays well under nats-server's 4,096 bytes (jetstream.MAX_CONTROL_LINE).
MAX_NAME_BYTES = 1024
_CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f-\x9f]")
# What can make an entry unusable: control characters, backslashes (a '..' between them), lone surrogates.
_SUSPECT = re.compile(r"[\x00-\x1f\x7f-\x9f\\\ud800-\udfff]")
# A name's path segments as subject tokens of the server-side listing index (docs/wire-format.md): letters, digits,
# '-' and '_' as they are, every other byte of the UTF-8 as '~' and two hex digits, an empty segment as '~'.
_TOKEN_SAFE = re.compile(r"[A-Za-z0-9_-]+")
_ESCAPED = [chr(b) if _TOKEN_SAFE.fullmatch(chr(b)) else f"~{b:02X}" for b in range(256)]
EMPTY_SEGMENT_TOKEN = "~"


def clean_name(name: str | os.PathLike[str]) -> str:
    """``name``, unchanged, if Django code may use it; else SuspiciousFileOperation.

    Nothing is rewritten: a name read from the bucket addresses that same object (another
    client's ``back\\slash.txt`` is not ``back/slash.txt``). A ``..`` between backslashes is
    refused too, for the day such a name meets a Windows file system.
    """
    name = os.fspath(name)
    if not isinstance(name, str):
        raise SuspiciousFileOperation(f"object names are strings, not {type(name).__name__}")
    if not name:
        raise SuspiciousFileOperation("an object name cannot be empty")
    if _CONTROL_CHARACTERS.search(name):
        raise SuspiciousFileOperation(f"object name {name!r} contains a control character")
    if name.startswith(("/", "\\")):
        raise SuspiciousFileOperation(f"object name {name!r} is absolute; use a relative name")
    if any(part in ("", ".", "..") for part in name.split("/")) or ".." in name.replace("/", "\\").split("\\"):
        raise SuspiciousFileOperation(f"object name {name!r} has an empty, '.' or '..' segment")
    try:
        size = len(name.encode())
    except UnicodeEncodeError:
        raise SuspiciousFileOperation(f"object name {name!r} is not valid Unicode") from None
    if size > MAX_NAME_BYTES:
        raise SuspiciousFileOperation(f"object name is {size} bytes long; the limit is {MAX_NAME_BYTES}")
    return name


def leads_elsewhere(name: str) -> bool:
    """Whether a URL path ending in ``name`` resolves, in a browser, outside where it starts ("." or "..")."""
    return any(part in (".", "..") for part in name.replace("\\", "/").split("/"))


def clean_prefix(path: str | os.PathLike[str] | None) -> str:
    """A directory for ``listdir``: ``""`` for the top (``""``, ``"."``, ``Path("")``), else a clean name
    ending in ``/``; ``.`` segments are dropped as a file system would, ``..`` is refused."""
    parts = [part for part in os.fspath(path or "").split("/") if part not in ("", ".")]
    return clean_name("/".join(parts)) + "/" if parts else ""


def clean_location(location: object) -> str:
    """A storage's ``location`` inside its bucket: ``""`` or a clean name, without slashes around it."""
    if not isinstance(location, str):
        raise TypeError(f"a location is a string, not {type(location).__name__}")
    location = location.strip("/")
    return clean_name(location) if location else ""


def usable(prefix: str, entry: str) -> bool:
    """Whether Django code may use ``prefix + entry``, an entry listed under the clean ``prefix``: the full
    check only for an entry that could fail it."""
    if not _SUSPECT.search(entry) and len(prefix) + len(entry) <= MAX_NAME_BYTES // 4:
        return True  # the prefix is clean, and the index never lists '', '.' or '..'
    try:
        clean_name(prefix + entry)
    except SuspiciousFileOperation:
        return False
    return True


def index_token(segment: str) -> str:
    """One path segment as one literal subject token: never ``*``, ``>``, ``.``, white space, and never
    ``~~`` (kept for overflow entries); two segments never share a token."""
    if not segment:
        return EMPTY_SEGMENT_TOKEN
    if _TOKEN_SAFE.fullmatch(segment):
        return segment
    return "".join([_ESCAPED[byte] for byte in segment.encode("utf-8", "surrogatepass")])


def index_tokens(name: str) -> list[str]:
    """``name`` split on ``/``, each segment escaped by ``index_token``: its subject in the listing index."""
    return [index_token(segment) for segment in name.split("/")]
