"""Listings that live on the server (docs/design-listing.md), asyncio, Django-free.

Two companion streams per bucket: ``NSI_<bucket>`` holds one entry per name under a subject made of the name's
path segments (``names.index_tokens``), ``NSD_<bucket>`` one marker per directory and the state message. A
directory is then a subject filter the server answers in what the answer costs (``multi_last``, nats-server
2.12+ as this project gates batched direct gets). The Object Store's own stream is untouched; the truth stays
its metadata: every row a listing finds is checked against it, and ``fresh()`` first folds every metadata change
stored since the last fold (other clients' writes, deletes, repairs) into the index.

When the index cannot be used (an older server, streams absent or refused, a state not built), ``of()`` says so
once per process and bucket on the ``natsstorage`` logger and returns None: the caller lists the old way
(``natsstorage.index``).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hashlib
import json
import logging
import time
import weakref
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import nats.errors
from nats.aio.client import Client
from nats.aio.msg import Msg

from natsstorage.delivery import (
    ANSWERS,
    BATCH_BYTES,
    BATCH_GETS_SINCE,
    Answers,
    Got,
    TooMany,
    answers_batches,
    every_of,
    last_of,
    last_of_literals,
)
from natsstorage.exceptions import BucketNotFound, CorruptObject, JetStreamError, NatsStorageError, NatsUnavailable
from natsstorage.jetstream import (
    ERR_STREAM_NAME_IN_USE,
    ERR_WRONG_LAST_SEQUENCE,
    EXPECTED_SUBJECT_SEQ_HEADER,
    MAX_CONTROL_LINE,
    NANOSECONDS,
    Stream,
    refuse_oversized,
)
from natsstorage.names import index_tokens
from natsstorage.objectstore import ALL_META, META_SUBJECT, Bucket, ObjectInfo, encode_key, parse_time

ENTRIES_STREAM = "NSI_{bucket}"
DIRECTORIES_STREAM = "NSD_{bucket}"
ENTRY_ROOT = "$NSI.{bucket}"
DIRECTORY_ROOT = "$NSD.{bucket}"  # also the state message's subject
OVERFLOW = "~~"  # the token before an overflow entry's hash: never an escaped segment's
FORMAT = 1  # the state's "v"
MAX_INDEX_SUBJECT = 2048  # bytes of any subject published to the index: far within a 4,096-byte protocol line
MAX_DEPTH = 32  # segments of a name indexed under its own subject
HASH_CHARACTERS = 43  # unpadded base64url SHA-256
INDEX_RECHECK = 60.0  # seconds an index found unusable is not looked for again
UNANSWERED_RECHECK = 3600.0  # the same when looking for it went unanswered (a permission the account lacks)
MARKER_TRUST = 600.0  # seconds a directory marker this process saw acknowledged is not written again
KNOWN_DIRECTORIES = 4096
ENTRY_MAX_AGE_MARGIN = 60  # seconds an entry outlives its object's metadata in a bucket with a TTL
LOOKUP_BATCH = 256  # entries read at a time when looking for a directory's new witness

logger = logging.getLogger("natsstorage")
Marker = tuple[str, str, bytes]  # a directory, its marker's subject, the marker


class Unusable(NatsStorageError):
    """The index cannot answer for this bucket now; the message says why."""


def stream_configs(bucket: str, objects: dict[str, Any]) -> list[dict[str, Any]]:
    """The two companion streams of a bucket whose stream has the configuration ``objects``."""
    max_age = int(objects.get("max_age") or 0)
    shared = {
        "max_msgs_per_subject": 1,
        "discard": "old",
        "storage": objects.get("storage", "file"),
        "num_replicas": objects.get("num_replicas", 1),
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


# -- subjects -------------------------------------------------------------------


def _subject(root: str, tokens: Iterable[str]) -> str:
    return ".".join([root, *tokens])


def directory_fits(bucket: str, tokens: list[str]) -> bool:
    """Whether a directory of these tokens has a marker and can hold overflow entries."""
    longest = len(_subject(ENTRY_ROOT.format(bucket=bucket), tokens)) + len(OVERFLOW) + 2 + HASH_CHARACTERS
    return len(tokens) <= MAX_DEPTH - 2 and longest <= MAX_INDEX_SUBJECT


def overflow_home(bucket: str, tokens: list[str]) -> int:
    """How many of ``tokens`` (a directory's) make its deepest ancestor that fits (0: the bucket's top)."""
    depth = min(len(tokens), MAX_DEPTH - 2)
    while depth and not directory_fits(bucket, tokens[:depth]):
        depth -= 1
    return depth


def entry_subject(bucket: str, name: str) -> str:
    """Where ``name``'s entry is: its own subject, or an overflow entry under its deepest ancestor that fits."""
    tokens = index_tokens(name)
    own = _subject(ENTRY_ROOT.format(bucket=bucket), tokens)
    if len(tokens) <= MAX_DEPTH and len(own) <= MAX_INDEX_SUBJECT:
        return own
    home = overflow_home(bucket, tokens[:-1])
    digest = base64.urlsafe_b64encode(hashlib.sha256(name.encode("utf-8", "surrogatepass")).digest()).decode()
    return _subject(ENTRY_ROOT.format(bucket=bucket), [*tokens[:home], OVERFLOW, digest.rstrip("=")])


def marker_subject(bucket: str, tokens: list[str]) -> str:
    return _subject(DIRECTORY_ROOT.format(bucket=bucket), tokens)


def directories_of(name: str) -> list[str]:
    """The directories ``name`` is under, outermost first, each ending in ``/`` (the top, ``""``, left out)."""
    segments = name.split("/")[:-1]
    return ["/".join(segments[: depth + 1]) + "/" for depth in range(len(segments))]


def meta_subject(bucket: str, name: str) -> str | None:
    """``name``'s metadata subject in the Object Store, None when no client could have written one."""
    subject = META_SUBJECT.format(bucket=bucket, key=encode_key(name))
    return subject if len(subject) <= MAX_CONTROL_LINE else None


def name_of_meta(bucket: str, subject: str) -> str | None:
    """The name a metadata subject stands for (padded base64url), None when it is not one."""
    token = subject[len(META_SUBJECT.format(bucket=bucket, key="")) :]
    try:
        return base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode("utf-8", "surrogatepass")
    except (binascii.Error, ValueError):
        return None


def _entry(data: bytes) -> dict[str, Any] | None:
    """An entry's or marker's payload, None when it is not one (the streams take anyone's publishes)."""
    try:
        found = json.loads(data)
    except ValueError:
        return None
    return found if isinstance(found, dict) and isinstance(found.get("n"), str) else None


# -- the index of one bucket ---------------------------------------------------------


class ServerIndex:
    """The server-side index of one bucket, as this process found it; runs on the NATS loop."""

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
        self._looking = asyncio.Lock()

    @property
    def state_subject(self) -> str:
        return DIRECTORY_ROOT.format(bucket=self.bucket.name)

    # -- finding and making the streams ---------------------------------------------

    async def look(self) -> None:
        """Find out whether the index is there (and make it for a bucket this process made)."""
        nc = await self.bucket.connection()
        self.checked = asyncio.get_running_loop().time()
        self.present, self.reason = False, None
        if self.bucket.stream.replicated:
            self.reason = (
                "the bucket is replicated, and re-asking a replica that answers before it caught up "
                "(Nats-UpTo-Sequence) is not implemented yet"
            )
            return
        if not answers_batches(nc):
            since = ".".join(map(str, BATCH_GETS_SINCE))
            self.reason = (
                f"nats-server {nc.connected_server_version} answers no multi_last requests ({since} or later does)"
            )
            return
        try:
            await asyncio.gather(self.entries.connection(), self.directories.connection())
        except (NatsUnavailable, JetStreamError) as error:
            if not isinstance(error, BucketNotFound):  # no answer: a permission the account lacks, say
                self.reason = f"looking for stream {self.entries.name} failed: {error}"
                self.checked += UNANSWERED_RECHECK - INDEX_RECHECK  # each look costs a timeout: seldom
                return
            if not self.bucket.stream.made_here:
                self.reason = (
                    f"the bucket has no streams {self.entries.name} and {self.directories.name} "
                    "(made by another client, or before this release)"
                )
                return
            try:
                await self.create(empty=False)
            except NatsStorageError as refused:
                self.reason = f"creating stream {self.entries.name} was refused: {refused}"
                if isinstance(refused, NatsUnavailable):  # unanswered: a permission the account lacks, say
                    self.checked += UNANSWERED_RECHECK - INDEX_RECHECK
                return
        self.present = True  # whether listings may use it, the state says: fresh() reads it before each

    def _unusable(self, state: dict[str, Any] | None, objects: dict[str, Any]) -> str | None:
        if state is None:
            return "its state message is missing"
        if state.get("v") != FORMAT:
            return f"its format {state.get('v')!r} is not this release's ({FORMAT})"
        if state.get("created") != objects.get("created"):
            return "it was made for an earlier bucket of the same name"
        if not state.get("built"):
            return "it is not built yet"
        return None

    async def create(self, *, empty: bool, built: bool = True) -> None:
        """Make both streams and a state saying every change of the bucket is yet to fold (``built``) or to
        build. ``empty``: start again from nothing (a rebuild, a bucket made anew); else a state another
        process wrote first stays."""
        nc = await self.bucket.connection()
        objects = await self.bucket.stream_info()
        configs = stream_configs(self.bucket.name, objects["config"])
        for stream, config in zip((self.entries, self.directories), configs, strict=True):
            try:
                await stream.api(nc, f"STREAM.CREATE.{stream.name}", config)
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

    # -- the state and the fold ---------------------------------------------------------

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

    async def fresh(self) -> None:
        """Return once every metadata change stored before this call is in the index."""
        nc = await self.bucket.connection()
        objects, found = await asyncio.gather(self.bucket.stream_info(), self.state(nc))
        reason = self._unusable(found[0] if found else None, objects)
        if found and found[0].get("created") != objects.get("created") and self.bucket.stream.made_here:
            await self.create(empty=True)  # the bucket was destroyed by another client and made anew here
            objects, found = await asyncio.gather(self.bucket.stream_info(), self.state(nc))
            reason = self._unusable(found[0] if found else None, objects)
        if reason is not None:
            raise Unusable(reason)
        assert found is not None
        last = int(objects["state"].get("last_seq", 0))
        folded = int(found[0].get("folded") or 0)
        if folded < last:
            await self.fold(nc, folded, last, lambda upto: self.set_state(nc, {"folded": upto}))

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
        meta = ALL_META.format(bucket=self.bucket.name)
        seq, done = after + 1, upto
        while seq <= upto:
            body = {"seq": seq, "next_by_subj": meta, "batch": ANSWERS, "max_bytes": BATCH_BYTES}
            page = await Answers(self.bucket.stream).ask(nc, body)
            if not page:
                break
            await self._apply(nc, page)
            seq = page[-1].seq + 1
            done = max(upto, page[-1].seq)
            if progress is not None:
                progress(len(page), page[-1].pending)
            if not page[-1].pending:  # the last metadata change there is
                break
            await checkpoint(page[-1].seq)
        await checkpoint(done)

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
            known = _entry(entry.data) if entry else None
            wanted = _payload(name, info.nuid, info.size, int(info.mtime.timestamp() * NANOSECONDS), info.is_link)
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
        entry = json.dumps(_payload(name, nuid, size, time.time_ns(), False)).encode()
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

    # -- answers (after ``fresh()``) ---------------------------------------------------------

    async def live(self, nc: Client, names: list[str]) -> dict[str, ObjectInfo]:
        """The live metadata of each of ``names`` that has one: one ``multi_last`` per 1,024 names."""
        found = await self.bucket.multi_last(names)
        return {name: info for name, info in found.items() if self.bucket.live(info)}

    async def _read(self, nc: Client, stream: Stream, filters: list[str]) -> list[Got]:
        """The latest message of every subject under ``filters``: one ``multi_last``, or pages past 1,024."""
        try:
            return await last_of(stream, nc, filters)
        except TooMany:
            pages = await asyncio.gather(*(every_of(stream, nc, subject_filter) for subject_filter in filters))
            return [got for page in pages for got in page]

    async def listdir(self, prefix: str) -> tuple[list[str], list[str]]:
        """The directories and files right under ``prefix`` (``""`` or ending in ``/``), checked with the metadata."""
        nc = await self.bucket.connection()
        bucket = self.bucket.name
        tokens = index_tokens(prefix[:-1]) if prefix else []
        entry_root = _subject(ENTRY_ROOT.format(bucket=bucket), tokens)
        if directory_fits(bucket, tokens):
            entries, markers = await asyncio.gather(
                self._read(nc, self.entries, [entry_root + ".*", entry_root + f".{OVERFLOW}.*"]),
                self._read(nc, self.directories, [marker_subject(bucket, tokens) + ".*"]),
            )
        else:
            home = _subject(ENTRY_ROOT.format(bucket=bucket), tokens[: overflow_home(bucket, tokens)])
            entries, markers = await self._read(nc, self.entries, [home + f".{OVERFLOW}.*"]), []
        files: dict[str, Got] = {}
        for got in entries:
            found = _entry(got.data)
            if found is not None and found["n"].startswith(prefix) and entry_subject(bucket, found["n"]) == got.subject:
                files[found["n"]] = got
        witnesses: dict[str, tuple[str, Got]] = {}  # a subdirectory -> its marker's witness, and the marker
        for got in markers:
            found = _entry(got.data)
            directory, witness = (found or {}).get("n"), (found or {}).get("w")
            if not (isinstance(directory, str) and isinstance(witness, str) and directory.startswith(prefix)):
                continue
            head = directory[len(prefix) :]
            if head.endswith("/") and "/" not in head[:-1] and witness.startswith(directory):
                witnesses[head[:-1]] = (witness, got)
        alive = await self.live(nc, [*files, *(witness for witness, _ in witnesses.values())])
        await self._forget_stale(nc, files, alive)
        directories: set[str] = set()
        names: list[str] = []
        for name in files:
            if name in alive:
                head, slash, _ = name[len(prefix) :].partition("/")
                if slash:
                    directories.add(head)
                else:
                    names.append(head)
        for head, (witness, marker) in witnesses.items():
            if head not in directories and (witness in alive or await self._rewitness(nc, prefix + head + "/", marker)):
                directories.add(head)
        return sorted(directories - {"", ".", ".."}), sorted(set(names) - {"", ".", ".."})

    async def _forget_stale(self, nc: Client, files: dict[str, Got], alive: dict[str, ObjectInfo]) -> None:
        """Purge entries whose metadata never landed or is gone, once older than a save could still be at."""
        grace = timedelta(seconds=2 * self.bucket.stream.timeout)
        now = datetime.now(UTC)
        for name, got in files.items():
            if name not in alive and parse_time(got.time) + grace < now:
                self.entries.background(self._purge_quietly(nc, got))

    async def _purge_quietly(self, nc: Client, got: Got) -> None:
        try:
            await self._purge(nc, got)
        except NatsStorageError as error:
            logger.debug("listing index of bucket %r: purging %s: %s", self.bucket.name, got.subject, error)

    async def _rewitness(self, nc: Client, directory: str, marker: Got | None) -> bool:
        """Whether ``directory`` holds a live name, its marker's witness being gone; the marker then names it."""
        bucket = self.bucket.name
        tokens = index_tokens(directory[:-1])
        seq = 1
        under = _subject(ENTRY_ROOT.format(bucket=bucket), tokens) + ".>"
        while True:
            body = {"seq": seq, "next_by_subj": under, "batch": LOOKUP_BATCH, "max_bytes": BATCH_BYTES}
            page = await Answers(self.entries).ask(nc, body)
            if not page:
                return False
            names = [found["n"] for got in page if (found := _entry(got.data)) and found["n"].startswith(directory)]
            alive = await self.live(nc, names)
            witness = next((name for name in names if name in alive), None)
            if witness is not None:
                headers = {EXPECTED_SUBJECT_SEQ_HEADER: str(marker.seq if marker else 0)}
                ack = await self._send(
                    nc, self.directories, marker_subject(bucket, tokens), {"n": directory, "w": witness}, headers
                )
                refused = await self._outcome(ack)
                if refused is not None:  # a newer marker (a race), or refused: asked again next time
                    logger.debug("listing index of bucket %r: %s: %s", bucket, directory, refused)
                return True
            seq = page[-1].seq + 1

    async def count(self) -> int:
        """The names in the index: one per subject of ``NSI_<bucket>``, so its message count (one request)."""
        info = await self.entries.api(await self.bucket.connection(), f"STREAM.INFO.{self.entries.name}")
        return int(info["state"].get("messages", 0))

    async def has_directory(self, name: str) -> bool:
        """Whether some live object's name starts with ``name + "/"``: its marker and the marker's witness."""
        nc = await self.bucket.connection()
        bucket, directory = self.bucket.name, name + "/"
        tokens = index_tokens(name)
        if not directory_fits(bucket, tokens):
            home = _subject(ENTRY_ROOT.format(bucket=bucket), tokens[: overflow_home(bucket, tokens)])
            names = [
                found["n"]
                for got in await self._read(nc, self.entries, [home + f".{OVERFLOW}.*"])
                if (found := _entry(got.data)) and found["n"].startswith(directory)
            ]
            return bool(await self.live(nc, names))
        message = await self.directories.direct_get(nc, {"last_by_subj": marker_subject(bucket, tokens)})
        if message is None:
            return False
        found = _entry(message["data"])
        witness = (found or {}).get("w")
        if isinstance(witness, str) and witness.startswith(directory) and await self.bucket.info(witness) is not None:
            return True
        marker = Got(marker_subject(bucket, tokens), int(message["seq"]), str(message.get("time", "")), message["data"])
        return await self._rewitness(nc, directory, marker)


def _payload(name: str, nuid: str, size: int, mtime_ns: int, link: bool) -> dict[str, Any]:
    payload: dict[str, Any] = {"n": name, "u": nuid, "s": size, "t": mtime_ns}
    if link:
        payload["l"] = 1
    return payload


# -- one per process and bucket ------------------------------------------------------

_indexes: weakref.WeakKeyDictionary[Client, dict[str, ServerIndex]] = weakref.WeakKeyDictionary()
_warned: set[str] = set()


async def _found(bucket: Bucket) -> ServerIndex:
    """This process's view of the bucket's index, looked for again when unusable for ``INDEX_RECHECK`` s."""
    nc = await bucket.connection()
    indexes = _indexes.setdefault(nc, {})
    index = indexes.get(bucket.name)
    if index is None:
        index = indexes[bucket.name] = ServerIndex(bucket)
    if index.reason is not None and asyncio.get_running_loop().time() - index.checked >= INDEX_RECHECK:
        async with index._looking:
            if index.reason is not None and asyncio.get_running_loop().time() - index.checked >= INDEX_RECHECK:
                await index.look()
    index.bucket = bucket
    return index


async def of(bucket: Bucket) -> ServerIndex | None:
    """The bucket's index, current as of this call (``fresh()``), for a listing; None: list the old way.

    ``listing="process"`` never uses it; ``"server"`` raises ``Unusable`` instead of falling back.
    """
    if bucket.listing == "process":
        return None
    index = await _found(bucket)
    if index.reason is None:
        try:
            await index.fresh()
            return index
        except Unusable as why:
            index.reason = str(why)
            index.checked = asyncio.get_running_loop().time()
        except BucketNotFound:
            if not await bucket.exists():
                raise
            index.present, index.reason = False, "its streams are gone"
            index.checked = asyncio.get_running_loop().time()
    if bucket.listing == "server":
        raise Unusable(f"NATS bucket {bucket.name!r}: no server-side listing index ({index.reason})")
    await _warn(bucket, index.reason or "")
    return None


async def _warn(bucket: Bucket, reason: str) -> None:
    if bucket.name in _warned:
        return
    _warned.add(bucket.name)
    try:
        subjects = int((await bucket.stream_info())["state"].get("num_subjects", 0))
        holds = f"; this bucket's stream holds {subjects:,} subjects, about two per object"
    except NatsStorageError:
        holds = ""
    logger.warning(
        "NATS bucket %r: no server-side listing index (%s); listdir() and exists() of a missing name read every "
        "name into this process once (about 2 s and 24 MiB per 100,000 names%s). Run `manage.py natsos_index %s` "
        "with an account that may create streams %s and %s.",
        bucket.name,
        reason,
        holds,
        bucket.name,
        ENTRIES_STREAM.format(bucket=bucket.name),
        DIRECTORIES_STREAM.format(bucket=bucket.name),
    )


async def announce(bucket: Bucket, nc: Client, name: str, nuid: str, size: int) -> list[str]:
    """What a save sends to the index right before its metadata (nothing when the bucket has no index); the
    directories it marked, for ``marked`` after the metadata's acknowledgement."""
    if bucket.listing == "process":
        return []
    index = await _found(bucket)
    if not index.present:
        return []
    return await index.announce(nc, name, nuid, size)


def marked(bucket: Bucket, nc: Client, directories: list[str]) -> None:
    """The metadata sent after ``announce``'s markers was acknowledged: they reached the server before it."""
    index = _indexes.get(nc, {}).get(bucket.name) if directories else None
    if index is not None:
        index.mark(directories)


async def forget(bucket: Bucket) -> None:
    """Forget what this process knows of the bucket's index: it is looked for again at the next use."""
    _warned.discard(bucket.name)
    for indexes in list(_indexes.values()):
        indexes.pop(bucket.name, None)


async def drop(bucket: Bucket) -> None:
    """Delete the bucket's companion streams (the bucket is destroyed, or goes back to the old way)."""
    await ServerIndex(bucket).drop()
    await forget(bucket)


async def build(bucket: Bucket, progress: Callable[[int, int], None] | None = None) -> int:
    """Make the bucket's index, or finish the one a previous run left: one pass over every name's metadata,
    resumable (``build_after`` moves on batch by batch); the number of entries it holds.
    ``progress(names, left)`` after each batch."""
    nc = await bucket.connection()
    if not answers_batches(nc):
        since = ".".join(map(str, BATCH_GETS_SINCE))
        raise Unusable(f"nats-server {nc.connected_server_version} cannot hold a listing index ({since} or later can)")
    index = ServerIndex(bucket)
    objects = await bucket.stream_info()
    try:
        found = await index.state(nc)
    except BucketNotFound:
        found = None
    state = found[0] if found else {}
    if state.get("v") != FORMAT or state.get("created") != objects.get("created"):
        await index.create(empty=True, built=False)
        state = {}
    if not state.get("built"):
        upto = int(state.get("build_upto") or objects["state"].get("last_seq", 0))
        await index.set_state(nc, {"build_upto": upto}, moves="build_upto")
        after = int(state.get("build_after") or 0)
        await index.fold(
            nc, after, upto, lambda seq: index.set_state(nc, {"build_after": seq}, moves="build_after"), progress
        )
        await index.set_state(nc, {"folded": upto, "built": True})
    await forget(bucket)
    await index.fresh()
    return await index.count()


async def _build_after(index: ServerIndex, nc: Client, seq: int) -> None:
    await index.set_state(nc, {"build_after": seq}, moves="build_after")
