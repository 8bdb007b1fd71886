"""Reads of a bucket's listing index (docs/design-listing.md, "The answers, one by one"): whether it is there and
usable, ``fresh()`` before each listing, ``listdir``, directory ``exists``, the count, each row checked against
the Object Store's metadata. Asyncio, Django-free."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from nats.aio.client import Client

from natsstorage.delivery import (
    BATCH_BYTES,
    BATCH_GETS_SINCE,
    Answers,
    Got,
    TooMany,
    answers_batches,
    every_of,
    last_of,
)
from natsstorage.exceptions import BucketNotFound, JetStreamError, NatsStorageError, NatsUnavailable, Unusable
from natsstorage.indexsubjects import (
    ENTRY_ROOT,
    FORMAT,
    OVERFLOW,
    directory_fits,
    entry_subject,
    marker_subject,
    overflow_home,
    parse_entry,
    subject,
)
from natsstorage.indexwrites import IndexStreams
from natsstorage.jetstream import EXPECTED_SUBJECT_SEQ_HEADER, Stream
from natsstorage.names import index_tokens
from natsstorage.objectstore import ObjectInfo, parse_time

INDEX_RECHECK = 60.0  # seconds an index found unusable is not looked for again
UNANSWERED_RECHECK = 3600.0  # the same when looking for it went unanswered (a permission the account lacks)
LOOKUP_BATCH = 256  # entries read at a time when looking for a directory's new witness

logger = logging.getLogger("natsstorage")


class ServerIndex(IndexStreams):
    """The server-side index of one bucket, as this process found it, and its answers; runs on the NATS loop."""

    async def look(self) -> None:
        """Find out whether the index is there (and make it for a bucket this process made)."""
        nc = await self.bucket.connection()
        self.checked = asyncio.get_running_loop().time()
        self.present, self.reason = False, None
        if not answers_batches(nc):
            since = ".".join(map(str, BATCH_GETS_SINCE))
            self.reason = (
                f"nats-server {nc.connected_server_version} answers no multi_last requests ({since} or later does)"
            )
            return
        try:
            await asyncio.gather(self.entries.connection(), self.directories.connection())
        except (NatsUnavailable, JetStreamError) as error:
            if not isinstance(error, BucketNotFound):
                self.reason = f"looking for stream {self.entries.name} failed: {error}"
                # No answer from one server: a permission the account lacks, say; each look costs a timeout, so
                # seldom. In a cluster, the index's server being down is likelier: soon. (So is a refusal, such as
                # "stream is offline".)
                if isinstance(error, NatsUnavailable) and not self.bucket.stream.replicated:
                    self.checked += UNANSWERED_RECHECK - INDEX_RECHECK
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
        last = self.as_of = int(objects["state"].get("last_seq", 0))
        folded = int(found[0].get("folded") or 0)
        if folded < last:
            await self.fold(nc, folded, last, lambda upto: self.set_state(nc, {"folded": upto}))

    async def live(self, nc: Client, names: list[str]) -> dict[str, ObjectInfo]:
        """The live metadata of each of ``names`` that has one: one ``multi_last`` per 1,024 names."""
        found = await self.bucket.multi_last(names, as_of=self.as_of)
        return {name: info for name, info in found.items() if self.bucket.live(info)}

    async def read(self, nc: Client, stream: Stream, filters: list[str]) -> list[Got]:
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
        entry_root = subject(ENTRY_ROOT.format(bucket=bucket), tokens)
        if directory_fits(bucket, tokens):
            entries, markers = await asyncio.gather(
                self.read(nc, self.entries, [entry_root + ".*", entry_root + f".{OVERFLOW}.*"]),
                self.read(nc, self.directories, [marker_subject(bucket, tokens) + ".*"]),
            )
        else:
            home = subject(ENTRY_ROOT.format(bucket=bucket), tokens[: overflow_home(bucket, tokens)])
            entries, markers = await self.read(nc, self.entries, [home + f".{OVERFLOW}.*"]), []
        files: dict[str, Got] = {}
        for got in entries:
            found = parse_entry(got.data)
            if found is not None and found["n"].startswith(prefix) and entry_subject(bucket, found["n"]) == got.subject:
                files[found["n"]] = got
        witnesses: dict[str, tuple[str, Got]] = {}  # a subdirectory -> its marker's witness, and the marker
        for got in markers:
            found = parse_entry(got.data)
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
        under = subject(ENTRY_ROOT.format(bucket=bucket), tokens) + ".>"
        while True:
            body = {"seq": seq, "next_by_subj": under, "batch": LOOKUP_BATCH, "max_bytes": BATCH_BYTES}
            page = await Answers(self.entries).ask(nc, body)
            if not page:
                return False
            names = [
                found["n"] for got in page if (found := parse_entry(got.data)) and found["n"].startswith(directory)
            ]
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
            home = subject(ENTRY_ROOT.format(bucket=bucket), tokens[: overflow_home(bucket, tokens)])
            names = [
                found["n"]
                for got in await self.read(nc, self.entries, [home + f".{OVERFLOW}.*"])
                if (found := parse_entry(got.data)) and found["n"].startswith(directory)
            ]
            return bool(await self.live(nc, names))
        message = await self.directories.direct_get(nc, {"last_by_subj": marker_subject(bucket, tokens)})
        if message is None:
            return False
        found = parse_entry(message["data"])
        witness = (found or {}).get("w")
        if isinstance(witness, str) and witness.startswith(directory) and await self.bucket.info(witness) is not None:
            return True
        marker = Got(marker_subject(bucket, tokens), int(message["seq"]), str(message.get("time", "")), message["data"])
        return await self._rewitness(nc, directory, marker)
