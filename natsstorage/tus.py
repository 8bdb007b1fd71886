"""The tus resumable upload protocol, 1.0.0 (https://tus.io/protocols/resumable-upload), as upload links speak
it: its headers, and ``Upload-Metadata`` read within bounds. ``receiving`` answers the requests."""

from __future__ import annotations

import base64
import binascii
import re

from natsstorage import contenttypes, signing

VERSION = "1.0.0"  # the only version spoken: Tus-Resumable, Tus-Version
EXTENSIONS = "creation,termination"  # Tus-Extension
RESUMABLE = "Tus-Resumable"  # every tus request and answer carries it (an OPTIONS request aside)
BODY_TYPE = "application/offset+octet-stream"  # a PATCH's Content-Type
METADATA = "Upload-Metadata"
METHOD_OVERRIDE = "X-HTTP-Method-Override"  # a POST that stands for a PATCH or a DELETE (tus clients' option)
FILETYPE = "filetype"  # the metadata key tus clients (tus-js-client, Uppy) give the file's type in
MAX_METADATA = 4096  # characters of Upload-Metadata: a file's name and type take far less
MAX_PAIRS = 32
KEY = re.compile(r"[!-+\--~]{1,64}", re.ASCII)  # printable ASCII but space and comma


def metadata(value: str) -> dict[str, bytes]:
    """``Upload-Metadata`` (``key base64``, comma separated; a key alone has an empty value) by key;
    ValueError, saying what is wrong, for anything else. ``filetype`` must be a content type's length of text."""
    if len(value) > MAX_METADATA:
        raise ValueError(f"{METADATA} holds at most {MAX_METADATA} characters.")
    found: dict[str, bytes] = {}
    if not value.strip():
        return found
    pairs = value.split(",")
    if len(pairs) > MAX_PAIRS:
        raise ValueError(f"{METADATA} holds at most {MAX_PAIRS} pairs.")
    for pair in pairs:
        key, _, encoded = pair.strip().partition(" ")
        if not KEY.fullmatch(key) or key in found:
            raise ValueError(f"{METADATA} is 'key base64' pairs, separated by commas, each key once.")
        try:
            found[key] = base64.b64decode(encoded.strip(), validate=True)
        except (binascii.Error, ValueError):
            raise ValueError(f"The value of {key[:64]!r} in {METADATA} is not base64.") from None
    kind = found.get(FILETYPE, b"")
    if len(kind) > contenttypes.MAX_LENGTH or not _text(kind):
        raise ValueError(f"The {FILETYPE} in {METADATA} is not a content type.")
    return found


def _text(value: bytes) -> bool:
    try:
        return signing.one_line(value.decode())
    except UnicodeDecodeError:
        return False
