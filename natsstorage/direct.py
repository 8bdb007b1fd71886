"""Direct uploads: signed links a browser sends a file to, and where an interrupted one stands.

A link (``NatsStorage.upload_url``) is a signed token naming the bucket, the
object, a fresh nuid for its chunks, the largest size and the content types
allowed, and when it expires: the server keeps no state. The chunks an upload
has stored under its nuid are its progress; an upload resumed goes on
appending to them. Python's SHA-256 cannot be carried from one process to
another, so a resumed upload's digest is taken once, when it is finished, by
reading back its chunks (``digest_of``): every request of an upload sent in
many pieces reads back at most its last chunk. docs/direct-uploads.md says why
and what a client sends.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import os
import re
import threading
from collections import deque
from dataclasses import dataclass, replace
from typing import Any

from nats.nuid import NUID

from natsstorage import signing
from natsstorage.delivery import Pull
from natsstorage.exceptions import CorruptObject, JetStreamError, ObjectChanged
from natsstorage.jetstream import ERR_NO_MESSAGE, ERR_SEQUENCE_NOT_FOUND
from natsstorage.objectstore import CHUNK_SUBJECT, Bucket, ObjectInfo
from natsstorage.transfer import HASH_AHEAD, Upload, _hash_beside

LINK = "upload"  # the kinds of signed token (signing.dumps): a link to upload to,
RESULT = "uploaded"  # what a finished upload gives the browser, for a form to submit,
TICKET = "upload-ticket"  # and what a DirectUploadWidget renders, to ask for a link with
STORED_TRIES = 3  # times ``stored`` reads a chunk count and a last chunk before it answers a lower bound
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
    """What an upload link allows: one object, of at most ``max_size`` bytes, of one of ``content_types``.

    A tus client's creation (``POST`` with ``Upload-Length``) gets the same link signed again with the file's
    ``length`` and ``content_type`` added (``created``): the server still keeps no state."""

    bucket: str
    location: str  # the storage's: the view finds the storage by (bucket, location)
    name: str  # the storage's name for the object; decided when the link was signed, never by the request
    nuid: str  # its chunks' subject
    max_size: int
    content_types: list[str]
    length: int | None = None  # the file's size, once a tus creation declared it
    content_type: str = ""  # the file's type, as a tus creation declared it (checked against content_types)
    expires: int = 0  # when the token expires (seconds since 1970): a created link expires with its link

    def token(self, *, expiry: int) -> str:
        return signing.dumps(LINK, self._value(), expiry=expiry)

    def _value(self) -> dict[str, object]:
        value: dict[str, object] = {
            "b": self.bucket,
            "l": self.location,
            "n": self.name,
            "u": self.nuid,
            "m": self.max_size,
            "t": self.content_types,
        }
        if self.length is not None:
            value.update({"s": self.length, "c": self.content_type})
        return value

    def created(self, length: int, content_type: str) -> str:
        """This link's token with the file's size and type, expiring when this one does."""
        declared = replace(self, length=length, content_type=content_type)
        return signing.dumps(LINK, declared._value(), expiry=self.expires, now=0)

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
                int(value["s"]) if "s" in value else None,  # type: ignore[call-overload]
                str(value.get("c", "")),
                int(value["expires"]),  # type: ignore[call-overload]
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
    """Where an upload stands: the bytes stored (all in chunks of one size but the last), or the object it became."""

    offset: int
    chunks: int = 0
    done: ObjectInfo | None = None


def _full_chunk(bucket: Bucket, nc: Any) -> int:
    """The size of an upload's chunks, as ``Upload`` picks it: the bucket's, unless the server allows less."""
    return int(min(bucket.chunk_size, nc.max_payload))


async def stored(bucket: Bucket, key: str, nuid: str) -> Stored:
    """How far the upload of ``nuid`` (to the bucket key ``key``) went: three requests (a fourth, for the first
    chunk's size, when the last is short), no data read back but those chunks."""
    info = await bucket.latest(key)
    if info is not None and bucket.live(info) and info.nuid == nuid:
        return Stored(info.size, info.chunks, done=info)
    nc = await bucket.connection()
    subject = CHUNK_SUBJECT.format(bucket=bucket.name, nuid=nuid)
    chunks = await chunk_count(bucket, nuid)
    for _ in range(STORED_TRIES):
        if not chunks:
            return Stored(0)
        last = await bucket.stream.direct_get(nc, {"last_by_subj": subject})
        # The count and the last chunk of one moment: a request writing meanwhile (the tail of one cut off, say)
        # would have a short last chunk counted among fewer chunks than there are.
        counted, chunks = chunks, await chunk_count(bucket, nuid)
        if chunks == counted:
            break
    else:
        chunks, last = chunks - 1, None  # still being written: the chunks before its last are full, a lower bound
    if last is None:
        # Purged meanwhile; or a request resuming the upload just took its tail back, and nats-server 2.9 no
        # longer knows a subject's last message once it is removed: what is left are full chunks.
        first = await bucket.stream.direct_get(nc, {"seq": 0, "next_by_subj": subject})
        return Stored(0) if first is None else Stored(chunks * len(first["data"]), chunks)
    size = len(last["data"])  # a full chunk, or the short tail a paused request stored last
    if chunks == 1 or size == _full_chunk(bucket, nc):
        return Stored(chunks * size, chunks)
    # A tail, or chunks of another size than this process writes (its chunk_size changed): the first says.
    first = await bucket.stream.direct_get(nc, {"seq": 0, "next_by_subj": subject})
    full = len(first["data"]) if first is not None else size
    return Stored((chunks - 1) * full + size, chunks)


async def start(bucket: Bucket, key: str, nuid: str, where: Stored) -> Upload:
    """The upload of ``nuid`` from where it stands: new, or resumed (its digest then taken once it is finished)."""
    if where.chunks:
        return await resume(bucket, key, nuid)
    return await Upload.resume(
        bucket, nuid, chunks=0, size=0, sha256=hashlib.sha256(), chunk_size=bucket.chunk_size, last_seq=0, name=key
    )


async def resume(bucket: Bucket, key: str, nuid: str) -> Upload:
    """An upload that goes on from the chunks already stored under ``nuid``; its first new chunk lands only
    after the last one there. Two or three requests, whatever the size: only the last chunk is read back, and
    the digest is left for ``digest_of`` once the upload is finished.

    The last chunk may be short: the tail a paused request stored, so that every byte it received counts.
    It is read back into the upload's buffer and removed from the stream (chunks of an object are all of
    one size but the last), to go out again at the head of the next full chunk."""
    subject = CHUNK_SUBJECT.format(bucket=bucket.name, nuid=nuid)
    nc = await bucket.connection()
    count = await chunk_count(bucket, nuid)
    last = await bucket.stream.direct_get(nc, {"last_by_subj": subject}) if count else None
    first = last if count == 1 and last else await bucket.stream.direct_get(nc, {"seq": 0, "next_by_subj": subject})
    if first is None:  # purged meanwhile
        raise ObjectChanged(f"another request is resuming the upload to {key!r}")
    # No last message: a request took the tail back (and goes on, or stopped), and nats-server 2.9 no longer knows
    # a subject's last message once it is removed. What is left are full chunks; none is expected to be the last
    # (the check before the metadata catches another request writing meanwhile).
    last_size = len((last or first)["data"])
    chunk_size = max(last_size, _full_chunk(bucket, nc)) if count == 1 else len(first["data"])
    if not 0 < last_size <= chunk_size:
        raise CorruptObject(f"the upload to {key!r} in bucket {bucket.name!r} holds a chunk cut short")
    tail = bytes(last["data"]) if last is not None and last_size < chunk_size else b""
    if last is not None and tail:
        await _take_tail(bucket, nc, last["seq"], key)
    chunks = count - 1 if tail else count
    return await Upload.resume(
        bucket,
        nuid,
        chunks=chunks,
        size=chunks * chunk_size,
        sha256=None,
        chunk_size=chunk_size,
        # After a tail taken back, its removal was this request's claim (only one can remove it): nats-server
        # 2.9 no longer knows the subject's last sequence once its last message is removed, so none is expected.
        last_seq=None if tail or last is None else last["seq"],
        name=key,
        tail=tail,
    )


async def digest_of(bucket: Bucket, key: str, nuid: str, chunk_size: int, size: int) -> bytes:
    """The SHA-256 of the chunks stored under ``nuid``, read back a window at a time (memory stays flat) and
    hashed beside the loop; ``CorruptObject`` when one but the last is not ``chunk_size`` bytes, or they do
    not add up to ``size`` (another request wrote beside this one)."""
    subject = CHUNK_SUBJECT.format(bucket=bucket.name, nuid=nuid)
    sha256 = hashlib.sha256()
    hashing: deque[concurrent.futures.Future[None]] = deque()  # chunks on the hashing thread, in order
    config = {"deliver_policy": "all", "filter_subject": subject}
    window = bucket.window_for(chunk_size)
    read = 0
    try:
        async with Pull(bucket.stream, await bucket.connection(), config, exact=True, window=window) as pull:
            count = pull.pending
            for index in range(count):
                msg = await pull.next()
                assert msg is not None  # an exact pull raises rather than end early
                if len(msg.data) > chunk_size or (len(msg.data) < chunk_size and index < count - 1):
                    raise CorruptObject(f"the upload to {key!r} in bucket {bucket.name!r} holds a chunk cut short")
                read += len(msg.data)
                hashing.append(_hash_beside(sha256, msg.data))  # while the next chunks arrive
                while len(hashing) > HASH_AHEAD:
                    await asyncio.wrap_future(hashing.popleft())
    finally:
        for hashed in hashing:
            await asyncio.wrap_future(hashed)
    if read != size:
        raise CorruptObject(f"the upload to {key!r} in bucket {bucket.name!r} holds {read} bytes, not {size}")
    return sha256.digest()


async def _take_tail(bucket: Bucket, nc: Any, seq: int, key: str) -> None:
    """Remove a paused upload's short last chunk (its bytes are held to go again); another request that
    took it first makes this one ``ObjectChanged``."""
    try:
        await bucket.stream.api(nc, f"STREAM.MSG.DELETE.{bucket.stream.name}", {"seq": seq, "no_erase": True})
    except JetStreamError as error:
        if error.code not in (ERR_SEQUENCE_NOT_FOUND, ERR_NO_MESSAGE):
            raise
        raise ObjectChanged(f"another request is resuming the upload to {key!r}", code=error.code) from None


async def chunk_count(bucket: Bucket, nuid: str) -> int:
    """The chunks the stream holds under ``nuid``: what a commit checks that no other writer added to."""
    subject = CHUNK_SUBJECT.format(bucket=bucket.name, nuid=nuid)
    state = (await bucket.stream.info(await bucket.connection(), subjects_filter=subject))["state"]
    return int((state.get("subjects") or {}).get(subject, 0))


async def purge(bucket: Bucket, nuid: str, key: str) -> None:
    """Remove an upload's chunks (refused: over its size, or scrambled by two writers)."""
    subject = CHUNK_SUBJECT.format(bucket=bucket.name, nuid=nuid)
    await bucket.stream.purge_or_warn(await bucket.connection(), subject, f"a refused upload to {key!r}")
