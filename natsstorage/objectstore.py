"""The NATS Object Store protocol, asyncio and Django-free.

The wire layout is the one every NATS client shares (ADR-20): a stream
``OBJ_<bucket>``, an object's data as chunk messages on
``$O.<bucket>.C.<nuid>`` and its metadata as one JSON message on
``$O.<bucket>.M.<base64url(name)>``, kept alone by the rollup header.

Where nats-py's own ``ObjectStore`` waits for every chunk's acknowledgement
and builds whole objects in memory, this module keeps a bounded window of
unacknowledged chunks in flight when writing, and reads through an ephemeral
pull consumer asked for at most a window of chunks at a time, so memory stays
flat whatever the object's size. Every network wait has a timeout.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import json
import logging
import re
import time
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import nats.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.nuid import NUID

from natsstorage import _bridge
from natsstorage.exceptions import (
    BucketFull,
    BucketNotFound,
    BucketSealed,
    CorruptObject,
    NatsStorageError,
    NatsUnavailable,
    ObjectChanged,
)

STREAM = "OBJ_{bucket}"
ALL_CHUNKS = "$O.{bucket}.C.>"
ALL_META = "$O.{bucket}.M.>"
CHUNK_SUBJECT = "$O.{bucket}.C.{nuid}"
META_SUBJECT = "$O.{bucket}.M.{key}"
API = "$JS.API."
DIGEST_PREFIX = "SHA-256="
DEFAULT_CHUNK_SIZE = 128 * 1024  # what the NATS clients write by default
# What this module writes by default: every client reads any chunk size up to the
# server's max_payload, and at 128 KiB per-message costs (client and server) halve
# the throughput on a 2-core machine (see bench/run.py).
CHUNK_SIZE = 512 * 1024
WINDOW_BYTES = 8 * 1024 * 1024  # in flight per transfer: keeps a link busy, bounds memory
BUCKET_NAME = re.compile(r"^[a-zA-Z0-9_-]+$")

ROLLUP_HEADER = "Nats-Rollup"
ROLLUP_SUBJECT = "sub"
EXPECTED_SUBJECT_SEQ_HEADER = "Nats-Expected-Last-Subject-Sequence"
STATUS_HEADER = "Status"
SLOW_START = 4  # chunks a read asks for first; it doubles up to the window
REPLICA_RETRY_WAIT = 0.2  # seconds between reads of a replicated bucket that saw chunks missing
SEQUENCE_HEADER = "Nats-Sequence"  # on a direct get's answer, with:
TIME_HEADER = "Nats-Time-Stamp"
MESSAGE_SIZE_HEADER = "Nats-Msg-Size"  # what a headers-only consumer sends instead of the data
NO_RESPONDERS = "503"
NOT_FOUND = "404"  # a direct get's "no such message"

# JetStream API error codes this module acts on.
ERR_NO_MESSAGE = 10037
ERR_STREAM_NAME_IN_USE = 10058
ERR_STREAM_NOT_FOUND = 10059
ERR_WRONG_LAST_SEQUENCE = 10071
ERR_MAX_BYTES = 10077
ERR_SEALED = 10109

# Ephemeral consumers are deleted when a read ends; this is the server's
# safety net for readers that never finish (a client killed mid-read).
CONSUMER_INACTIVE_THRESHOLD = timedelta(seconds=30)
# A watch's pull requests last this long, with an idle heartbeat every
# WATCH_HEARTBEAT; hearing nothing for the bucket's timeout means the consumer
# or the server is gone (a restart), and the watch must be started again.
WATCH_EXPIRES = timedelta(seconds=30)
WATCH_HEARTBEAT = timedelta(seconds=1)
NANOSECONDS = 1_000_000_000
ACK_V1_TOKENS = 9  # $JS.ACK.<stream>.<consumer>.<delivered>.<stream seq>.<consumer seq>.<time>.<pending>
LISTING_WINDOW = 1024  # metadata messages in flight when listing (a few hundred bytes each)
# In a cluster a new consumer's pull requests may reach a server that has not yet
# heard of it (no responders, 503) for a moment: ask again this often, within the timeout.
PULL_RETRY_WAIT = 0.05

_nuid = NUID()
logger = logging.getLogger("natsstorage")


def encode_key(name: str) -> str:
    """The metadata subject token of ``name``: padded base64url, as nats.go writes it."""
    return base64.urlsafe_b64encode(name.encode()).decode()


def decode_digest(digest: str) -> bytes:
    """The SHA-256 bytes of a ``SHA-256=<base64>`` digest in either base64 alphabet."""
    value = digest.partition("=")[2].replace("+", "-").replace("/", "_")
    try:
        return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except (binascii.Error, ValueError):
        return b""


def encode_digest(sha256: bytes) -> str:
    return DIGEST_PREFIX + base64.urlsafe_b64encode(sha256).decode()


def parse_time(value: str) -> datetime:
    """An RFC 3339 time as Go writes it (nanoseconds, ``Z``), as an aware datetime."""
    match = re.fullmatch(r"(.+?T\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)", value)
    if match is None:
        return datetime.fromtimestamp(0, UTC)
    whole, fraction, zone = match.groups()
    fraction = (fraction or ".0")[:7]
    return datetime.fromisoformat(whole + fraction + ("+00:00" if zone == "Z" else zone))


def format_time(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class BucketConfig:
    """How to create a missing bucket; an existing bucket is never changed."""

    description: str = ""
    ttl: float | None = None  # seconds; None keeps objects forever
    max_bytes: int = -1  # -1: no limit
    storage: str = "file"  # or "memory"
    replicas: int = 1
    compression: bool = False

    def stream_config(self, bucket: str) -> dict[str, Any]:
        """The stream configuration nats.go's ``CreateObjectStore`` sends."""
        config: dict[str, Any] = {
            "name": STREAM.format(bucket=bucket),
            "subjects": [ALL_CHUNKS.format(bucket=bucket), ALL_META.format(bucket=bucket)],
            "max_age": int((self.ttl or 0) * NANOSECONDS),
            "max_bytes": self.max_bytes,
            "storage": self.storage,
            "num_replicas": self.replicas,
            "discard": "new",
            "allow_rollup_hdrs": True,
            "allow_direct": True,
            "compression": "s2" if self.compression else "none",
        }
        if self.description:
            config["description"] = self.description
        return config


@dataclass(frozen=True)
class ObjectInfo:
    """One object's metadata, as stored in its metadata message."""

    bucket: str
    name: str
    nuid: str
    size: int
    chunks: int
    digest: str
    mtime: datetime  # when the metadata message was stored, by the server's clock
    seq: int  # the metadata message's stream sequence, for compare-and-set
    deleted: bool = False
    description: str = ""
    headers: Mapping[str, list[str]] = field(default_factory=dict)
    chunk_size: int | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_message(cls, data: bytes, *, seq: int, time: datetime) -> ObjectInfo:
        try:
            raw = json.loads(data)
        except ValueError as error:
            raise CorruptObject(f"unreadable object metadata at stream sequence {seq}: {error}") from None
        return cls.from_raw(raw, seq=seq, time=time)

    @classmethod
    def from_delivery(cls, msg: Msg) -> ObjectInfo:
        """From a metadata message a consumer delivered; its time to the microsecond, like ``parse_time``."""
        tokens = msg.reply.split(".")
        nanoseconds = int(tokens[7] if len(tokens) == ACK_V1_TOKENS else tokens[Msg.Ack.Timestamp])
        time = datetime.fromtimestamp(nanoseconds // NANOSECONDS, UTC)
        time += timedelta(microseconds=nanoseconds % NANOSECONDS // 1000)
        return cls.from_message(msg.data, seq=msg.metadata.sequence.stream, time=time)

    @classmethod
    def from_raw(cls, raw: Any, *, seq: int, time: datetime) -> ObjectInfo:
        try:
            headers = {
                key: value if isinstance(value, list) else [str(value)]
                for key, value in (raw.get("headers") or {}).items()
            }
            return cls(
                bucket=raw.get("bucket", ""),
                name=raw["name"],
                nuid=raw.get("nuid", ""),
                size=int(raw.get("size") or 0),
                chunks=int(raw.get("chunks") or 0),
                digest=raw.get("digest") or "",
                mtime=time,
                seq=seq,
                deleted=bool(raw.get("deleted")),
                description=raw.get("description") or "",
                headers=headers,
                chunk_size=(raw.get("options") or {}).get("max_chunk_size"),
                raw=raw,
            )
        except (ValueError, KeyError, TypeError, AttributeError) as error:
            raise CorruptObject(f"unreadable object metadata at stream sequence {seq}: {error}") from None

    @property
    def content_type(self) -> str | None:
        for key, values in self.headers.items():
            if key.lower() == "content-type" and values:
                return values[0]
        return None

    @property
    def sha256(self) -> bytes:
        return decode_digest(self.digest)

    @property
    def is_link(self) -> bool:
        return bool((self.raw.get("options") or {}).get("link"))


@dataclass(frozen=True)
class BucketStatus:
    """A bucket's figures, as the NATS CLI's ``nats object status`` shows them."""

    name: str
    description: str
    objects: int  # live objects (not deleted, not expired)
    bytes: int  # everything the stream holds: chunks and metadata
    storage: str
    replicas: int
    ttl: float | None  # seconds
    max_bytes: int  # -1: no limit
    sealed: bool
    compression: bool

    @classmethod
    def from_stream_info(cls, name: str, info: Mapping[str, Any], objects: int) -> BucketStatus:
        config, state = info["config"], info["state"]
        return cls(
            name=name,
            description=config.get("description", ""),
            objects=objects,
            bytes=state.get("bytes", 0),
            storage=config.get("storage", "file"),
            replicas=config.get("num_replicas", 1),
            ttl=config["max_age"] / NANOSECONDS if config.get("max_age") else None,
            max_bytes=config.get("max_bytes", -1),
            sealed=bool(config.get("sealed")),
            compression=config.get("compression", "none") != "none",
        )


@dataclass(frozen=True)
class OrphanChunks:
    """The chunks of one upload that no live object's metadata points to (see ``Bucket.orphans``)."""

    subject: str
    nuid: str
    chunks: int
    bytes: int  # chunk data, counted as every client writes it: equal chunks but the last
    newest: datetime  # when its newest chunk was stored, by the server's clock


async def bucket_names(nc: Client, *, timeout: float) -> list[str]:
    """The names of every Object Store bucket on the server, sorted."""
    names: list[str] = []
    while True:
        reply = await nc.request(f"{API}STREAM.NAMES", json.dumps({"offset": len(names)}).encode(), timeout=timeout)
        response = json.loads(reply.data)
        if "error" in response:
            raise NatsStorageError(f"NATS refused to list streams: {response['error'].get('description')}")
        page = response.get("streams") or []
        names.extend(page)
        if not page or len(names) >= response.get("total", 0):
            break
    prefix = STREAM.format(bucket="")
    return sorted(name[len(prefix) :] for name in names if name.startswith(prefix))


class Bucket:
    """One Object Store bucket on a shared connection; every method runs on the NATS loop."""

    def __init__(
        self,
        name: str,
        connect: Callable[[], Awaitable[Client]],
        *,
        timeout: float,
        chunk_size: int = CHUNK_SIZE,
        window: int | None = None,
        create: BucketConfig | None = None,
    ) -> None:
        if not BUCKET_NAME.match(name):
            raise ValueError(f"invalid bucket name {name!r}: use letters, digits, '-' and '_' only")
        self.name = name
        self.stream = STREAM.format(bucket=name)
        self.timeout = timeout
        self.chunk_size = chunk_size
        self.window = window  # None: as many chunks as fit in WINDOW_BYTES
        self._connect = connect
        self._create = create
        self._config: dict[str, Any] | None = None
        self._ready = asyncio.Lock()

    @property
    def replicated(self) -> bool:
        return int((self._config or {}).get("num_replicas", 1)) > 1

    def window_for(self, chunk_size: int) -> int:
        """How many chunks of ``chunk_size`` a transfer keeps in flight."""
        return self.window or max(2, WINDOW_BYTES // chunk_size)

    # -- connection, bucket and JetStream API ------------------------------------

    async def _nc(self) -> Client:
        """The connection, with the bucket made sure of once per process."""
        nc = await self._connect()
        if self._config is None:
            async with self._ready:
                if self._config is None:
                    self._config = await self._ensure(nc)
        return nc

    async def _ensure(self, nc: Client) -> dict[str, Any]:
        try:
            info = await self._api(nc, f"STREAM.INFO.{self.stream}")
        except BucketNotFound:
            if self._create is None:
                raise
            try:
                info = await self._api(nc, f"STREAM.CREATE.{self.stream}", self._create.stream_config(self.name))
            except NatsStorageError as error:
                if getattr(error, "err_code", None) != ERR_STREAM_NAME_IN_USE:
                    raise
                info = await self._api(nc, f"STREAM.INFO.{self.stream}")  # created meanwhile
        config: dict[str, Any] = info["config"]
        return config

    async def _api(self, nc: Client, subject: str, body: Mapping[str, Any] | None = None) -> dict[str, Any]:
        payload = json.dumps(body).encode() if body is not None else b""
        try:
            reply = await nc.request(API + subject, payload, timeout=self.timeout)
        except nats.errors.NoRespondersError:
            raise NatsUnavailable(f"JetStream is not enabled on the NATS server (bucket {self.name!r})") from None
        except nats.errors.Error as error:
            raise self._unavailable(f"no answer to {subject.split('.')[0].lower()} request", error) from None
        response: dict[str, Any] = json.loads(reply.data)
        if "error" in response:
            raise self._refused(response["error"])
        return response

    def _unavailable(self, what: str, error: BaseException) -> NatsUnavailable:
        detail = str(error) or type(error).__name__
        return NatsUnavailable(f"NATS bucket {self.name!r}: {what} within {self.timeout:g} s ({detail})")

    def _refused(self, error: Mapping[str, Any], name: str | None = None) -> NatsStorageError:
        code = error.get("err_code")
        about = f"{name!r} in bucket {self.name!r}" if name else f"bucket {self.name!r}"
        exception: NatsStorageError
        if code == ERR_STREAM_NOT_FOUND:
            self._config = None
            exception = BucketNotFound(f"bucket {self.name!r} does not exist on the NATS server")
        elif code == ERR_MAX_BYTES:
            limit = (self._config or {}).get("max_bytes", "?")
            exception = BucketFull(f"bucket {self.name!r} is full: writing {name!r} would exceed max_bytes {limit}")
        elif code == ERR_SEALED:
            exception = BucketSealed(f"bucket {self.name!r} is sealed: {name or 'it'!r} cannot be changed")
        elif code == ERR_WRONG_LAST_SEQUENCE:
            exception = ObjectChanged(f"{about} was changed by another writer")
        else:
            exception = NatsStorageError(f"NATS refused the request for {about}: {error.get('description')} ({code})")
        exception.err_code = code  # type: ignore[attr-defined]
        return exception

    async def _publish(self, nc: Client, subject: str, payload: bytes, headers: dict[str, str], name: str) -> int:
        """Publish one message and wait for the stream's acknowledgement; its sequence."""
        try:
            reply = await nc.request(subject, payload, timeout=self.timeout, headers=headers)
        except nats.errors.NoRespondersError:
            self._config = None
            raise BucketNotFound(f"bucket {self.name!r} does not exist on the NATS server") from None
        except nats.errors.Error as error:
            raise self._unavailable(f"no acknowledgement for {name!r}", error) from None
        ack = json.loads(reply.data)
        if "error" in ack:
            raise self._refused(ack["error"], name)
        return int(ack["seq"])

    async def _purge(self, nc: Client, subject: str) -> None:
        await self._api(nc, f"STREAM.PURGE.{self.stream}", {"filter": subject})

    async def _purge_or_warn(self, nc: Client, subject: str, what: str) -> None:
        try:
            await self._purge(nc, subject)
        except NatsStorageError as error:
            logger.warning("could not remove the chunks of %s at %s (natsos_gc will): %s", what, subject, error)

    def _purge_soon(self, nc: Client, subject: str, what: str) -> None:
        """Purge garbage without keeping the caller waiting; ``settled`` waits for it."""
        _bridge.background(self.stream, self._purge_or_warn(nc, subject, what))

    async def settled(self) -> None:
        """Wait for this process's purges under way in the bucket, so its figures and max_bytes count them."""
        await _bridge.settled(self.stream)

    # -- bucket ------------------------------------------------------------------

    async def stream_info(self) -> dict[str, Any]:
        """The stream's raw info: ``config`` and ``state``."""
        nc = await self._nc()
        await self.settled()
        return await self._api(nc, f"STREAM.INFO.{self.stream}")

    async def status(self) -> BucketStatus:
        """The bucket's figures; counting live objects reads every object's metadata."""
        info = await self.stream_info()
        objects = 0
        async for _ in self.objects():
            objects += 1
        return BucketStatus.from_stream_info(self.name, info, objects)

    async def destroy(self) -> None:
        """Delete the bucket and every object in it, for good."""
        nc = await self._connect()
        await self.settled()
        await self._api(nc, f"STREAM.DELETE.{self.stream}")
        self._config = None

    # -- objects -----------------------------------------------------------------

    async def _get_message(self, nc: Client, request: Mapping[str, Any]) -> dict[str, Any] | None:
        """One stored message (from the stream leader, so never stale), or None when there is none."""
        try:
            response = await self._api(nc, f"STREAM.MSG.GET.{self.stream}", request)
        except NatsStorageError as error:
            if getattr(error, "err_code", None) == ERR_NO_MESSAGE:
                return None
            raise
        message: dict[str, Any] = response["message"]
        message["data"] = base64.b64decode(message.get("data", ""))
        return message

    async def _direct_get(self, nc: Client, request: Mapping[str, Any]) -> dict[str, Any] | None:
        """Like ``_get_message``, but raw (no JSON, no base64) through a direct get when it can.

        A direct get may be answered by a replica that has not caught up yet, so
        "not found" there is asked again of the stream leader, unless there are no replicas.
        """
        try:
            reply = await nc.request(
                f"{API}DIRECT.GET.{self.stream}", json.dumps(request).encode(), timeout=self.timeout
            )
        except nats.errors.NoRespondersError:  # allow_direct is off on this stream
            return await self._get_message(nc, request)
        except nats.errors.Error as error:
            raise self._unavailable("no answer to a direct get", error) from None
        headers = reply.headers or {}
        if headers.get(STATUS_HEADER) == NOT_FOUND and not self.replicated:
            return None
        if STATUS_HEADER in headers or SEQUENCE_HEADER not in headers:
            return await self._get_message(nc, request)
        return {"data": reply.data, "seq": int(headers[SEQUENCE_HEADER]), "time": headers.get(TIME_HEADER, "")}

    async def latest(self, name: str) -> ObjectInfo | None:
        """The name's latest metadata whatever its state (deleted, expired), or None."""
        nc = await self._nc()
        subject = META_SUBJECT.format(bucket=self.name, key=encode_key(name))
        # A replicated bucket's replicas may lag behind a write just acknowledged: ask the leader.
        get = self._get_message if self.replicated else self._direct_get
        message = await get(nc, {"last_by_subj": subject})
        if message is None:
            return None
        return ObjectInfo.from_message(message["data"], seq=message["seq"], time=parse_time(message["time"]))

    async def info(self, name: str) -> ObjectInfo | None:
        """The object's metadata, or None when it is missing, deleted or expired."""
        info = await self.latest(name)
        return info if info is not None and self.live(info) else None

    def live(self, info: ObjectInfo) -> bool:
        """Neither deleted nor past the bucket's TTL (which the server may not have acted on yet)."""
        max_age = (self._config or {}).get("max_age", 0)
        expires = info.mtime + timedelta(microseconds=max_age / 1000)
        return not info.deleted and (not max_age or expires > datetime.now(UTC))

    async def _metadata_messages(self) -> AsyncIterator[Msg]:
        """Every name's latest metadata message, in stream order."""
        nc = await self._nc()
        config = {"deliver_policy": "last_per_subject", "filter_subject": ALL_META.format(bucket=self.name)}
        async with _Pull(self, nc, config, exact=False, window=LISTING_WINDOW) as pull:
            while (msg := await pull.next()) is not None:
                yield msg

    async def objects(self, *, deleted: bool = False) -> AsyncIterator[ObjectInfo]:
        """Every object's latest metadata, in stream order."""
        async for msg in self._metadata_messages():
            info = ObjectInfo.from_delivery(msg)
            if self.live(info) or (deleted and info.deleted):
                yield info

    async def names(self) -> AsyncGenerator[str, None]:
        """Every live object's name: ``objects()`` without building what a listing does not need."""
        if (self._config or {}).get("max_age"):  # expiry needs each message's time
            async for info in self.objects():
                yield info.name
            return
        async for msg in self._metadata_messages():
            try:
                raw = json.loads(msg.data)
                if not raw.get("deleted"):
                    yield raw["name"]
            except (ValueError, KeyError, TypeError, AttributeError):
                raise CorruptObject(f"unreadable object metadata on {msg.subject}") from None

    async def upload(self, *, caller_hashes: bool = False, name: str = "") -> Upload:
        """Start writing a new object's chunks; give it a name with ``Upload.commit``.

        ``caller_hashes``: the writer feeds every byte to ``Upload.hash`` itself, in
        its own thread, so hashing runs beside the NATS loop instead of on it.
        """
        nc = await self._nc()
        if (self._config or {}).get("max_bytes", -1) > 0:
            await self.settled()  # else the replaced versions' chunks still count against the limit
        return Upload(self, nc, caller_hashes=caller_hashes, name=name)

    async def download(self, info: ObjectInfo) -> Download:
        return Download(self, await self._nc(), info)

    async def download_from(self, info: ObjectInfo, offset: int) -> tuple[Download, int]:
        """A download from the chunk that holds byte ``offset``, and where that chunk starts.

        Chunks of one writer are usually even (all but the last ``max_chunk_size``,
        which the last chunk's length proves) and side by side in the stream: then
        chunk k is at a known sequence, and a consumer started there that sees
        exactly the chunks after k proves it, whatever else the stream holds.
        Otherwise a headers-only consumer maps every chunk's sequence and size.
        """
        nc = await self._nc()
        if offset <= 0 or info.chunks <= 1 or offset >= info.size:
            return Download(self, nc, info), 0
        subject = CHUNK_SUBJECT.format(bucket=self.name, nuid=info.nuid)
        window = self.window_for(info.chunk_size or DEFAULT_CHUNK_SIZE)
        size = info.chunk_size
        if size and info.chunks == -(-info.size // size):
            last = await self._direct_get(nc, {"last_by_subj": subject})
            if last is not None and len(last["data"]) == info.size - (info.chunks - 1) * size:
                chunk = offset // size
                config = {
                    "deliver_policy": "by_start_sequence",
                    "opt_start_seq": last["seq"] - (info.chunks - 1) + chunk,
                    "filter_subject": subject,
                }
                pull = _Pull(self, nc, config, exact=True, window=window)
                await pull.start()
                if pull.pending == info.chunks - chunk:
                    return Download(self, nc, info, first_chunk=chunk, first_byte=chunk * size, pull=pull), chunk * size
                await pull.close()
        start = 0
        config = {"deliver_policy": "all", "filter_subject": subject, "headers_only": True}
        async with _Pull(self, nc, config, exact=True, window=LISTING_WINDOW) as chunks:
            for chunk in range(min(chunks.pending, info.chunks)):
                msg = await chunks.next()
                assert msg is not None  # an exact pull raises rather than end early
                length = int((msg.headers or {}).get(MESSAGE_SIZE_HEADER, 0))
                if start + length > offset:
                    config = {
                        "deliver_policy": "by_start_sequence",
                        "opt_start_seq": msg.metadata.sequence.stream,
                        "filter_subject": subject,
                    }
                    pull = _Pull(self, nc, config, exact=True, window=window)
                    await pull.start()
                    return Download(self, nc, info, first_chunk=chunk, first_byte=start, pull=pull), start
                start += length
        return Download(self, nc, info), 0  # chunks missing: reading through reports it

    async def update_meta(
        self, name: str, *, description: str | None = None, headers: Mapping[str, list[str]] | None = None
    ) -> ObjectInfo | None:
        """Replace an object's description and/or headers without touching its data."""
        nc = await self._nc()
        while True:
            info = await self.info(name)
            if info is None:
                return None
            raw = dict(info.raw)
            if description is not None:
                raw["description"] = description
            if headers is not None:
                raw["headers"] = {key: list(values) for key, values in headers.items()}
            raw["mtime"] = format_time(datetime.now(UTC))
            try:
                await self._put_meta(nc, name, raw, expected_seq=info.seq)
            except ObjectChanged:
                continue
            return await self.info(name)

    async def delete(self, name: str) -> bool:
        """Mark the object deleted and purge its chunks; False when it was not there."""
        nc = await self._nc()
        while True:
            info = await self.info(name)
            if info is None:
                return False
            raw = {key: value for key, value in info.raw.items() if key != "digest"}
            raw.update(deleted=True, size=0, chunks=0, mtime=format_time(datetime.now(UTC)))
            try:
                await self._put_meta(nc, name, raw, expected_seq=info.seq)
            except ObjectChanged:
                continue
            await self._purge(nc, CHUNK_SUBJECT.format(bucket=self.name, nuid=info.nuid))
            return True

    async def _put_meta(self, nc: Client, name: str, raw: Mapping[str, Any], *, expected_seq: int) -> int:
        subject = META_SUBJECT.format(bucket=self.name, key=encode_key(name))
        headers = {ROLLUP_HEADER: ROLLUP_SUBJECT, EXPECTED_SUBJECT_SEQ_HEADER: str(expected_seq)}
        return await self._publish(nc, subject, json.dumps(raw).encode(), headers, name)

    def watch(self, *, history: bool = False, start_seq: int | None = None) -> Watch:
        """Changes to the bucket's objects as they happen; see ``Watch``."""
        return Watch(self, history=history, start_seq=start_seq)

    # -- garbage: chunks without metadata --------------------------------------------

    async def orphans(self, *, min_age: timedelta) -> list[OrphanChunks]:
        """Chunk subjects no live object points to, whose newest chunk is at least ``min_age`` old.

        Left by writers killed (or cut off from the server) between their first
        chunk and their metadata, and by deletions and replacements whose purge
        failed. Chunk subjects are listed before the metadata is read, so an
        object committed meanwhile is seen as live; ``min_age`` spares uploads
        still in progress, whose newest chunk is always recent.
        """
        nc = await self._nc()
        await self.settled()
        counts: dict[str, int] = {}
        request = {"subjects_filter": ALL_CHUNKS.format(bucket=self.name)}
        while True:  # the server pages the subjects of a large stream
            info = await self._api(nc, f"STREAM.INFO.{self.stream}", {**request, "offset": len(counts)})
            page = info["state"].get("subjects") or {}
            counts.update(page)
            if not page or len(counts) >= info.get("total", 0):
                break
        live = {info.nuid async for info in self.objects()}
        prefix = CHUNK_SUBJECT.format(bucket=self.name, nuid="")
        now = datetime.now(UTC)
        found = []
        for subject, chunks in sorted(counts.items()):
            nuid = subject.removeprefix(prefix)
            if nuid in live:
                continue
            last = await self._direct_get(nc, {"last_by_subj": subject})
            if last is None:  # purged meanwhile
                continue
            newest = parse_time(last["time"])
            if now - newest < min_age:
                continue
            size = len(last["data"])
            if chunks > 1:
                first = await self._get_message(nc, {"seq": 0, "next_by_subj": subject})
                size += (chunks - 1) * len(first["data"]) if first is not None else 0
            found.append(OrphanChunks(subject=subject, nuid=nuid, chunks=chunks, bytes=size, newest=newest))
        return found

    async def purge_orphans(self, orphans: list[OrphanChunks]) -> int:
        """Purge what ``orphans`` found; the number of chunk messages removed."""
        nc = await self._nc()
        purged = 0
        for orphan in orphans:
            response = await self._api(nc, f"STREAM.PURGE.{self.stream}", {"filter": orphan.subject})
            purged += int(response.get("purged", 0))
        return purged


class Upload:
    """An object being written: chunks first, metadata last, so readers never see half of it."""

    def __init__(self, bucket: Bucket, nc: Client, *, caller_hashes: bool = False, name: str = "") -> None:
        self.bucket = bucket
        self.nc = nc
        self.caller_hashes = caller_hashes
        self.chunk_size = min(bucket.chunk_size, nc.max_payload)  # a server may allow less than asked
        self.window = bucket.window_for(self.chunk_size)
        self.nuid = _nuid.next().decode()
        self.subject = CHUNK_SUBJECT.format(bucket=bucket.name, nuid=self.nuid)
        self.size = 0
        self.chunks = 0
        self._sha256 = hashlib.sha256()
        self._buffer = bytearray()
        self._acks: deque[asyncio.Future[Msg]] = deque()
        self._waiting: dict[str, asyncio.Future[Msg]] = {}
        self._inbox = nc.new_inbox()
        self._sub: Any = None
        self._writing = asyncio.Lock()  # FIFO, so queued writes keep their order
        self._name = repr(name) if name else "a new object"  # for messages; commit gives the final name
        self._meta_sent = False  # metadata published without a known outcome: abort() keeps the chunks

    async def write(self, data: bytes) -> None:
        """Add data; full chunks are published with at most ``window`` awaiting acknowledgement.

        Writes may be started before the last one finished: they run in order.
        """
        async with self._writing:
            await self._write(data)

    async def _write(self, data: bytes) -> None:
        size = self.chunk_size
        view = memoryview(data)
        if self._buffer:
            taken = size - len(self._buffer)
            self._buffer += view[:taken]
            view = view[taken:]
            if len(self._buffer) < size:
                return
            await self._publish(bytes(self._buffer))
            self._buffer.clear()
        while len(view) >= size:
            await self._publish(view[:size])
            view = view[size:]
        self._buffer += view

    async def _publish(self, chunk: bytes | memoryview) -> None:
        if self._sub is None:
            # nats-py's publish_async never settles a future whose acknowledgement
            # is an error (a full or sealed bucket), so acknowledgements come here.
            self._sub = await self.nc.subscribe(f"{self._inbox}.*", cb=self._on_ack)
        if not self.caller_hashes:
            self._sha256.update(chunk)
        self.size += len(chunk)
        self.chunks += 1
        if len(self._acks) >= self.window:
            await self._settle(self._acks.popleft())
        ack: asyncio.Future[Msg] = asyncio.get_running_loop().create_future()
        self._waiting[str(self.chunks)] = ack
        self._acks.append(ack)
        try:
            await self.nc.publish(self.subject, chunk, reply=f"{self._inbox}.{self.chunks}")  # type: ignore[arg-type]
        except nats.errors.Error as error:
            raise self.bucket._unavailable(f"could not send {self._name}", error) from None

    def hash(self, data: bytes) -> None:
        """Add ``data`` to the digest (``caller_hashes`` uploads): every byte written, in order, once."""
        self._sha256.update(data)

    async def _on_ack(self, msg: Msg) -> None:
        ack = self._waiting.pop(msg.subject.rpartition(".")[2], None)
        if ack is not None and not ack.done():
            ack.set_result(msg)

    async def _settle(self, ack: asyncio.Future[Msg]) -> None:
        try:
            msg = await asyncio.wait_for(ack, self.bucket.timeout)
        except TimeoutError:
            raise self.bucket._unavailable(f"no acknowledgement for a chunk of {self._name}", TimeoutError()) from None
        if msg.headers and msg.headers.get(STATUS_HEADER) == NO_RESPONDERS:
            self.bucket._config = None
            raise BucketNotFound(f"bucket {self.bucket.name!r} does not exist on the NATS server")
        reply = json.loads(msg.data)
        if "error" in reply:
            raise self.bucket._refused(reply["error"], self._name.strip("'"))

    async def _close(self) -> None:
        if self._sub is not None:
            sub, self._sub = self._sub, None
            await sub.unsubscribe()

    async def commit(
        self,
        name: str,
        *,
        previous: ObjectInfo | None,
        description: str = "",
        headers: Mapping[str, list[str]] | None = None,
    ) -> ObjectInfo:
        """Publish the metadata under ``name``, only if its latest metadata is still ``previous``.

        Raises ``ObjectChanged`` when another writer got there first; the
        chunks stay, so the caller may retry under the same or another name.
        After a replacement the old object's chunks are purged in the background.
        """
        self._name = repr(name)
        if self._buffer:
            await self._publish(bytes(self._buffer))
            self._buffer.clear()
        while self._acks:
            await self._settle(self._acks.popleft())
        raw: dict[str, Any] = {
            "name": name,
            "description": description,
            "headers": {key: list(values) for key, values in (headers or {}).items()},
            "options": {"max_chunk_size": self.chunk_size},
            "bucket": self.bucket.name,
            "nuid": self.nuid,
            "size": self.size,
            "mtime": format_time(datetime.now(UTC)),
            "chunks": self.chunks,
            "digest": encode_digest(self._sha256.digest()),
        }
        for key in ("description", "headers"):
            if not raw[key]:
                del raw[key]
        # From here the metadata may land whatever happens to this call (a stream leader that dies may
        # have passed it on, a cancelled wait may have sent it): abort() must keep the chunks.
        self._meta_sent = True
        try:
            seq = await self.bucket._put_meta(self.nc, name, raw, expected_seq=previous.seq if previous else 0)
        except NatsUnavailable:
            raise
        except NatsStorageError:  # the server refused it (changed, full, sealed): it did not land
            self._meta_sent = False
            raise
        await self._close()
        if previous is not None and not previous.deleted and previous.nuid != self.nuid:
            old = CHUNK_SUBJECT.format(bucket=self.bucket.name, nuid=previous.nuid)
            self.bucket._purge_soon(self.nc, old, f"the replaced version of {self._name}")
        # By this client's clock; reading the metadata back gives the server's.
        return ObjectInfo.from_raw(raw, seq=seq, time=datetime.now(UTC))

    async def abort(self) -> None:
        """Remove the chunks published so far, once those in flight have landed or failed.

        Never raises: it runs while another error is on its way to the caller.
        What it cannot remove (the server is gone) ``natsos_gc`` collects later.
        """
        acks, self._acks = list(self._acks), deque()
        if acks:
            await asyncio.wait(acks, timeout=self.bucket.timeout)
        await self._close()
        if not self.chunks:
            return
        if self._meta_sent:
            logger.warning("kept the chunks at %s: their metadata may yet land (else natsos_gc)", self.subject)
            return
        await self.bucket._purge_or_warn(self.nc, self.subject, f"an aborted upload of {self._name}")


class Download:
    """An object's data, chunk by chunk, checked against its size, chunk count and digest."""

    def __init__(
        self,
        bucket: Bucket,
        nc: Client,
        info: ObjectInfo,
        *,
        first_chunk: int = 0,
        first_byte: int = 0,
        pull: _Pull | None = None,
    ) -> None:
        self.bucket = bucket
        self.nc = nc
        self.info = info
        self.first_chunk = first_chunk
        self.chunks = first_chunk
        self.received = first_byte
        self._partial = first_chunk > 0  # a read that skipped chunks cannot check the digest
        self._sha256 = hashlib.sha256()
        self._pull = pull  # started at first_chunk; None: made at the first read

    async def read_many(self, limit: int) -> list[bytes]:
        """The next chunk and any others already here, up to ``limit`` chunks: one hop for many."""
        chunks = [await self.read()]
        while chunks[-1] and len(chunks) < limit and self._pull is not None and self._pull.ready():
            chunks.append(await self.read())
        return chunks

    async def read(self) -> bytes:
        """The next chunk's bytes, or ``b""`` at the end."""
        if self.chunks >= self.info.chunks:
            return b""
        if self.info.chunks == 1:
            return await self._check(await self._only_chunk())
        if self._pull is None:
            subject = CHUNK_SUBJECT.format(bucket=self.bucket.name, nuid=self.info.nuid)
            config: dict[str, Any] = {"deliver_policy": "all", "filter_subject": subject}
            window = self.bucket.window_for(self.info.chunk_size or DEFAULT_CHUNK_SIZE)
            expected = self.info.chunks - self.chunks
            # A replica that is still catching up (a node just back) may host the consumer
            # and see fewer chunks for a moment; on one server, missing chunks are missing.
            deadline = time.monotonic() + (self.bucket.timeout if self.bucket.replicated else 0)
            while True:
                self._pull = _Pull(self.bucket, self.nc, config, exact=True, window=window)
                await self._pull.start()
                if self._pull.pending >= expected:
                    break
                found = self._pull.pending
                await self.close()
                if time.monotonic() >= deadline:
                    raise self._corrupt(f"{found} of the {expected} chunks to read are on the server")
                await asyncio.sleep(REPLICA_RETRY_WAIT)
        msg = await self._pull.next()
        assert msg is not None  # an exact pull raises rather than end early
        return await self._check(msg.data)

    async def _only_chunk(self) -> bytes:
        """A one-chunk object in one request, without a consumer."""
        subject = CHUNK_SUBJECT.format(bucket=self.bucket.name, nuid=self.info.nuid)
        message = await self.bucket._direct_get(self.nc, {"seq": 0, "next_by_subj": subject})
        if message is None:
            raise self._corrupt("0 of the 1 chunks to read are on the server")
        data: bytes = message["data"]
        return data

    async def _check(self, data: bytes) -> bytes:
        """Count and hash one chunk; at the last one, compare size and digest."""
        self.chunks += 1
        self.received += len(data)
        if not self._partial:
            self._sha256.update(data)
        if self.chunks == self.info.chunks:
            await self.close()
            if self.received != self.info.size:
                raise self._corrupt(f"read {self.received} bytes, expected {self.info.size}")
            if not self._partial and self._sha256.digest() != self.info.sha256:
                raise self._corrupt("its SHA-256 digest does not match the data")
        return data

    def _corrupt(self, why: str) -> CorruptObject:
        return CorruptObject(f"{self.info.name!r} in bucket {self.bucket.name!r} is corrupt: {why}")

    async def close(self) -> None:
        if self._pull is not None:
            pull, self._pull = self._pull, None
            await pull.close()


def ephemeral_consumer(config: Mapping[str, Any]) -> dict[str, Any]:
    """``config`` for a reader's own consumer: no acks, in memory, gone when left idle."""
    return {
        **config,
        "ack_policy": "none",
        "mem_storage": True,
        "num_replicas": 1,
        "inactive_threshold": int(CONSUMER_INACTIVE_THRESHOLD.total_seconds() * NANOSECONDS),
    }


class _Pull:
    """An ephemeral pull consumer read with explicit flow: at most ``window`` messages in flight.

    ``exact``: exactly the messages pending at creation must arrive (an
    object's chunks), and fewer is an error. Otherwise (listing metadata while
    others write) it reads at most those, ending early when the consumer has
    nothing more to deliver.
    """

    def __init__(self, bucket: Bucket, nc: Client, config: Mapping[str, Any], *, exact: bool, window: int) -> None:
        self.bucket = bucket
        self.nc = nc
        self.config = ephemeral_consumer(config)
        self.exact = exact
        self.window = window
        self._limit = min(window, SLOW_START) if exact else window
        self.pending = 0  # messages the consumer had to deliver when created
        self._queue: asyncio.Queue[Msg] = asyncio.Queue()
        self._requested = 0
        self._received = 0
        self._done = False
        self._inbox = ""
        self._consumer = ""
        self._sub: Any = None
        self._retry_until = 0.0  # set by the first 503

    async def __aenter__(self) -> _Pull:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def start(self) -> None:
        self._inbox = self.nc.new_inbox()
        self._sub = await self.nc.subscribe(self._inbox, cb=self._queue.put)
        try:
            created = await self.bucket._api(
                self.nc,
                f"CONSUMER.CREATE.{self.bucket.stream}",
                {"stream_name": self.bucket.stream, "config": self.config},
            )
        except BaseException:
            await self.close()
            raise
        self._consumer = created["name"]
        self.pending = int(created["num_pending"])
        self._done = self.pending == 0
        await self._ask()

    async def _ask(self) -> None:
        """Keep up to ``window`` messages requested, topping up once half have arrived.

        Chunk reads start with a few chunks and double up to the window: a read
        of a few bytes after a seek fetches about one chunk, not a window's worth.
        """
        in_flight = self._requested - self._received
        wanted = min(self._limit - in_flight, self.pending - self._requested)
        if self._done or wanted <= 0 or in_flight > self._limit // 2:
            return
        self._requested += wanted
        self._limit = min(self.window, 2 * self._limit)
        body: dict[str, Any] = {"batch": wanted, "expires": int(self.bucket.timeout * NANOSECONDS)}
        if not self.exact:
            body["no_wait"] = True  # end the request when nothing more is there
        subject = f"{API}CONSUMER.MSG.NEXT.{self.bucket.stream}.{self._consumer}"
        await self.nc.publish(subject, json.dumps(body).encode(), reply=self._inbox)

    def ready(self) -> bool:
        """Whether ``next`` can answer without waiting on the network."""
        return not self._queue.empty()

    async def next(self) -> Msg | None:
        """The next message; None once a non-exact read has nothing more to deliver."""
        while not self._done:
            try:
                msg = self._queue.get_nowait()
            except asyncio.QueueEmpty:
                try:
                    msg = await asyncio.wait_for(self._queue.get(), self.bucket.timeout)
                except TimeoutError:
                    raise self.bucket._unavailable("no data from the server", TimeoutError()) from None
            status = msg.headers.get(STATUS_HEADER) if msg.headers else None
            if status is None:
                self._received += 1
                # Past what was pending at creation, a listing is a snapshot; fewer (a name
                # rolled up meanwhile) end with the no-wait request's 404/408 below.
                self._done = self._received >= self.pending
                await self._ask()
                return msg
            if status == "100":  # a heartbeat
                continue
            if status == NO_RESPONDERS:
                await self._ask_again()
                continue
            if not self.exact:  # 404/408: the consumer has nothing more
                self._done = True
                break
            description = msg.headers.get("Description", "") if msg.headers else ""
            raise CorruptObject(
                f"bucket {self.bucket.name!r}: the server ended the read early: {status} {description}".strip()
            )
        return None

    async def _ask_again(self) -> None:
        """After a 503 nothing asked for is coming (only a first request, before any message, meets one)."""
        now = asyncio.get_running_loop().time()
        self._retry_until = self._retry_until or now + self.bucket.timeout
        if now > self._retry_until:
            raise self.bucket._unavailable("no server answered for the read's consumer", TimeoutError())
        await asyncio.sleep(PULL_RETRY_WAIT)
        self._requested = self._received
        await self._ask()

    async def close(self) -> None:
        if self._sub is not None:
            sub, self._sub = self._sub, None
            await sub.unsubscribe()
        if self._consumer and not self.nc.is_closed:
            # No need to wait for the answer: the inactive threshold is the safety net.
            subject = f"{API}CONSUMER.DELETE.{self.bucket.stream}.{self._consumer}"
            self._consumer = ""
            await self.nc.publish(subject, b"", reply=self.nc.new_inbox())


class Watch:
    """Every metadata change in a bucket, in stream order, through an ephemeral pull consumer.

    ``start`` creates the consumer: with ``history`` it first replays each
    object's latest metadata (deleted ones included), else only new changes
    come. ``next`` returns one change (an ``ObjectInfo``, ``deleted`` telling
    a deletion from an update) and raises ``NatsUnavailable`` when the
    server has gone quiet for longer than the bucket's timeout; calling
    ``start`` again then resumes right after the last change returned, so
    nothing is lost or repeated across a server restart. At most ``window``
    changes are ever in flight.
    """

    def __init__(self, bucket: Bucket, *, history: bool = False, start_seq: int | None = None) -> None:
        self.bucket = bucket
        self.history = history
        self.next_seq = start_seq  # the first stream sequence wanted; known once started
        self._nc: Client | None = None
        self._queue: asyncio.Queue[Msg] = asyncio.Queue()
        self._sub: Any = None
        self._consumer = ""
        self._left = 0  # messages the current pull request may still deliver

    async def start(self) -> None:
        await self.close()
        nc = self._nc = await self.bucket._nc()
        self._queue = asyncio.Queue()
        inbox = nc.new_inbox()
        self._sub = await nc.subscribe(inbox, cb=self._queue.put)
        config = ephemeral_consumer({"filter_subject": ALL_META.format(bucket=self.bucket.name)})
        if self.next_seq is not None:
            # Metadata subjects keep one message each (rollup), so this is also a replay of the latest.
            config.update(deliver_policy="by_start_sequence", opt_start_seq=max(self.next_seq, 1))
        else:
            config["deliver_policy"] = "last_per_subject" if self.history else "new"
        try:
            created = await self.bucket._api(
                nc, f"CONSUMER.CREATE.{self.bucket.stream}", {"stream_name": self.bucket.stream, "config": config}
            )
        except BaseException:
            await self.close()
            raise
        self._consumer = created["name"]
        if self.next_seq is None:
            self.next_seq = int((created.get("delivered") or {}).get("stream_seq", 0)) + 1
        await self._request(inbox)

    async def _request(self, inbox: str | None = None) -> None:
        assert self._nc is not None and self._sub is not None
        self._left = LISTING_WINDOW
        body = {
            "batch": self._left,
            "expires": int(WATCH_EXPIRES.total_seconds() * NANOSECONDS),
            "idle_heartbeat": int(WATCH_HEARTBEAT.total_seconds() * NANOSECONDS),
        }
        subject = f"{API}CONSUMER.MSG.NEXT.{self.bucket.stream}.{self._consumer}"
        await self._nc.publish(subject, json.dumps(body).encode(), reply=inbox or self._sub.subject)

    async def next(self) -> ObjectInfo:
        if self._sub is None:
            raise RuntimeError("Watch.next() before Watch.start()")
        while True:
            try:
                msg = await asyncio.wait_for(self._queue.get(), self.bucket.timeout)
            except TimeoutError:
                raise self.bucket._unavailable("no heartbeat while watching", TimeoutError()) from None
            status = msg.headers.get(STATUS_HEADER) if msg.headers else None
            if status is None:
                meta = msg.metadata
                self.next_seq = meta.sequence.stream + 1
                self._left -= 1
                if self._left <= 0:
                    await self._request()
                return ObjectInfo.from_delivery(msg)
            if status == "408":  # the pull request expired: ask again
                await self._request()
            elif status != "100":  # 100 is a heartbeat; anything else ends this consumer
                description = msg.headers.get("Description", "") if msg.headers else ""
                raise NatsUnavailable(f"NATS bucket {self.bucket.name!r}: the watch ended: {status} {description}")

    async def close(self) -> None:
        if self._sub is not None:
            sub, self._sub = self._sub, None
            await sub.unsubscribe()
        if self._consumer and self._nc is not None and not self._nc.is_closed:
            # No need to wait for the answer: the inactive threshold is the safety net.
            subject = f"{API}CONSUMER.DELETE.{self.bucket.stream}.{self._consumer}"
            self._consumer = ""
            await self._nc.publish(subject, b"", reply=self._nc.new_inbox())
