"""Direct uploads: signed links a browser sends a file to, and where an interrupted one stands.

A link (``NatsStorage.upload_url``) is a signed token naming the bucket, the
object, a fresh nuid for its chunks, the largest size and the content types
allowed, and when it expires: the server keeps no state. The chunks an upload
has stored under its nuid are its progress; an upload resumed goes on
appending to them, after hashing those already stored again (Python's SHA-256
cannot be carried from one process to another). docs/direct-uploads.md says
why and what a client sends.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import os
import re
import threading
from collections import deque
from dataclasses import dataclass
from typing import Any

from nats.nuid import NUID

from natsstorage import signing
from natsstorage.delivery import Pull
from natsstorage.exceptions import CorruptObject
from natsstorage.objectstore import CHUNK_SUBJECT, Bucket, ObjectInfo
from natsstorage.transfer import HASH_AHEAD, Upload, _hash_beside

LINK = "upload"  # the kinds of signed token (signing.dumps): a link to upload to,
RESULT = "uploaded"  # what a finished upload gives the browser, for a form to submit,
TICKET = "upload-ticket"  # and what a DirectUploadWidget renders, to ask for a link with
RESULT_EXPIRY = 24 * 3600  # seconds a finished upload's result may wait for its form to be submitted
MAX_CONTENT_TYPES = 32  # a link allows at most this many types (patterns like ``image/*`` count as one)
CONTENT_TYPE = re.compile(r"[a-z0-9][a-z0-9!#$&^_.+-]{0,63}/(\*|[a-z0-9][a-z0-9!#$&^_.+-]{0,63})", re.ASCII)

_nuid = NUID()  # as an Upload's; links are signed in any thread, and a NUID's state is not thread-safe
_nuid_lock = threading.Lock()


def _new_nuids_in_child() -> None:
    """A forked worker (gunicorn --preload, uWSGI) would draw the same nuids as its siblings: not so."""
    global _nuid, _nuid_lock
    _nuid, _nuid_lock = NUID(), threading.Lock()


os.register_at_fork(after_in_child=_new_nuids_in_child)


def allowed_types(content_types: Any) -> list[str]:
    """``content_types`` as a link signs them (lower case ``type/subtype`` or ``type/*``); ValueError if not."""
    if content_types is None:
        return []
    if isinstance(content_types, str) or len(content_types) > MAX_CONTENT_TYPES:
        raise ValueError(f"content_types must be a list of at most {MAX_CONTENT_TYPES} types, like ['image/png']")
    found = []
    for value in content_types:
        if not isinstance(value, str) or not CONTENT_TYPE.fullmatch(value.lower()):
            raise ValueError(f"{value!r} is not a content type (type/subtype or type/*)")
        found.append(value.lower())
    return found


def type_allowed(content_type: str, allowed: list[str]) -> bool:
    """Whether the media type of ``content_type`` (its parameters aside) is one ``allowed`` (none: any)."""
    media_type = content_type.partition(";")[0].strip().lower()
    if not CONTENT_TYPE.fullmatch(media_type) or media_type.endswith("/*"):
        return False
    return not allowed or any(
        media_type == kind or (kind.endswith("/*") and media_type.startswith(kind[:-1])) for kind in allowed
    )


@dataclass(frozen=True)
class Link:
    """What an upload link allows: one object, of at most ``max_size`` bytes, of one of ``content_types``."""

    bucket: str
    location: str  # the storage's: the view finds the storage by (bucket, location)
    name: str  # the storage's name for the object; decided when the link was signed, never by the request
    nuid: str  # its chunks' subject
    max_size: int
    content_types: list[str]

    def token(self, *, expiry: int) -> str:
        value = {
            "b": self.bucket,
            "l": self.location,
            "n": self.name,
            "u": self.nuid,
            "m": self.max_size,
            "t": self.content_types,
        }
        return signing.dumps(LINK, value, expiry=expiry)

    @classmethod
    def new(cls, bucket: str, location: str, name: str, *, max_size: int, content_types: Any) -> Link:
        if isinstance(max_size, bool) or not isinstance(max_size, int) or max_size < 0:
            raise ValueError(f"max_size must be a whole number of bytes, not {max_size!r}")
        with _nuid_lock:
            nuid = _nuid.next().decode()
        return cls(bucket, location, name, nuid, max_size, allowed_types(content_types))

    @classmethod
    def from_token(cls, token: object) -> Link:
        """The link a token signs; ``LinkRefused`` when it does not (tampered, expired)."""
        value = signing.loads(LINK, token)
        try:
            return cls(
                str(value["b"]),
                str(value["l"]),
                str(value["n"]),
                str(value["u"]),
                int(value["m"]),  # type: ignore[call-overload]
                [str(kind) for kind in value["t"]],  # type: ignore[attr-defined]
            )
        except (KeyError, TypeError, ValueError):
            raise signing.LinkRefused("This link has been tampered with.") from None


@dataclass(frozen=True)
class Result:
    """A finished upload, as the browser hands it to a form: the object, its size and digest."""

    bucket: str
    location: str
    name: str
    size: int
    digest: str  # as the metadata holds it: "SHA-256=..."

    def token(self) -> str:
        value = {"b": self.bucket, "l": self.location, "n": self.name, "s": self.size, "d": self.digest}
        return signing.dumps(RESULT, value, expiry=RESULT_EXPIRY)

    @classmethod
    def from_token(cls, token: object) -> Result:
        value = signing.loads(RESULT, token)
        try:
            return cls(str(value["b"]), str(value["l"]), str(value["n"]), int(value["s"]), str(value["d"]))  # type: ignore[call-overload]
        except (KeyError, TypeError, ValueError):
            raise signing.LinkRefused("This link has been tampered with.") from None

    def matches(self, info: ObjectInfo | None) -> bool:
        """Whether ``info`` is the object this result names: same size and digest."""
        return info is not None and info.size == self.size and info.digest == self.digest


@dataclass(frozen=True)
class Stored:
    """Where an upload stands: the bytes stored in whole chunks, or the object it became."""

    offset: int
    chunks: int = 0
    chunk_size: int = 0  # of the chunks stored (all full); 0: none yet
    last_seq: int = 0  # the last chunk's stream sequence
    done: ObjectInfo | None = None


async def stored(bucket: Bucket, key: str, nuid: str) -> Stored:
    """How far the upload of ``nuid`` (to the bucket key ``key``) went: two requests, no data read back."""
    info = await bucket.latest(key)
    if info is not None and bucket.live(info) and info.nuid == nuid:
        return Stored(info.size, info.chunks, info.chunk_size or 0, done=info)
    nc = await bucket.connection()
    subject = CHUNK_SUBJECT.format(bucket=bucket.name, nuid=nuid)
    state = (await bucket.stream.info(nc, subjects_filter=subject))["state"]
    chunks = int((state.get("subjects") or {}).get(subject, 0))
    if not chunks:
        return Stored(0)
    last = await bucket.stream.direct_get(nc, {"last_by_subj": subject})
    if last is None:  # purged meanwhile
        return Stored(0)
    return Stored(chunks * len(last["data"]), chunks, len(last["data"]), last["seq"])


async def start(bucket: Bucket, key: str, nuid: str, where: Stored) -> Upload:
    """The upload of ``nuid`` from where it stands: new, or resumed (its chunks read back and hashed again)."""
    if where.chunks:
        return await resume(bucket, key, nuid)
    return await Upload.resume(
        bucket, nuid, chunks=0, size=0, sha256=hashlib.sha256(), chunk_size=bucket.chunk_size, last_seq=0, name=key
    )


async def resume(bucket: Bucket, key: str, nuid: str) -> Upload:
    """An upload that goes on from the chunks already stored under ``nuid``, hashed again as they are read
    back a window at a time (memory stays flat); its first new chunk lands only after the last read here."""
    subject = CHUNK_SUBJECT.format(bucket=bucket.name, nuid=nuid)
    nc = await bucket.connection()
    sha256, chunks, size, chunk_size, last_seq = hashlib.sha256(), 0, 0, 0, 0
    hashing: deque[concurrent.futures.Future[None]] = deque()  # chunks on the hashing thread, in order
    config = {"deliver_policy": "all", "filter_subject": subject}
    try:
        async with Pull(bucket.stream, nc, config, exact=True, window=bucket.window_for(bucket.chunk_size)) as pull:
            for _ in range(pull.pending):
                msg = await pull.next()
                assert msg is not None  # an exact pull raises rather than end early
                if chunk_size and len(msg.data) != chunk_size:
                    raise CorruptObject(f"the upload to {key!r} in bucket {bucket.name!r} holds a chunk cut short")
                chunk_size = chunk_size or len(msg.data)
                hashing.append(_hash_beside(sha256, msg.data))  # while the next chunks arrive
                while len(hashing) > HASH_AHEAD:
                    await asyncio.wrap_future(hashing.popleft())
                chunks, size, last_seq = chunks + 1, size + len(msg.data), msg.metadata.sequence.stream
    finally:
        for hashed in hashing:
            await asyncio.wrap_future(hashed)
    upload = await Upload.resume(
        bucket, nuid, chunks=chunks, size=size, sha256=sha256, chunk_size=chunk_size, last_seq=last_seq, name=key
    )
    return upload


async def chunk_count(bucket: Bucket, nuid: str) -> int:
    """The chunks the stream holds under ``nuid``: what a commit checks that no other writer added to."""
    subject = CHUNK_SUBJECT.format(bucket=bucket.name, nuid=nuid)
    state = (await bucket.stream.info(await bucket.connection(), subjects_filter=subject))["state"]
    return int((state.get("subjects") or {}).get(subject, 0))


async def purge(bucket: Bucket, nuid: str, key: str) -> None:
    """Remove an upload's chunks (refused: over its size, or scrambled by two writers)."""
    subject = CHUNK_SUBJECT.format(bucket=bucket.name, nuid=nuid)
    await bucket.stream.purge_or_warn(await bucket.connection(), subject, f"a refused upload to {key!r}")
