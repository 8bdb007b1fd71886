"""The listing index's subjects and payloads (docs/design-listing.md, "The companion streams"): the two streams
of a bucket, a name's entry subject (its path segments as tokens, or an overflow entry under a hash), a
directory's marker subject, and the JSON they carry. Pure functions, no I/O."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Iterable
from typing import Any

from natsstorage.jetstream import NANOSECONDS
from natsstorage.names import index_tokens
from natsstorage.objectstore import META_SUBJECT

ENTRIES_STREAM = "NSI_{bucket}"
DIRECTORIES_STREAM = "NSD_{bucket}"
ENTRY_ROOT = "$NSI.{bucket}"
DIRECTORY_ROOT = "$NSD.{bucket}"  # also the state message's subject
OVERFLOW = "~~"  # the token before an overflow entry's hash: never an escaped segment's
FORMAT = 1  # the state's "v"
MAX_INDEX_SUBJECT = 2048  # bytes of any subject published to the index: far within a 4,096-byte protocol line
MAX_DEPTH = 32  # tokens of an overflow entry's subject at most: a directory that fits has MAX_DEPTH - 2
HASH_CHARACTERS = 43  # unpadded base64url SHA-256
ENTRY_MAX_AGE_MARGIN = 60  # seconds an entry outlives its object's metadata in a bucket with a TTL


def stream_configs(bucket: str, objects: dict[str, Any]) -> list[dict[str, Any]]:
    """The two companion streams of a bucket whose stream has the configuration ``objects``."""
    max_age = int(objects.get("max_age") or 0)
    shared = {
        "max_msgs_per_subject": 1,
        "discard": "old",
        "storage": objects.get("storage", "file"),
        # One replica whatever the bucket's: any replica answers a direct get, and one that lags would leave out
        # what was just written; this one always has it. The index is made again from the bucket's metadata
        # (natsos_index) if its server is lost, and listings go the old way until then.
        "num_replicas": 1,
        "compression": objects.get("compression", "none"),
        "allow_direct": True,  # nats-server 2.15.1 does not set it from max_msgs_per_subject (tried)
        "deny_purge": False,  # the fold purges stale entries
    }
    entries = {
        **shared,
        "name": ENTRIES_STREAM.format(bucket=bucket),
        "subjects": [ENTRY_ROOT.format(bucket=bucket) + ".>"],
        "max_age": max_age + ENTRY_MAX_AGE_MARGIN * NANOSECONDS if max_age else 0,
    }
    root = DIRECTORY_ROOT.format(bucket=bucket)
    directories = {**shared, "name": DIRECTORIES_STREAM.format(bucket=bucket), "subjects": [root, root + ".>"]}
    directories["max_age"] = 0
    return [entries, directories]


def subject(root: str, tokens: Iterable[str]) -> str:
    """The subject of ``tokens`` under ``root`` (an entry's or a marker's)."""
    return ".".join([root, *tokens])


def directory_fits(bucket: str, tokens: list[str]) -> bool:
    """Whether a directory of these tokens has a marker and can hold overflow entries."""
    longest = len(subject(ENTRY_ROOT.format(bucket=bucket), tokens)) + len(OVERFLOW) + 2 + HASH_CHARACTERS
    return len(tokens) <= MAX_DEPTH - 2 and longest <= MAX_INDEX_SUBJECT


def overflow_home(bucket: str, tokens: list[str]) -> int:
    """How many of ``tokens`` (a directory's) make its deepest ancestor that fits (0: the bucket's top)."""
    depth = min(len(tokens), MAX_DEPTH - 2)
    while depth and not directory_fits(bucket, tokens[:depth]):
        depth -= 1
    return depth


def entry_subject(bucket: str, name: str) -> str:
    """Where ``name``'s entry is: its own subject, or an overflow entry under its deepest ancestor that fits.

    Its own only in a directory that fits, which ``listdir`` reads by its subject (else by the overflow home)."""
    tokens = index_tokens(name)
    own = subject(ENTRY_ROOT.format(bucket=bucket), tokens)
    if len(own) <= MAX_INDEX_SUBJECT and directory_fits(bucket, tokens[:-1]):
        return own
    home = overflow_home(bucket, tokens[:-1])
    digest = base64.urlsafe_b64encode(hashlib.sha256(name.encode("utf-8", "surrogatepass")).digest()).decode()
    return subject(ENTRY_ROOT.format(bucket=bucket), [*tokens[:home], OVERFLOW, digest.rstrip("=")])


def marker_subject(bucket: str, tokens: list[str]) -> str:
    return subject(DIRECTORY_ROOT.format(bucket=bucket), tokens)


def directories_of(name: str) -> list[str]:
    """The directories ``name`` is under, outermost first, each ending in ``/`` (the top, ``""``, left out)."""
    segments = name.split("/")[:-1]
    return ["/".join(segments[: depth + 1]) + "/" for depth in range(len(segments))]


def name_of_meta(bucket: str, subject: str) -> str | None:
    """The name a metadata subject stands for (padded base64url), None when it is not one."""
    token = subject[len(META_SUBJECT.format(bucket=bucket, key="")) :]
    try:
        return base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode("utf-8", "surrogatepass")
    except (binascii.Error, ValueError):
        return None


def parse_entry(data: bytes) -> dict[str, Any] | None:
    """An entry's or marker's payload, None when it is not one (the streams take anyone's publishes)."""
    try:
        found = json.loads(data)
    except ValueError:
        return None
    return found if isinstance(found, dict) and isinstance(found.get("n"), str) else None


def entry_payload(name: str, nuid: str, size: int, mtime_ns: int, link: bool) -> dict[str, Any]:
    """An entry (``l`` only for a link)."""
    payload: dict[str, Any] = {"n": name, "u": nuid, "s": size, "t": mtime_ns}
    if link:
        payload["l"] = 1
    return payload


def entry_json(name: str, nuid: str, size: int, mtime_ns: int) -> bytes:
    """``json.dumps(entry_payload(...)).encode()`` of an object's entry, byte for byte, a third of its time:
    what every save sends."""
    return f'{{"n": {json.dumps(name)}, "u": {json.dumps(nuid)}, "s": {int(size)}, "t": {int(mtime_ns)}}}'.encode()
