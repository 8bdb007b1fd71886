"""Writes to a bucket's listing index (docs/design-listing.md, "What each write sends", "The fold"): making and
dropping its streams, its state message (compare-and-set), the fold of metadata changes into entries and
markers, and what a save sends before its metadata. Asyncio, Django-free; ``indexreads.ServerIndex`` builds on it."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import OrderedDict
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Any

import nats.errors
from nats.aio.client import Client
from nats.aio.msg import Msg

from natsstorage.delivery import ANSWERS, BATCH_BYTES, REPLICA_WAIT, Answers, Got, Pull, last_of_literals
from natsstorage.exceptions import (
    BucketNotFound,
    CorruptObject,
    JetStreamError,
    NatsStorageError,
    NatsUnavailable,
    Unusable,
)
from natsstorage.indexsubjects import (
    DIRECTORIES_STREAM,
    DIRECTORY_ROOT,
    ENTRIES_STREAM,
    FORMAT,
    directories_of,
    directory_fits,
    entry_json,
    entry_payload,
    entry_subject,
    marker_subject,
    name_of_meta,
    parse_entry,
    stream_configs,
)
from natsstorage.jetstream import (
    ERR_STREAM_NAME_IN_USE,
    ERR_WRONG_LAST_SEQUENCE,
    EXPECTED_SUBJECT_SEQ_HEADER,
    NANOSECONDS,
    Stream,
    refuse_oversized,
)
from natsstorage.names import index_tokens
from natsstorage.objectstore import ALL_META, Bucket, ObjectInfo, parse_time

MARKER_TRUST = 600.0  # seconds a directory marker known to have reached the server is not written again
KNOWN_DIRECTORIES = 4096

logger = logging.getLogger("natsstorage")
Marker = tuple[str, str, bytes]  # a directory, its marker's subject, the marker


class IndexStreams:
    """The two streams of one bucket's index and what writes them; runs on the NATS loop."""

    def __init__(self, bucket: Bucket) -> None:
        self.bucket = bucket
        label = f"listing index of bucket {bucket.name!r}"
        timeout = bucket.stream.timeout
        self.entries = Stream(
            ENTRIES_STREAM.format(bucket=bucket.name), bucket.stream.connect, timeout=timeout, label=label
        )
        self.directories = Stream(
            DIRECTORIES_STREAM.format(bucket=bucket.name), bucket.stream.connect, timeout=timeout, label=label
        )
        self.present = False  # both streams are there: writes maintain them
        self.reason: str | None = "not looked for yet"  # why listings cannot use it; None: they can
        self.checked = float("-inf")  # when it was looked for (loop time)
        self.marked: OrderedDict[str, float] = OrderedDict()  # directory -> when its marker surely reached the server
        self.as_of = 0  # the bucket's last sequence at the last fresh(): what a check of rows must include
        self._looking = asyncio.Lock()

    @property
    def state_subject(self) -> str:
        return DIRECTORY_ROOT.format(bucket=self.bucket.name)

    async def create(self, *, empty: bool, built: bool = True) -> None:
        """Make both streams and a state saying every change of the bucket is yet to fold (``built``) or to
        build. ``empty``: start again from nothing (a rebuild, a bucket made anew); else a state another
        process wrote first stays."""
        nc = await self.bucket.connection()
        objects = await self.bucket.stream_info()
        configs = stream_configs(self.bucket.name, objects["config"])
        for stream, config in zip((self.entries, self.directories), configs, strict=True):
            try:
                await stream.create(nc, config)
            except JetStreamError as error:
                if error.code != ERR_STREAM_NAME_IN_USE:  # there with another configuration: kept
                    raise
            if empty:
                await stream.api(nc, f"STREAM.PURGE.{stream.name}")
            stream.config = config
        self.marked.clear()
        state = {"v": FORMAT, "created": objects.get("created"), "folded": 0, "built": built, "build_after": 0}
        headers = {} if empty else {EXPECTED_SUBJECT_SEQ_HEADER: "0"}
        try:
            await self.directories.publish(
                nc, self.state_subject, json.dumps(state).encode(), headers, "the index state"
            )
        except JetStreamError as error:
            if error.code != ERR_WRONG_LAST_SEQUENCE:
                raise

    async def drop(self) -> None:
        nc = await self.bucket.stream.connect()
        for stream in (self.entries, self.directories):
            with contextlib.suppress(BucketNotFound):
                await stream.api(nc, f"STREAM.DELETE.{stream.name}")
            stream.config = None
        self.present, self.reason = False, "it was dropped"

    async def state(self, nc: Client) -> tuple[dict[str, Any], int] | None:
        """The state message and its sequence, from the stream leader."""
        found = await self.directories.get_message(nc, {"last_by_subj": self.state_subject})
        if found is None:
            return None
        try:
            state = json.loads(found["data"])
        except ValueError:
            state = None
        return (state if isinstance(state, dict) else {}), int(found["seq"])

    async def set_state(self, nc: Client, changes: dict[str, Any], *, moves: str = "folded") -> None:
        """Apply ``changes`` to the state by compare-and-set; a ``moves`` figure another process moved further
        meanwhile keeps the greater."""
        for _ in range(8):
            found = await self.state(nc)
            state, seq = found if found else ({}, 0)
            if moves in changes and int(state.get(moves) or 0) >= int(changes[moves]) and len(changes) == 1:
                return
            headers = {EXPECTED_SUBJECT_SEQ_HEADER: str(seq)}
            try:
                payload = json.dumps({**state, **changes}).encode()
                await self.directories.publish(nc, self.state_subject, payload, headers, "the index state")
                return
            except JetStreamError as error:
                if error.code != ERR_WRONG_LAST_SEQUENCE:
                    raise
        raise NatsUnavailable(f"NATS {self.directories.label}: its state kept changing")

    async def fold(
        self,
        nc: Client,
        after: int,
        upto: int,
        checkpoint: Callable[[int], Awaitable[None]],
        progress: Callable[[int, int], None] | None = None,
    ) -> None:
        """Bring the index up to date with every metadata change in ``(after, upto]``, batch by batch, calling
        ``checkpoint(seq)`` once the changes up to ``seq`` are in. Changes read past ``upto`` are applied too: a
        name rewritten since the call began has only its newer message left (rollup), and it must not be missed."""
        done, applied = upto, None
        if after < upto:
            async with contextlib.aclosing(self._changes(nc, after + 1)) as pages:
                async for page in pages:
                    if applied is not None:  # (not after the last page: the end's checkpoint says more)
                        await checkpoint(applied)
                    await self._apply(nc, page)
                    done = max(upto, page[-1].seq)
                    if progress is not None:
                        progress(len(page), page[-1].pending)
                    if page[-1].seq >= upto:  # all that was asked
                        break
                    applied = page[-1].seq
        await checkpoint(done)

    async def _changes(self, nc: Client, seq: int) -> AsyncGenerator[list[Got], None]:
        """Every metadata message from ``seq`` on, ``ANSWERS`` at most a page, up to the last there is."""
        meta = ALL_META.format(bucket=self.bucket.name)
        if not self.bucket.stream.replicated:
            while True:
                body = {"seq": seq, "next_by_subj": meta, "batch": ANSWERS, "max_bytes": BATCH_BYTES}
                if not (page := await Answers(self.bucket.stream).ask(nc, body)):
                    return
                yield page
                if not page[-1].pending:
                    return
                seq = page[-1].seq + 1
        # A replicated bucket's, through one consumer. A consumer of one replica is placed on any of the stream's
        # nodes, and a node that lags behind the leader would end the fold short of changes it never saw: the
        # reads go on until they reach the last change the leader knew when asked.
        due = asyncio.get_running_loop().time() + self.bucket.stream.timeout
        while seq <= (known := await self._last_change(nc)):
            config = {"deliver_policy": "by_start_sequence", "opt_start_seq": seq, "filter_subject": meta}
            page = []
            async with Pull(self.bucket.stream, nc, config, exact=False, window=ANSWERS) as pull:
                while (msg := await pull.next()) is not None:
                    stored = msg.metadata
                    time = stored.timestamp.isoformat() if stored.timestamp else ""
                    page.append(Got(msg.subject, stored.sequence.stream, time, msg.data, stored.num_pending or 0))
                    if len(page) == ANSWERS or not page[-1].pending:
                        seq = page[-1].seq + 1
                        yield page
                        page = []
                if page:
                    seq = page[-1].seq + 1
                    yield page
            if seq > known:
                return
            if asyncio.get_running_loop().time() > due:
                raise self.bucket.stream.unavailable("a replica's changes short of the leader's", TimeoutError())
            await asyncio.sleep(REPLICA_WAIT)  # a replica that lagged, or a consumer that ended early: again

    async def _last_change(self, nc: Client) -> int:
        """The stream sequence of the bucket's last metadata change, from the stream leader; 0 when none."""
        last = await self.bucket.stream.get_message(nc, {"last_by_subj": ALL_META.format(bucket=self.bucket.name)})
        return int(last["seq"]) if last is not None else 0

    async def _apply(self, nc: Client, changes: list[Got]) -> None:
        """Make the entries and markers say what these metadata messages (each its name's latest) say."""
        names: dict[str, ObjectInfo | None] = {}
        for got in changes:
            name = name_of_meta(self.bucket.name, got.subject)
            if name is None:
                continue
            try:
                info: ObjectInfo | None = ObjectInfo.from_message(got.data, seq=got.seq, time=parse_time(got.time))
            except CorruptObject as error:
                logger.debug("listing index of bucket %r: %s", self.bucket.name, error)
                info = None
            names[name] = info if info is not None and info.name == name and self.bucket.live(info) else None
        subjects = {name: entry_subject(self.bucket.name, name) for name in names}
        entries = await last_of_literals(self.entries, nc, list(subjects.values()))
        acks: list[tuple[asyncio.Future[Msg], str | None]] = []  # in flight, and the directory each marks
        sending: set[str] = set()  # markers sent for this batch: one per directory
        for name, info in names.items():
            entry = entries.get(subjects[name])
            if info is None:
                if entry is not None:
                    await self._purge(nc, entry)
                continue
            known = parse_entry(entry.data) if entry else None
            wanted = entry_payload(name, info.nuid, info.size, int(info.mtime.timestamp() * NANOSECONDS), info.is_link)
            if known is None or any(known.get(key) != wanted.get(key) for key in ("n", "u", "s", "l")):
                headers = {EXPECTED_SUBJECT_SEQ_HEADER: str(entry.seq if entry else 0)}
                acks.append((await self._send(nc, self.entries, subjects[name], wanted, headers), None))
            for marks, subject, marker in self._markers(name, sending):
                acks.append((await self._send_raw(nc, self.directories, subject, marker), marks))
        refused = None
        for ack, marked in acks:
            outcome = await self._outcome(ack)
            if isinstance(outcome, JetStreamError) and outcome.code == ERR_WRONG_LAST_SEQUENCE:
                continue  # a newer entry was written meanwhile
            if outcome is None and marked is not None:
                self.mark([marked])
            refused = refused or outcome
        if refused is not None:  # the fold must not move past what it could not write
            raise Unusable(f"writing to its streams failed: {refused}")

    async def _purge(self, nc: Client, entry: Got) -> None:
        """Remove an entry, unless a newer one replaced it meanwhile."""
        await self.entries.api(nc, f"STREAM.PURGE.{self.entries.name}", {"filter": entry.subject, "seq": entry.seq + 1})

    # -- writes -----------------------------------------------------------------------

    async def _send(
        self, nc: Client, stream: Stream, subject: str, payload: dict[str, Any], headers: dict[str, str] | None = None
    ) -> asyncio.Future[Msg]:
        return await self._send_raw(nc, stream, subject, json.dumps(payload).encode(), headers)

    async def _send_raw(
        self, nc: Client, stream: Stream, subject: str, payload: bytes, headers: dict[str, str] | None = None
    ) -> asyncio.Future[Msg]:
        return await stream.start_publish(nc, subject, payload, headers, "a listing index entry")

    def _markers(self, name: str, sending: set[str] | None = None) -> list[Marker]:
        """Markers of ``name``'s directories not marked lately (nor in ``sending``), with ``name`` as their witness."""
        now = time.monotonic()
        markers: list[Marker] = []
        tokens: list[str] | None = None
        for depth, directory in enumerate(directories_of(name), start=1):
            if now - self.marked.get(directory, float("-inf")) < MARKER_TRUST or directory in (sending or ()):
                continue  # (a directory that does not fit is never marked)
            tokens = tokens or index_tokens(name)
            if not directory_fits(self.bucket.name, tokens[:depth]):
                break
            if sending is not None:
                sending.add(directory)
            marker = json.dumps({"n": directory, "w": name}).encode()
            markers.append((directory, marker_subject(self.bucket.name, tokens[:depth]), marker))
        return markers

    async def announce(self, nc: Client, name: str, nuid: str, size: int) -> list[str]:
        """Publish ``name``'s missing directory markers and its entry, asking no acknowledgement: a save sends
        them right before its metadata. What did not land, the fold of the next listing writes (acknowledged).
        The directories marked, for ``mark`` once the metadata's acknowledgement came."""
        markers = self._markers(name)
        entry = entry_json(name, nuid, size, time.time_ns())
        try:
            for _, subject, marker in markers:
                refuse_oversized(nc, subject, "", len(marker), "a listing index marker")
                await nc.publish(subject, marker)
            subject = entry_subject(self.bucket.name, name)
            refuse_oversized(nc, subject, "", len(entry), "a listing index entry")
            await nc.publish(subject, entry)
        except nats.errors.Error as error:  # over its buffer while reconnecting, say: the fold writes them
            logger.debug("listing index of bucket %r: %s not sent: %s", self.bucket.name, name, error)
            return []
        return [directory for directory, _, _ in markers]

    def mark(self, directories: list[str]) -> None:
        """Remember that these directories' markers reached the server (not written again for ``MARKER_TRUST``)."""
        now = time.monotonic()
        for directory in directories:
            self.marked[directory] = now
            self.marked.move_to_end(directory)
        while len(self.marked) > KNOWN_DIRECTORIES:
            self.marked.popitem(last=False)

    async def _outcome(self, ack: asyncio.Future[Msg]) -> BaseException | None:
        try:
            await self.entries.settle(ack, "a listing index entry")
        except (NatsStorageError, OSError) as error:
            return error
        return None
