"""Moving an object's data: uploads, downloads, and where a download starts after a seek.

Where nats-py's own ``ObjectStore`` waits for every chunk's acknowledgement
and builds whole objects in memory, an ``Upload`` keeps a bounded window of
unacknowledged chunks in flight, and a ``Download`` asks for at most a
window of chunks at a time (by batched direct gets where the server and the
bucket allow them, else through an ephemeral pull consumer), so memory stays
flat whatever the object's size.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import os
import time
from collections import deque
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from functools import partial
from typing import Any

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.nuid import NUID

from natsstorage import listingindex
from natsstorage.delivery import Astray, DirectBatch, NoBatch, Pull, answers_batches
from natsstorage.exceptions import BucketNotFound, CorruptObject, JetStreamError, NatsStorageError, NatsUnavailable
from natsstorage.jetstream import (
    ERR_WRONG_LAST_MSG_ID,
    EXPECTED_SUBJECT_SEQ_HEADER,
    MESSAGE_SIZE_HEADER,
    MSG_ID_HEADER,
    let_go,
    seconds_until,
)
from natsstorage.objectstore import (
    CHUNK_SUBJECT,
    DEFAULT_CHUNK_SIZE,
    LISTING_WINDOW,
    Bucket,
    ObjectInfo,
    encode_digest,
    format_time,
    logger,
)

REPLICA_RETRY_WAIT = 0.2  # seconds between reads of a replicated bucket that saw chunks missing
# A chunk read at least this big is hashed by a thread of its own while the NATS loop receives the next
# (hashlib lets go of the GIL): about 5% off a 100 MiB read on two cores. At most HASH_AHEAD chunks wait.
HASH_BESIDE_BYTES = 256 * 1024
HASH_AHEAD = 4
# "NATS/1.0", Nats-Msg-Id and a nuid: headers count toward the server's max_payload, which a chunk may fill.
CHUNK_HEADER_ROOM = 64
# Chunks an upload sends before the bucket acknowledges its first: kept until then, to send again if the bucket
# proves gone (another process destroyed it since this one last used it) and is made anew.
UNCONFIRMED_CHUNKS = 2

_nuid = NUID()
_hasher: tuple[int, ThreadPoolExecutor] | None = None  # by the process it was made in: none survives a fork


def _new_nuids_in_child() -> None:
    """A forked worker (gunicorn --preload, uWSGI) would draw the same nuids as its siblings: chunks of two
    objects under one subject."""
    global _nuid
    _nuid = NUID()


os.register_at_fork(after_in_child=_new_nuids_in_child)


def _hash_beside(sha256: Any, data: bytes) -> concurrent.futures.Future[None]:
    """``sha256.update(data)`` on the hashing thread, after every update given it before."""
    global _hasher
    if _hasher is None or _hasher[0] != os.getpid():
        _hasher = (os.getpid(), ThreadPoolExecutor(1, thread_name_prefix="natsstorage-hash"))
    return _hasher[1].submit(sha256.update, data)


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
        self._sha256: Any = hashlib.sha256()  # None: a resumed upload's bytes before, never seen here
        self._digest: bytes | None = None  # given by hashed(), instead of _sha256's
        self._buffer = bytearray()
        self._held: memoryview | None = None  # instead of _buffer: the end of one write of immutable bytes, uncopied
        self._acks: deque[tuple[asyncio.Future[Msg], float]] = deque()  # and when each is overdue (loop time)
        self._writing = asyncio.Lock()  # FIFO, so queued writes keep their order
        self._name = repr(name) if name else "a new object"  # for messages; commit gives the final name
        self._meta_sent = False  # metadata published without a known outcome: abort() keeps the chunks
        # Until the bucket acknowledges a chunk, the chunks sent (UNCONFIRMED_CHUNKS at most): if it proves gone,
        # they go again to the bucket made anew. None: not kept (a chunk was taken, or buckets are not created).
        self._unconfirmed: list[tuple[bytes | memoryview, dict[str, str] | None]] | None = (
            [] if bucket.creates else None
        )
        self._after_seq: int | None = None  # a resumed upload's first chunk lands only after this subject sequence

    @classmethod
    async def begin(cls, bucket: Bucket, *, caller_hashes: bool = False, name: str = "") -> Upload:
        """Start writing a new object's chunks; give it a name with ``commit``.

        ``caller_hashes``: the writer feeds every byte to ``hash`` itself, in
        its own thread, so hashing runs beside the NATS loop instead of on it.
        """
        nc = await bucket.connection()
        if bucket.max_bytes > 0:
            await bucket.stream.settled()  # else the replaced versions' chunks still count against the limit
        return cls(bucket, nc, caller_hashes=caller_hashes, name=name)

    @classmethod
    async def resume(
        cls,
        bucket: Bucket,
        nuid: str,
        *,
        chunks: int,
        size: int,
        sha256: Any,
        chunk_size: int,
        last_seq: int | None,
        name: str,
        tail: bytes = b"",
    ) -> Upload:
        """Go on writing the chunks under ``nuid``: ``chunks`` of ``chunk_size`` (``size`` bytes, already fed
        to ``sha256``), the last at stream sequence ``last_seq`` (0: none yet; None: not checked), then ``tail``
        (less than a chunk, fed to ``sha256`` too, not yet published). A ``caller_hashes`` upload; with no
        ``sha256`` (what came before is not known here), ``hashed`` gives the whole digest before ``commit``.

        Its first chunk lands only if the subject's last is still that one (``ObjectChanged`` otherwise: another
        writer appended meanwhile), and is acknowledged before the next goes.
        """
        upload = await cls.begin(bucket, caller_hashes=True, name=name)
        upload.nuid, upload.subject = nuid, CHUNK_SUBJECT.format(bucket=bucket.name, nuid=nuid)
        upload.chunks, upload.size, upload._sha256, upload._after_seq = chunks, size, sha256, last_seq
        upload.chunk_size = min(chunk_size, upload.chunk_size) if not chunks else chunk_size
        upload._buffer += tail
        if chunks or tail:
            upload._unconfirmed = None  # a bucket made anew would not hold the chunks before
        return upload

    @property
    def written(self) -> int:
        """Bytes written so far: those published (``size``) and those waiting to fill a chunk."""
        return self.size + (len(self._held) if self._held is not None else len(self._buffer))

    async def write(self, data: bytes) -> None:
        """Add data; full chunks are published with at most ``window`` awaiting acknowledgement.

        Writes may be started before the last one finished: they run in order.
        """
        async with self._writing:
            await self._write(data)

    async def _write(self, data: bytes) -> None:
        size = self.chunk_size
        view = memoryview(data)
        if self._held is not None:  # more follows it: copied after all
            self._buffer += self._held
            self._held = None
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
        if view and not self._buffer and type(data) is bytes:
            self._held = view
        else:
            self._buffer += view

    async def _publish(self, chunk: bytes | memoryview, headers: dict[str, str] | None = None) -> None:
        if not self.caller_hashes:
            self._sha256.update(chunk)
        self.size += len(chunk)
        self.chunks += 1
        # A full window waits for its oldest acknowledgement; so does one overdue, else a server that stopped
        # reading (frozen, or gone without a word) would keep a wide window's publishes waiting on a full socket.
        # One already in is settled too, and until the bucket took a chunk the window is narrow: chunks kept to
        # send again (_unconfirmed) are let go at the first acknowledgement, and never more than a few are kept.
        loop = asyncio.get_running_loop()
        window = self.window if self._unconfirmed is None else min(self.window, UNCONFIRMED_CHUNKS)
        while self._acks and (len(self._acks) >= window or self._acks[0][1] <= loop.time() or self._acks[0][0].done()):
            await self._settle(self._acks.popleft())
        due = loop.time() + self.bucket.stream.timeout  # from now: sending may itself wait (a full socket)
        after, self._after_seq = self._after_seq, None
        if after is not None:
            headers = {**(headers or {}), EXPECTED_SUBJECT_SEQ_HEADER: str(after)}
        ack = await self.bucket.stream.start_publish(self.nc, self.subject, chunk, headers, self._name)
        self._acks.append((ack, due))
        if self._unconfirmed is not None:
            self._unconfirmed.append((chunk, headers))
        if after is not None:
            await self._settle(self._acks.popleft())

    def hash(self, data: bytes) -> None:
        """Add ``data`` to the digest (``caller_hashes`` uploads): every byte written, in order, once."""
        if self._sha256 is not None:
            self._sha256.update(data)

    def hashed(self, digest: bytes) -> None:
        """The SHA-256 of every byte written, computed whole by the caller (``caller_hashes`` uploads)."""
        self._digest = digest

    async def _settle(self, sent: tuple[asyncio.Future[Msg], float]) -> None:
        ack, due = sent
        try:
            await self.bucket.stream.settle(ack, self._name.strip("'"), f"a chunk of {self._name}", due=due)
        except BucketNotFound:
            if not self._unconfirmed:
                raise
            await self._send_again()
            await self._settle(self._acks.popleft())
        self._unconfirmed = None

    async def _send_again(self) -> None:
        """Send the chunks the bucket never took again, to the bucket made anew (``bucket.connection()``
        creates it: its stream forgot it when it proved gone). Only once."""
        chunks, self._unconfirmed = self._unconfirmed or [], None
        for ack, _ in self._acks:
            let_go(ack)  # each is the same refusal
        self._acks.clear()
        await self.bucket.connection()
        loop = asyncio.get_running_loop()
        for chunk, headers in chunks:
            due = loop.time() + self.bucket.stream.timeout
            self._acks.append(
                (await self.bucket.stream.start_publish(self.nc, self.subject, chunk, headers, self._name), due)
            )

    @property
    def digest(self) -> bytes | None:
        """The SHA-256 of every byte written so far; None for a resumed upload until ``hashed`` gives it."""
        if self._digest is not None:
            return self._digest
        return self._sha256.digest() if self._sha256 is not None else None

    async def flush(self) -> bytes | None:
        """Publish the last chunk and wait for every acknowledgement: the data is stored, nameless until
        ``commit`` (``natsstorage.uploads`` stages files so). The SHA-256 of every byte written (``digest``)."""
        async with self._writing:
            tail = self._held if self._held is not None else bytes(self._buffer)
            self._held = None
            self._buffer.clear()
            if tail:
                await self._publish(tail)
        await self.drain()
        return self.digest

    async def commit(
        self,
        name: str,
        *,
        previous: ObjectInfo | None,
        description: str = "",
        headers: Mapping[str, list[str]] | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> ObjectInfo:
        """Publish the metadata under ``name``, only if its latest metadata is still ``previous``.

        Raises ``ObjectChanged`` when another writer got there first; the
        chunks stay, so the caller may retry under the same or another name.
        After a replacement the old object's chunks are purged in the background.
        """
        self._name = repr(name)
        tail = self._held if self._held is not None else bytes(self._buffer)
        self._held = None
        self._buffer.clear()
        # The whole object is the chunk about to go, with room for the header that lets its metadata follow at once.
        alone = not self.chunks and bool(tail) and len(tail) + CHUNK_HEADER_ROOM <= self.nc.max_payload
        if tail:  # alone, it waits in nats-py's buffer: it leaves with the entry and the metadata, in one write
            await self._publish(tail, {MSG_ID_HEADER: self.nuid} if alone else None)
        if not alone:
            while self._acks:
                await self._settle(self._acks.popleft())
        raw: dict[str, Any] = {
            "name": name,
            "description": description,
            "headers": {key: list(values) for key, values in (headers or {}).items()},
            "metadata": dict(metadata or {}),
            "options": {"max_chunk_size": self.chunk_size},
            "bucket": self.bucket.name,
            "nuid": self.nuid,
            "size": self.size,
            "mtime": format_time(datetime.now(UTC)),
            "chunks": self.chunks,
            "digest": encode_digest(self._require_digest()),
        }
        for key in ("description", "headers", "metadata"):
            if not raw[key]:
                del raw[key]
        # From here the metadata may land whatever happens to this call (a stream leader that dies may
        # have passed it on, a cancelled wait may have sent it): abort() must keep the chunks.
        # The listing index's entry (and missing directory markers) go right before the metadata, unacknowledged.
        indexed = await listingindex.announce(self.bucket, self.nc, name, self.nuid, self.size)
        self._meta_sent = True
        expected_seq = previous.seq if previous else 0
        try:
            if self._acks:
                seq = await self._put_meta_beside_chunk(name, raw, expected_seq)
            elif self._unconfirmed is not None:  # no chunk: the bucket may yet prove gone
                seq = await self.bucket.again_if_gone(partial(self._put_meta, name, raw, expected_seq))
            else:
                seq = await self.bucket.put_meta(self.nc, name, raw, expected_seq=expected_seq)
        except NatsUnavailable:
            raise
        except NatsStorageError:  # the server refused it (changed, full, sealed): it did not land
            self._meta_sent = False
            raise
        listingindex.marked(self.bucket, self.nc, indexed)
        if previous is not None and not previous.deleted and previous.nuid != self.nuid:
            old = CHUNK_SUBJECT.format(bucket=self.bucket.name, nuid=previous.nuid)
            self.bucket.stream.purge_soon(self.nc, old, f"the replaced version of {self._name}")
        # By this client's clock; reading the metadata back gives the server's.
        info = ObjectInfo.from_raw(raw, seq=seq, time=datetime.now(UTC))
        self.bucket.written(name, info)
        return info

    def _require_digest(self) -> bytes:
        if (digest := self.digest) is None:
            raise RuntimeError(f"the digest of the resumed upload of {self._name} was not given (hashed())")
        return digest

    async def _put_meta(self, name: str, raw: Mapping[str, Any], expected_seq: int) -> int:
        return await self.bucket.put_meta(await self.bucket.connection(), name, raw, expected_seq=expected_seq)

    async def _put_meta_beside_chunk(self, name: str, raw: Mapping[str, Any], expected_seq: int) -> int:
        """The metadata of a one-chunk object sent before the chunk's acknowledgement: one round trip.

        The stream takes it only if its last message is that chunk (``Nats-Expected-Last-Msg-Id``),
        so it never names a chunk the stream refused (a full bucket, say). When another message
        landed between the two, it is sent again once the chunk's acknowledgement is in.
        """
        chunk = self._acks[0]
        meta = await self.bucket.start_put_meta(self.nc, name, raw, expected_seq=expected_seq, after=self.nuid)
        self._acks.popleft()  # (left for abort() to wait for when the metadata is refused before it is sent)
        try:
            await self._settle(chunk)  # the chunk's refusal is the cause of the metadata's, if any
        except BaseException:
            await asyncio.wait([meta], timeout=self.bucket.stream.timeout)  # it only echoes the chunk's failure
            let_go(meta)
            raise
        try:
            return await self.bucket.stream.settle(meta, name)
        except JetStreamError as error:
            # Or it went to a bucket gone (destroyed meanwhile): the chunk went again to the one made anew.
            if error.code != ERR_WRONG_LAST_MSG_ID and not isinstance(error, BucketNotFound):
                raise
        return await self.bucket.put_meta(self.nc, name, raw, expected_seq=expected_seq)

    async def drain(self) -> None:
        """Wait until every full chunk written so far is stored (raises as ``commit`` would)."""
        async with self._writing:
            while self._acks:
                await self._settle(self._acks.popleft())

    async def abort(self, *, keep_chunks: bool = False) -> None:
        """Remove the chunks published so far, once those in flight have landed or failed.

        Never raises: it runs while another error is on its way to the caller.
        What it cannot remove (the server is gone) ``natsos_gc`` collects later.
        ``keep_chunks``: only wait, and leave them (an upload to resume); the unpublished tail is dropped.
        """
        sent, self._acks = list(self._acks), deque()
        acks = [ack for ack, _ in sent]
        if acks:  # until the last is due: those overdue are not waited for again
            await asyncio.wait(acks, timeout=seconds_until(sent[-1][1]))
            for ack in acks:
                let_go(ack)  # no longer awaited: its reply, if any, is dropped
        if not self.chunks or keep_chunks:
            return
        if self._meta_sent:
            logger.warning("kept the chunks at %s: their metadata may yet land (else natsos_gc)", self.subject)
            return
        if not self.nc.is_connected:  # a purge would only wait out its timeout before the caller hears why
            logger.warning(
                "kept the chunks at %s: the connection to NATS is lost (natsos_gc will remove them)", self.subject
            )
            return
        await self.bucket.stream.purge_or_warn(self.nc, self.subject, f"an aborted upload of {self._name}")


class Download:
    """An object's data, chunk by chunk, checked against its size, chunk count and digest.

    Up to a window of chunks come by batched direct gets (nats-server 2.12+, a
    bucket with direct access), sparing a consumer's creation and deletion (a
    round trip, and in a cluster a proposal to the meta leader). More come
    through an ephemeral pull consumer: the server copies each message of a
    direct get once more than a consumer's, and each batch must wait for the
    last one's end to know where it starts, while a consumer's pull requests
    follow each other with no gap, so past a window the consumer is faster
    (measured on loopback, one server and a three-node cluster). A consumer
    also reads whatever a batch could not (an older server, a stream without
    direct access, a replica that lags).
    """

    def __init__(
        self,
        bucket: Bucket,
        nc: Client,
        info: ObjectInfo,
        *,
        first_chunk: int = 0,
        first_byte: int = 0,
        start_seq: int = 0,
        source: DirectBatch | Pull | None = None,
        only_chunk: asyncio.Future[dict[str, Any] | None] | None = None,
    ) -> None:
        self.bucket = bucket
        self.nc = nc
        self.info = info
        self.first_chunk = first_chunk
        self.chunks = first_chunk
        self.received = first_byte
        self.subject = CHUNK_SUBJECT.format(bucket=bucket.name, nuid=info.nuid)
        self.window = bucket.window_for(info.chunk_size or DEFAULT_CHUNK_SIZE)
        self._partial = first_chunk > 0  # a read that skipped chunks cannot check the digest
        self._sha256 = hashlib.sha256()
        self._hashing: deque[concurrent.futures.Future[None]] = deque()  # chunks on the hashing thread
        self._start_seq = start_seq  # first_chunk's stream sequence; 0: not known (or the first chunk)
        self._source = source  # started at first_chunk; None: made at the first read
        self._only_chunk_asked = only_chunk  # a one-chunk object's direct get, sent with its metadata's

    @classmethod
    async def begin(
        cls, bucket: Bucket, info: ObjectInfo, only_chunk: asyncio.Future[dict[str, Any] | None] | None = None
    ) -> Download:
        return cls(bucket, await bucket.connection(), info, only_chunk=only_chunk)

    @staticmethod
    async def ask_only_chunk(bucket: Bucket, nuid: str) -> dict[str, Any] | None:
        """The chunk of the one-chunk object ``nuid``: asked before its metadata has confirmed it."""
        subject = CHUNK_SUBJECT.format(bucket=bucket.name, nuid=nuid)
        return await bucket.stream.direct_get(await bucket.connection(), {"seq": 0, "next_by_subj": subject})

    @classmethod
    async def at(cls, bucket: Bucket, info: ObjectInfo, offset: int) -> tuple[Download, int]:
        """A download from the chunk that holds byte ``offset``, and where that chunk starts.

        Chunks of one writer are usually even (all but the last ``max_chunk_size``,
        which the last chunk's length proves) and side by side in the stream: then
        chunk k is at a known sequence, and a read started there that sees exactly
        the chunks after k proves it, whatever else the stream holds. Otherwise a
        headers-only consumer maps every chunk's sequence and size.
        """
        nc = await bucket.connection()
        if offset <= 0 or info.chunks <= 1 or offset >= info.size:
            return cls(bucket, nc, info), 0
        subject = CHUNK_SUBJECT.format(bucket=bucket.name, nuid=info.nuid)
        size = info.chunk_size
        if size and info.chunks == -(-info.size // size):
            last = await bucket.stream.direct_get(nc, {"last_by_subj": subject})
            if last is not None and len(last["data"]) == info.size - (info.chunks - 1) * size:
                chunk = offset // size
                start_seq = last["seq"] - (info.chunks - 1) + chunk
                download = cls(bucket, nc, info, first_chunk=chunk, first_byte=chunk * size, start_seq=start_seq)
                if await download._start_exactly():
                    return download, chunk * size
        start = 0
        config = {"deliver_policy": "all", "filter_subject": subject, "headers_only": True}
        async with Pull(bucket.stream, nc, config, exact=True, window=LISTING_WINDOW) as chunks:
            for chunk in range(min(chunks.pending, info.chunks)):
                msg = await chunks.next()
                assert msg is not None  # an exact pull raises rather than end early
                length = int((msg.headers or {}).get(MESSAGE_SIZE_HEADER, 0))
                if start + length > offset:
                    seq = msg.metadata.sequence.stream
                    return cls(bucket, nc, info, first_chunk=chunk, first_byte=start, start_seq=seq), start
                start += length
        return cls(bucket, nc, info), 0  # chunks missing: reading through reports it

    async def _start_exactly(self) -> bool:
        """Start reading at ``start_seq`` if exactly the chunks left are there from it: a proof that it is theirs."""
        expected = self.info.chunks - self.chunks
        source: DirectBatch | Pull | None = await self._batch()
        if source is None:
            source = Pull(self.bucket.stream, self.nc, self._consumer_config(), exact=True, window=self.window)
            await source.start()
        if source.pending == expected:
            self._source = source
            return True
        await source.close()
        return False

    async def read_many(self, limit: int) -> list[bytes]:
        """The next chunk and any others already here, up to ``limit`` chunks: one hop for many."""
        chunks = [await self.read()]
        while chunks[-1] and len(chunks) < limit and self._source is not None and self._source.ready():
            chunks.append(await self.read())
        return chunks

    async def read(self) -> bytes:
        """The next chunk's bytes, or ``b""`` at the end."""
        if self.chunks >= self.info.chunks:
            return b""
        if self.info.chunks == 1:
            return await self._check(await self._only_chunk())
        if self._source is None:
            self._source = await self._batch(at_least=True) or await self._consumer()
        if isinstance(self._source, DirectBatch):
            try:
                return await self._check(await self._source.next())
            except NoBatch as why:
                self._start_seq = self._source.next_seq
                await self.close()
                logger.debug("reading the rest of %r through a consumer: %s", self.info.name, why)
                self._source = await self._consumer()
        try:
            msg = await self._source.next()
        except Astray as why:  # lost in a reconnect: the rest from the one that never arrived
            self._start_seq = self._source.next_seq
            await self.close()
            logger.debug("reading the rest of %r through a new consumer: %s", self.info.name, why)
            self._source = await self._consumer()
            msg = await self._source.next()
        assert msg is not None  # an exact pull raises rather than end early
        return await self._check(msg.data)

    async def _batch(self, *, at_least: bool = False) -> DirectBatch | None:
        """Batched direct gets of the chunks left from ``start_seq``, if they fit a window and the server answers them.

        ``at_least``: None unless at least the chunks left are there (else a consumer
        will say how many there are, asking again while a replica catches up).
        """
        stream = self.bucket.stream
        expected = self.info.chunks - self.chunks
        if expected > self.window or not (stream.direct and answers_batches(self.nc)):
            return None
        window_bytes = self.window * (self.info.chunk_size or DEFAULT_CHUNK_SIZE)
        batch = DirectBatch(
            stream,
            self.nc,
            self.subject,
            start_seq=self._start_seq,
            count=expected,
            window=self.window,
            max_bytes=window_bytes,
        )
        try:
            await batch.start()
        except NoBatch as why:
            logger.debug("reading %r through a consumer: %s", self.info.name, why)
            return None
        if at_least and batch.pending < expected:
            await batch.close()
            return None
        return batch

    def _consumer_config(self) -> dict[str, Any]:
        if self._start_seq:
            return {
                "deliver_policy": "by_start_sequence",
                "opt_start_seq": self._start_seq,
                "filter_subject": self.subject,
            }
        return {"deliver_policy": "all", "filter_subject": self.subject}

    async def _consumer(self) -> Pull:
        """A consumer of the chunks left from ``start_seq``; there must be at least as many as are left."""
        config = self._consumer_config()
        expected = self.info.chunks - self.chunks
        # A replica that is still catching up (a node just back) may host the consumer
        # and see fewer chunks for a moment; on one server, missing chunks are missing.
        deadline = time.monotonic() + (self.bucket.stream.timeout if self.bucket.stream.replicated else 0)
        while True:
            pull = Pull(self.bucket.stream, self.nc, config, exact=True, window=self.window)
            await pull.start()
            if pull.pending >= expected:
                return pull
            await pull.close()
            if time.monotonic() >= deadline:
                raise self._corrupt(f"{pull.pending} of the {expected} chunks to read are on the server")
            await asyncio.sleep(REPLICA_RETRY_WAIT)

    async def _only_chunk(self) -> bytes:
        """A one-chunk object in one request, without a consumer (or the one sent with its metadata's)."""
        asked, self._only_chunk_asked = self._only_chunk_asked, None
        message = await asked if asked is not None else None
        if message is None:
            message = await self.bucket.stream.direct_get(self.nc, {"seq": 0, "next_by_subj": self.subject})
        if message is None:
            raise self._corrupt("0 of the 1 chunks to read are on the server")
        data: bytes = message["data"]
        return data

    async def _check(self, data: bytes) -> bytes:
        """Count and hash one chunk; at the last one, compare size and digest."""
        self.chunks += 1
        self.received += len(data)
        if self._partial:
            pass
        elif self._hashing or len(data) >= HASH_BESIDE_BYTES:  # in order, after those already there
            self._hashing.append(_hash_beside(self._sha256, data))
            while len(self._hashing) > HASH_AHEAD or (self._hashing and self.chunks == self.info.chunks):
                await asyncio.wrap_future(self._hashing.popleft())
        else:
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

    @property
    def receiving(self) -> bool:
        """Whether a consumer or a batch is under way, for ``close()`` to end."""
        return self._source is not None

    async def close(self) -> None:
        if self._source is not None:
            source, self._source = self._source, None
            await source.close()
