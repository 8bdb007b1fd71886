"""The NATS Object Store protocol, asyncio and Django-free.

The wire layout is the one every NATS client shares (ADR-20): a stream
``OBJ_<bucket>``, an object's data as chunk messages on
``$O.<bucket>.C.<nuid>`` and its metadata as one JSON message on
``$O.<bucket>.M.<base64url(name)>``, kept alone by the rollup header.

This module holds the subjects, the metadata and a ``Bucket``'s operations
on names; ``natsstorage.transfer`` moves the data, and
``natsstorage.jetstream`` does the talking to the server.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import re
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any, TypeVar

from nats.aio.client import Client
from nats.aio.msg import Msg

from natsstorage.delivery import Behind, Consumer, Pull, answers_batches, last_of_literals
from natsstorage.exceptions import BucketNotFound, CorruptObject, NatsUnavailable, ObjectChanged
from natsstorage.jetstream import (
    EXPECTED_LAST_MSG_ID_HEADER,
    EXPECTED_SUBJECT_SEQ_HEADER,
    HEARTBEAT,
    MAX_CONTROL_LINE,
    NANOSECONDS,
    REQUEST_EXPIRED,
    ROLLUP_HEADER,
    ROLLUP_SUBJECT,
    Stream,
    stream_names,
)

STREAM = "OBJ_{bucket}"
ALL_CHUNKS = "$O.{bucket}.C.>"
ALL_META = "$O.{bucket}.M.>"
CHUNK_SUBJECT = "$O.{bucket}.C.{nuid}"
META_SUBJECT = "$O.{bucket}.M.{key}"
DIGEST_PREFIX = "SHA-256="
DEFAULT_CHUNK_SIZE = 128 * 1024  # what the NATS clients write by default
# What this package writes by default: every client reads any chunk size up to the
# server's max_payload, and at 128 KiB per-message costs (client and server) halve
# the throughput on a 2-core machine (see bench/run.py).
CHUNK_SIZE = 512 * 1024
LISTING_IDLE = 600.0  # seconds a process keeps a listing index nobody looks at
WINDOW_BYTES = 8 * 1024 * 1024  # in flight per transfer: keeps a link busy, bounds memory
BUCKET_NAME = re.compile(r"^[a-zA-Z0-9_-]+$")
# nats-server names a stream in at most 255 characters (JSMaxNameLen): "OBJ_" and 251. In the longest subject
# built from it, an object's metadata subject, it leaves room for the longest key (names.MAX_NAME_BYTES).
MAX_BUCKET_NAME = 251
BUCKET_NAME_RULE = f"at most {MAX_BUCKET_NAME} letters, digits, '-' and '_'"

# A watch's pull requests last this long, with an idle heartbeat every
# WATCH_HEARTBEAT; hearing nothing for the bucket's timeout means the consumer
# or the server is gone (a restart), and the watch must be started again.
WATCH_EXPIRES = timedelta(seconds=30)
WATCH_HEARTBEAT = timedelta(seconds=1)
ACK_V1_TOKENS = 9  # $JS.ACK.<stream>.<consumer>.<delivered>.<stream seq>.<consumer seq>.<time>.<pending>
LISTING_WINDOW = 1024  # metadata messages in flight when listing (a few hundred bytes each)
# Names whose latest metadata a bucket remembers from this process's own reads, writes and deletes (about a
# kilobyte each): a read asks for a one-chunk object's chunk beside its metadata, a delete or a save over a
# deletion marker expects that version in its compare-and-set, without asking first.
KNOWN_NAMES = 1024
# Told (bucket, name), on the loop, once this process has changed an object's metadata (saved, deleted or updated
# it), whichever handle of the bucket wrote: the view's copies (``servecache``) go at once.
WRITTEN: list[Callable[[str, str], None]] = []

logger = logging.getLogger("natsstorage")
T = TypeVar("T")


def valid_bucket_name(name: Any) -> bool:
    """Whether ``name`` may name a bucket: what every NATS client accepts."""
    return isinstance(name, str) and len(name) <= MAX_BUCKET_NAME and bool(BUCKET_NAME.match(name))


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
    """An RFC 3339 time as Go writes it (nanoseconds, ``Z``), as an aware datetime (to the microsecond)."""
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return datetime.fromtimestamp(0, UTC)


def format_time(value: datetime) -> str:
    """As Go writes it, to the microsecond (isoformat: a sixth of strftime's time)."""
    return value.astimezone(UTC).isoformat(timespec="microseconds").removesuffix("+00:00") + "Z"


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

    @property
    def link(self) -> tuple[str, str] | None:
        """The (bucket, name) a link names; name ``""`` for a link to a whole bucket. None: not a link."""
        link = (self.raw.get("options") or {}).get("link")
        if not isinstance(link, Mapping):
            return None
        return str(link.get("bucket") or ""), str(link.get("name") or "")

    @property
    def metadata(self) -> Mapping[str, str]:
        """The free-form ``metadata`` map other clients (nats.go, the NATS CLI) write."""
        found = self.raw.get("metadata")
        return {str(key): str(value) for key, value in found.items()} if isinstance(found, Mapping) else {}


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


async def bucket_names(nc: Client, *, timeout: float) -> list[str]:
    """The names of every Object Store bucket on the server, sorted."""
    prefix = STREAM.format(bucket="")
    return sorted(name[len(prefix) :] for name in await stream_names(nc, timeout=timeout) if name.startswith(prefix))


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
        listing_idle: float | None = LISTING_IDLE,
        listing: str = "auto",
    ) -> None:
        if not valid_bucket_name(name):
            raise ValueError(f"invalid bucket name {name!r}: use {BUCKET_NAME_RULE}")
        self.name = name
        self.chunk_size = chunk_size
        self.window = window  # None: as many chunks as fit in WINDOW_BYTES
        self.listing_idle = listing_idle  # seconds unused before this process drops its listing index; None: never
        self.listing = listing  # where listings come from: "auto", "server" or "process" (conf.Config.listing)
        self.known: OrderedDict[str, ObjectInfo] = OrderedDict()  # name -> its latest metadata, as seen lately
        self.creates = create is not None  # a missing bucket is created on first use, and again if destroyed
        self.stream = Stream(
            STREAM.format(bucket=name),
            connect,
            timeout=timeout,
            label=f"bucket {name!r}",
            create=create.stream_config(name) if create else None,
        )

    def remember(self, name: str, info: ObjectInfo | None) -> None:
        """Note ``name``'s latest metadata (None: it has none), as this process just wrote, read or deleted it.

        Only ever a guess: what is done with it is checked by the server (the metadata a read gets back,
        the compare-and-set of a write), so a name another process changed meanwhile costs a round trip more.
        """
        if info is None:
            self.known.pop(name, None)
            return
        self.known[name] = info
        self.known.move_to_end(name)
        if len(self.known) > KNOWN_NAMES:
            self.known.popitem(last=False)

    def written(self, name: str, info: ObjectInfo) -> None:
        """Note ``name``'s metadata as this process just wrote it, and tell ``WRITTEN``."""
        self.remember(name, info)
        for told in WRITTEN:
            told(self.name, name)

    def known_chunk(self, name: str) -> str | None:
        """The chunk id of the one-chunk object ``name`` was lately."""
        info = self.known.get(name)
        if info is None or info.chunks != 1 or info.link is not None or info.deleted:
            return None
        return info.nuid

    def known_deleted(self, name: str) -> ObjectInfo | None:
        """The deletion marker ``name`` had lately, which a write of a new object there replaces."""
        info = self.known.get(name)
        return info if info is not None and info.deleted else None

    def window_for(self, chunk_size: int) -> int:
        """How many chunks of ``chunk_size`` a transfer keeps in flight."""
        return self.window or max(2, WINDOW_BYTES // chunk_size)

    async def connection(self) -> Client:
        """The shared connection, with the bucket made sure of (or created) once per process."""
        return await self.stream.connection()

    async def again_if_gone(self, work: Callable[[], Awaitable[T]]) -> T:
        """``work()``, and once more if the bucket proved gone and missing buckets are created here.

        This process knows a bucket exists from its first use on: one that another process destroyed since
        is found gone by the next request to it, which forgets it; the second try creates it, as a first use does.
        """
        try:
            return await work()
        except BucketNotFound:
            if not self.creates:
                raise
        return await work()

    @property
    def max_bytes(self) -> int:
        """The bucket's size limit (-1: none), once the bucket has been used."""
        return int((self.stream.config or {}).get("max_bytes", -1))

    # -- bucket ------------------------------------------------------------------

    async def stream_info(self) -> dict[str, Any]:
        """The stream's raw info: ``config`` and ``state``."""
        return await self.stream.info(await self.connection())

    async def exists(self) -> bool:
        """Whether the bucket is on the server; never creates it."""
        try:
            await self.stream.info(await self.stream.connect())
        except BucketNotFound:
            return False
        return True

    async def destroy(self) -> None:
        """Delete the bucket and every object in it, for good."""
        await self.stream.delete(await self.stream.connect())

    # -- objects -----------------------------------------------------------------

    async def latest(self, name: str) -> ObjectInfo | None:
        """The name's latest metadata whatever its state (deleted, expired), or None."""
        return await self.again_if_gone(partial(self._latest, name))

    async def _latest(self, name: str) -> ObjectInfo | None:
        nc = await self.connection()
        subject = META_SUBJECT.format(bucket=self.name, key=encode_key(name))
        if len(subject) > MAX_CONTROL_LINE:  # no client could have written it: nats-server takes no such line
            self.remember(name, None)
            return None
        # A replicated bucket's replicas may lag behind a write just acknowledged: ask the leader.
        get = self.stream.get_message if self.stream.replicated else self.stream.direct_get
        message = await get(nc, {"last_by_subj": subject})
        info = None
        if message is not None:
            seq, time = message["seq"], parse_time(message["time"])
            info = self.known.get(name)
            if info is None or (info.seq, info.mtime) != (seq, time):  # else the message known: not parsed again
                info = ObjectInfo.from_message(message["data"], seq=seq, time=time)
        self.remember(name, info)
        return info

    async def multi_last(self, names: list[str], *, as_of: int = 0) -> dict[str, ObjectInfo]:
        """The latest metadata (whatever its state) of each of ``names`` that has one, by name: one ``multi_last``
        request per 1,024 names on nats-server 2.12+ (literal filters), else one get each, all in flight.
        ``as_of``: the stream sequence the answer must include (a replicated bucket's replicas may lag)."""
        nc = await self.connection()
        subjects = {META_SUBJECT.format(bucket=self.name, key=encode_key(name)): name for name in names}
        subjects = {subject: name for subject, name in subjects.items() if len(subject) <= MAX_CONTROL_LINE}
        try:
            if not (self.stream.direct and answers_batches(nc)):
                raise Behind()
            answers = await last_of_literals(self.stream, nc, list(subjects), as_of=as_of)
        except Behind:  # (latest asks a replicated bucket's leader)
            infos = await asyncio.gather(*(self.latest(name) for name in subjects.values()))
            return {info.name: info for info in infos if info is not None}
        found = {}
        for subject, got in answers.items():
            try:
                info = ObjectInfo.from_message(got.data, seq=got.seq, time=parse_time(got.time))
            except CorruptObject:
                continue
            if info.name == subjects.get(subject):
                found[info.name] = info
        return found

    async def info(self, name: str) -> ObjectInfo | None:
        """The object's metadata, or None when it is missing, deleted or expired."""
        info = await self.latest(name)
        return info if info is not None and self.live(info) else None

    async def _assumed_current(self, name: str) -> ObjectInfo | None:
        """The live version of ``name`` this process knows, else the server's: what a compare-and-set over
        it expects first (the server refuses it when another process changed the name meanwhile)."""
        info = self.known.get(name)
        return info if info is not None and self.live(info) else await self.info(name)

    def live(self, info: ObjectInfo) -> bool:
        """Neither deleted nor past the bucket's TTL (which the server may not have acted on yet)."""
        return not info.deleted and not self.expired(info.mtime)

    @property
    def ttl(self) -> timedelta | None:
        """How long objects live (the stream's ``max_age``), once the bucket has been used; None: for ever."""
        max_age = (self.stream.config or {}).get("max_age", 0)
        return timedelta(microseconds=max_age / 1000) if max_age else None

    def expired(self, mtime: datetime) -> bool:
        """Whether an object stored at ``mtime`` is past the bucket's TTL."""
        ttl = self.ttl
        return ttl is not None and mtime + ttl <= datetime.now(UTC)

    async def _metadata_messages(self) -> AsyncIterator[Msg]:
        """Every name's latest metadata message, in stream order."""
        nc = await self.connection()
        config = {"deliver_policy": "last_per_subject", "filter_subject": ALL_META.format(bucket=self.name)}
        async with Pull(self.stream, nc, config, exact=False, window=LISTING_WINDOW) as pull:
            while (msg := await pull.next()) is not None:
                yield msg

    async def objects(self, *, deleted: bool = False) -> AsyncIterator[ObjectInfo]:
        """Every object's latest metadata, in stream order."""
        async for msg in self._metadata_messages():
            info = ObjectInfo.from_delivery(msg)
            if self.live(info) or (deleted and info.deleted):
                yield info

    async def infos(self, names: list[str]) -> list[ObjectInfo | None]:
        """``info`` of many names at once: their requests in flight together."""
        return list(await asyncio.gather(*(self.info(name) for name in names)))

    async def sorted_objects(self, prefix: str) -> list[ObjectInfo]:
        """Every live object whose name starts with ``prefix``, by name (reads every name's metadata)."""
        return sorted([info async for info in self.objects() if info.name.startswith(prefix)], key=lambda i: i.name)

    async def update_meta(
        self,
        name: str,
        *,
        description: str | None = None,
        headers: Mapping[str, list[str]] | None = None,
        metadata: Mapping[str, str] | None = None,
        expected_seq: int | None = None,
    ) -> ObjectInfo | None:
        """Replace an object's description, headers and/or metadata map without touching its data; the
        object as updated.

        ``expected_seq``: only if its metadata is still that version, else ``ObjectChanged``; without
        it, a change by another writer meanwhile is read and the update made over it.
        """
        nc = await self.connection()
        info = await self._assumed_current(name)
        if info is not None and expected_seq is not None and info.seq != expected_seq:
            info = await self.info(name)  # what this process knew may be older than what the caller saw
        while True:
            if info is None:
                return None
            if expected_seq is not None and info.seq != expected_seq:
                raise ObjectChanged(f"{name!r} in bucket {self.name!r} was changed meanwhile")
            raw = dict(info.raw)
            if description is not None:
                raw["description"] = description
            if headers is not None:
                raw["headers"] = {key: list(values) for key, values in headers.items()}
            if metadata is not None:
                raw["metadata"] = dict(metadata)
            raw["mtime"] = format_time(datetime.now(UTC))
            try:
                seq = await self.put_meta(nc, name, raw, expected_seq=info.seq)
            except ObjectChanged:
                if expected_seq is not None:
                    raise
                info = await self.info(name)
                continue
            updated = ObjectInfo.from_raw(raw, seq=seq, time=datetime.now(UTC))  # by this client's clock
            self.written(name, updated)
            return updated

    async def delete(self, name: str) -> bool:
        """Mark the object deleted and purge its chunks; False when it was not there."""
        nc = await self.connection()
        info = await self._assumed_current(name)
        while info is not None:
            raw = {key: value for key, value in info.raw.items() if key != "digest"}
            raw.update(deleted=True, size=0, chunks=0, mtime=format_time(datetime.now(UTC)))
            try:
                seq = await self.put_meta(nc, name, raw, expected_seq=info.seq)
            except ObjectChanged:
                info = await self.info(name)
                continue
            self.written(name, ObjectInfo.from_raw(raw, seq=seq, time=datetime.now(UTC)))
            await self.stream.purge(nc, CHUNK_SUBJECT.format(bucket=self.name, nuid=info.nuid))
            return True
        return False

    async def put_meta(self, nc: Client, name: str, raw: Mapping[str, Any], *, expected_seq: int) -> int:
        """Publish ``name``'s metadata if its latest is still at ``expected_seq`` (0: none); its sequence.

        Raises ``ObjectChanged`` when another writer got there first.
        """
        return await self.stream.settle(await self.start_put_meta(nc, name, raw, expected_seq=expected_seq), name)

    async def start_put_meta(
        self, nc: Client, name: str, raw: Mapping[str, Any], *, expected_seq: int, after: str | None = None
    ) -> asyncio.Future[Msg]:
        """``put_meta`` without waiting: the future of its acknowledgement, for ``stream.settle``.

        ``after``: only if the stream's last message is the one published with that ``Nats-Msg-Id``.
        """
        subject = META_SUBJECT.format(bucket=self.name, key=encode_key(name))
        headers = {ROLLUP_HEADER: ROLLUP_SUBJECT, EXPECTED_SUBJECT_SEQ_HEADER: str(expected_seq)}
        if after is not None:
            headers[EXPECTED_LAST_MSG_ID_HEADER] = after
        return await self.stream.start_publish(nc, subject, json.dumps(raw).encode(), headers, repr(name))

    def watch(self, *, history: bool = False, start_seq: int | None = None) -> Watch:
        """Changes to the bucket's objects as they happen; see ``Watch``."""
        return Watch(self, history=history, start_seq=start_seq)


class Watch(Consumer):
    """Every metadata change in a bucket, in stream order, through an ephemeral pull consumer.

    ``start`` creates the consumer: with ``history`` it first replays each
    object's latest metadata (deleted ones included), else only new changes
    come. ``next`` returns one change (an ``ObjectInfo``, ``deleted`` telling
    a deletion from an update) and raises ``NatsUnavailable`` when the
    server has gone quiet for longer than the bucket's timeout; calling
    ``start`` again then resumes right after the last change returned, so
    nothing is lost or repeated across a server restart. A change sent that
    never arrived (the consumer takes no acks) starts it again the same way. At most
    ``LISTING_WINDOW`` changes are ever in flight.
    """

    def __init__(self, bucket: Bucket, *, history: bool = False, start_seq: int | None = None) -> None:
        super().__init__(bucket.stream, {"filter_subject": ALL_META.format(bucket=bucket.name)})
        self.bucket = bucket
        self.history = history
        self.next_seq = start_seq  # the first stream sequence wanted; known once started
        self.delivered = 0  # changes this consumer delivered (its consumer sequence), returned or not
        self._left = 0  # messages the current pull request may still deliver

    async def start(self) -> None:
        if self.next_seq is not None:
            # Metadata subjects keep one message each (rollup), so this is also a replay of the latest.
            self.config.update(deliver_policy="by_start_sequence", opt_start_seq=max(self.next_seq, 1))
        else:
            self.config["deliver_policy"] = "last_per_subject" if self.history else "new"
        created = await self.create(await self.bucket.connection())
        self.delivered = 0
        if self.next_seq is None:
            self.next_seq = int((created.get("delivered") or {}).get("stream_seq", 0)) + 1
        await self._request()

    async def _request(self) -> None:
        self._left = LISTING_WINDOW
        await self.request(self._left, expires=WATCH_EXPIRES.total_seconds(), heartbeat=WATCH_HEARTBEAT.total_seconds())

    async def next(self) -> ObjectInfo:
        if self.nc is None or not self.name:
            raise RuntimeError("Watch.next() before Watch.start()")
        while True:
            msg, status = await self.receive("no heartbeat while watching")
            if self.missed(msg, status, self.delivered):
                # A change was sent and never arrived (lost in a reconnect or a failover): the consumer does
                # not send it again (no acks), so a new one resumes right after the last change returned.
                await self.start()
                continue
            if status is None:
                self.next_seq = msg.metadata.sequence.stream + 1
                self.delivered = msg.metadata.sequence.consumer
                self._left -= 1
                if self._left <= 0:
                    await self._request()
                return ObjectInfo.from_delivery(msg)
            if status == REQUEST_EXPIRED:  # the pull request expired: ask again
                await self._request()
            elif status != HEARTBEAT:  # anything else ends this consumer
                raise NatsUnavailable(
                    f"NATS bucket {self.bucket.name!r}: the watch ended: {self.status_text(msg, status)}"
                )
