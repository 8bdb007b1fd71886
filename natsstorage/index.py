"""A bucket's names in this process's memory, kept current by a watch: listings that cost what they return.

The Object Store keeps names only base64-encoded in subjects, so the server
cannot list a directory; reading every name's metadata for each listing costs
the whole bucket. An ``Index`` reads them once (the first time a process
lists the bucket) and then follows every change through a watch of the
metadata subjects. Each answer is strongly consistent: ``fresh()`` asks the
stream leader for the first metadata change after the last one applied (up
to the stream's last message as the call starts) and waits until it is
applied, until there is none, so whatever any process stored before the
call is in the answer. When the consumer is gone (a server restart, a
cluster failover) the watch starts again right after the last change
applied, and nothing is answered until it has caught up.

An index nobody looks at for ``listing_idle`` seconds (an option; 10 minutes) is
dropped: its watch stops and its memory is freed, so a process that once showed a
bucket (the admin's status page shows every bucket) keeps no consumer on the server
and no names for it; the next look reads the names again.

Memory: about ``ENTRY_BYTES`` per live name, name included (measured at 100,000 and 1,000,000 names
of about 15 characters, bench/run.py). The first look reads every name's metadata: about 2 s per
100,000 names on a 2-core machine; the timeout bounds the wait for progress, not the whole look.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
import weakref
from bisect import bisect_left, insort
from collections.abc import AsyncGenerator, Collection, Iterator
from datetime import UTC, datetime
from functools import partial
from operator import attrgetter
from typing import NamedTuple

import nats
from nats.aio.client import Client

from natsstorage import listingindex, listingpages
from natsstorage.background import cancel_and_wait
from natsstorage.exceptions import CorruptObject, NatsUnavailable
from natsstorage.objectstore import ALL_META, Bucket, BucketStatus, ObjectInfo, Watch

logger = logging.getLogger("natsstorage")
ENTRY_BYTES = 250  # an Entry, its name (of ~15 characters) and datetime, a dict slot, a place in the sorted list
LAST_CHARACTER = "\U0010ffff"  # prefix + this sorts after every name that starts with prefix
SKIP_DIRECTORY = "0"  # the character after "/": names from prefix + "0" on are past the directory prefix + "/"
# Seconds a watch may have changes waiting and deliver none before it is started again: a healthy
# one delivers at once (and sends a heartbeat every WATCH_HEARTBEAT even when idle).
STALLED = 1.0
# Names a directory listing never returns: walking a bucket other clients wrote must end.
NOT_ENTRIES = frozenset(("", ".", ".."))


class Entry(NamedTuple):
    """What listings need of one object; the rest is a metadata read away.

    A tuple of atoms: the garbage collector stops tracking it, so a million of them cost no
    collection time.
    """

    name: str
    size: int
    mtime: datetime
    is_link: bool


class Page(NamedTuple):
    """One page of a listing, and the count and total size of all it is a page of."""

    entries: list[Entry]
    total: int
    total_size: int | None  # None: not known without reading every entry (a page by name from the server)


class Index:
    """The live objects of one bucket, as of ``fresh()``; runs on the NATS loop."""

    def __init__(self, bucket: Bucket) -> None:
        self.bucket = bucket
        self.entries: dict[str, Entry] = {}
        self.size = 0  # of all entries, for the admin's footer without a walk
        self.applied = 0  # the stream sequence of the last change applied
        self._sorted: list[str] | None = None  # the names in order, made at the first listing
        self._watch: Watch | None = None
        self._task: asyncio.Task[None] | None = None
        self._moved = asyncio.Event()  # set each time ``applied`` moves on
        self._starting = asyncio.Lock()
        self._created: str | None = None  # when the stream was made: tells a bucket made again
        self.looked = asyncio.get_running_loop().time()  # when a caller last asked for the index
        self.idle = bucket.listing_idle  # seconds unlooked at before it is dropped; None: never
        self.looking = 0  # callers inside of(): it is not dropped under them
        self.closed = False  # dropped or forgotten: its watch is never started again
        self._dropping: asyncio.TimerHandle | None = None

    @classmethod
    async def of(cls, bucket: Bucket) -> Index:
        """The index of ``bucket`` on its connection, made (and filled) on first use."""
        return await bucket.again_if_gone(partial(cls._of, bucket))

    @classmethod
    async def _of(cls, bucket: Bucket) -> Index:
        nc = await bucket.connection()
        indexes = _indexes.setdefault(nc, {})
        index = indexes.get(bucket.name)
        if index is None:
            index = indexes[bucket.name] = cls(bucket)
            index._drop_when_idle(indexes)
        elif index.idle is not None and (bucket.listing_idle is None or bucket.listing_idle > index.idle):
            index.idle = bucket.listing_idle  # storages of one bucket asking for different times: the longest
        index.looking += 1
        try:
            await index.fresh()
        finally:
            index.looking -= 1
            index.looked = asyncio.get_running_loop().time()
        return index

    def _drop_when_idle(self, indexes: dict[str, Index]) -> None:
        """Drop this index from ``indexes`` and stop its watch once nobody has looked at it for ``idle`` s."""
        if self.idle is None:
            self._dropping = None
            return
        loop = asyncio.get_running_loop()
        unlooked = 0.0 if self.looking else loop.time() - self.looked
        if unlooked < self.idle:
            self._dropping = loop.call_later(self.idle - unlooked, self._drop_when_idle, indexes)
            return
        if indexes.get(self.bucket.name) is self:
            del indexes[self.bucket.name]
        self.bucket.stream.background(self._dropped())

    async def _dropped(self) -> None:
        try:
            await self.close()
        except (nats.errors.Error, OSError) as error:  # the consumer's inactive threshold ends it anyway
            logger.debug("listing index of bucket %r: stopping its watch: %s", self.bucket.name, error)

    async def fresh(self) -> None:
        """Return once every metadata change stored before this call has been applied."""
        nc = await self.bucket.connection()
        info = await self.bucket.stream.api(nc, f"STREAM.INFO.{self.bucket.stream.name}")
        last = int(info.get("state", {}).get("last_seq", 0))  # every change stored before this call is at or before it
        watch = await self._running(instead_of=self._watch if info.get("created") != self._created else None)
        while (target := await self._unapplied(nc, last)) is not None:
            watch = await self._caught_up(watch, target)

    async def _unapplied(self, nc: Client, last: int) -> int | None:
        """The sequence of the first metadata change after those applied, up to ``last``; None when there is
        none. Asked of the stream leader, from where the watch is: it costs what changed since, not the bucket
        (the newest message of all the metadata subjects costs a walk of every subject on the server)."""
        if self.applied >= last:
            return None
        found = await self.bucket.stream.get_message(
            nc, {"seq": self.applied + 1, "next_by_subj": ALL_META.format(bucket=self.bucket.name)}
        )
        return None if found is None or int(found["seq"]) > last else int(found["seq"])

    async def _caught_up(self, watch: Watch, target: int) -> Watch:
        """Wait until the change at ``target`` is applied; the watch, started again if it had to be."""
        loop = asyncio.get_running_loop()
        progress = (watch, watch.delivered, loop.time())
        deadline = loop.time() + self.bucket.stream.timeout  # moved on by progress: a first look takes its time
        while self.applied < target:
            if self._task is None or self._task.done():
                watch = await self._running(instead_of=watch)  # it ended (the server went quiet): resume
                progress = (watch, watch.delivered, loop.time())
            if (watch, watch.delivered) != progress[:2]:
                progress = (watch, watch.delivered, loop.time())
                deadline = progress[2] + self.bucket.stream.timeout
            elif loop.time() - progress[2] > STALLED:
                # Changes wait and none came: its pull request died with a server. Resume elsewhere.
                watch = await self._running(instead_of=watch)
                progress = (watch, watch.delivered, loop.time())
                continue
            self._moved.clear()
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise NatsUnavailable(f"NATS bucket {self.bucket.name!r}: the listing index did not catch up in time")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._moved.wait(), min(remaining, 0.05))
        return watch

    async def _running(self, instead_of: Watch | None = None) -> Watch:
        """The watch, started again if it stopped (or is ``instead_of``); one start at a time."""
        async with self._starting:
            if self.closed:
                raise NatsUnavailable(f"NATS bucket {self.bucket.name!r}: its listing index was dropped meanwhile")
            if self._watch is None or self._watch is instead_of or self._task is None or self._task.done():
                await self._start()
            assert self._watch is not None
            return self._watch

    async def _start(self) -> None:
        """(Re)start the watch: from the start, or right after the last change applied.

        A bucket destroyed and made again meanwhile is another stream: then from the start.
        """
        await self._stop_watching()
        nc = await self.bucket.connection()
        created = (await self.bucket.stream.api(nc, f"STREAM.INFO.{self.bucket.stream.name}")).get("created")
        if created != self._created:
            self._reset()
            self._created = created
        self._watch = self.bucket.watch(history=True, start_seq=self.applied + 1 if self.applied else None)
        await self._watch.start()
        self._task = asyncio.get_running_loop().create_task(self._follow(self._watch))

    async def _follow(self, watch: Watch) -> None:
        while watch is self._watch:  # else stopped, though a cancellation did not end it
            try:
                change = await watch.next()
            except NatsUnavailable:
                return  # fresh() sees the task done and starts again
            except CorruptObject as error:  # metadata no client could read: nothing to list
                logger.warning("listing index of bucket %r: %s", self.bucket.name, error)
                self.applied = (watch.next_seq or 1) - 1
                self._moved.set()
                continue
            if watch is self._watch:
                self._apply(change, watch.next_seq or 0)

    def _apply(self, info: ObjectInfo, next_seq: int) -> None:
        known = self.entries.get(info.name)
        if known is not None:
            self.size -= known.size
        if info.deleted:
            if known:
                del self.entries[info.name]
                if self._sorted is not None:
                    del self._sorted[bisect_left(self._sorted, info.name)]
        else:
            self.entries[info.name] = Entry(info.name, info.size, info.mtime, info.is_link)
            self.size += info.size
            if not known and self._sorted is not None:
                insort(self._sorted, info.name)
        self.applied = next_seq - 1
        self._moved.set()

    def _reset(self) -> None:
        self.entries.clear()
        self.size = 0
        self._sorted = None
        self.applied = 0

    async def close(self) -> None:
        """Stop keeping the index current, for good (once a watch being started has started, so it is stopped)."""
        self.closed = True
        if self._dropping is not None:
            self._dropping.cancel()
            self._dropping = None
        async with self._starting:
            await self._stop_watching()

    async def _stop_watching(self) -> None:
        watch, self._watch = self._watch, None  # first: a follower its cancellation did not end sees it and ends
        task, self._task = self._task, None
        if task is not None:
            await cancel_and_wait(task)
        if watch is not None:
            await watch.close()

    # -- answers (call ``fresh()`` first) -------------------------------------------

    def _names(self) -> list[str]:
        if self._sorted is None:
            self._sorted = sorted(self.entries)
        return self._sorted

    def _live(self, entry: Entry) -> bool:
        return not self.bucket.expired(entry.mtime)

    def under(self, prefix: str) -> Iterator[Entry]:
        """Every live object whose name starts with ``prefix``, by name."""
        names = self._names()
        for i in range(bisect_left(names, prefix), len(names)):
            name = names[i]
            if not name.startswith(prefix):
                return
            entry = self.entries[name]
            if self._live(entry):
                yield entry

    def listdir(self, prefix: str) -> tuple[list[str], list[str]]:
        """The directories and files right under ``prefix`` (``""`` or ending in ``/``).

        Each subdirectory costs one step whatever it holds: the scan jumps past it.
        """
        names = self._names()
        directories: list[str] = []
        files: list[str] = []
        i = bisect_left(names, prefix)
        while i < len(names) and names[i].startswith(prefix):
            head, slash, _ = names[i][len(prefix) :].partition("/")
            if slash:
                if head not in NOT_ENTRIES:
                    directories.append(head)
                i = bisect_left(names, prefix + head + SKIP_DIRECTORY, i + 1)
                continue
            if head not in NOT_ENTRIES and self._live(self.entries[names[i]]):
                files.append(head)
            i += 1
        return directories, files

    def page(
        self, prefix: str, *, order: str = "name", descending: bool = False, offset: int = 0, limit: int = 100
    ) -> Page:
        """One page of the live objects under ``prefix`` by ``order`` (a field of ``Entry``), and how many
        there are: by name a slice of the sorted names; by size or time a partial sort, not a full one.
        The whole bucket's count and size are kept as changes come; a prefix's cost what it holds."""
        names, expiring = self._names(), self.bucket.ttl is not None
        low, high = bisect_left(names, prefix), bisect_left(names, prefix + LAST_CHARACTER)
        whole = high - low == len(names) and not expiring
        entries: Collection[Entry] = self.entries.values()
        if high - low != len(names):
            entries = [self.entries[name] for name in names[low:high]]
        if expiring:
            entries = [entry for entry in entries if self._live(entry)]
        size = self.size if whole else sum(entry.size for entry in entries)
        if order == "name" and not expiring:  # the names are in order already: a slice
            start, stop = (high - offset - limit, high - offset) if descending else (low + offset, low + offset + limit)
            window = names[max(low, start) : max(low, min(high, stop))]
            return Page([self.entries[name] for name in (window[::-1] if descending else window)], high - low, size)
        pick = heapq.nlargest if descending else heapq.nsmallest
        return Page(pick(offset + limit, entries, key=attrgetter(order))[offset:], len(entries), size)

    def has_under(self, prefix: str) -> bool:
        return next(self.under(prefix), None) is not None

    def count(self) -> int:
        if self.bucket.ttl is None:
            return len(self.entries)
        return sum(1 for entry in self.entries.values() if self._live(entry))


async def objects(bucket: Bucket, prefix: str) -> AsyncGenerator[list[ObjectInfo], None]:
    """The live objects whose names start with ``prefix``, by name, a batch at a time: from the bucket's index
    on the server (memory: a directory's entries, not the bucket's), else every name's metadata, read and sorted."""
    server = await listingindex.of(bucket)
    if server is None:
        yield await bucket.sorted_objects(prefix)
        return
    async for batch in listingpages.objects(server, prefix):
        yield batch


async def listing(bucket: Bucket, prefix: str) -> AsyncGenerator[list[Entry], None]:
    """``objects``' names, sizes, times and link-ness; without the server's index, from this process's."""
    server = await listingindex.of(bucket)
    if server is None:
        yield list((await Index.of(bucket)).under(prefix))
        return
    async for batch in listingpages.objects(server, prefix):
        yield [Entry(info.name, info.size, info.mtime, info.link is not None) for info in batch]


async def page(bucket: Bucket, prefix: str, order: str, descending: bool, offset: int, limit: int) -> Page:
    """From the bucket's index on the server (bounded: ``TooBroad`` past its bounds), else this process's."""
    server = await listingindex.of(bucket)
    if server is not None:
        rows, total, size = await listingpages.page(server, prefix, order, descending, offset, limit)
        entries = [
            Entry(row.name, row.size, datetime.fromtimestamp(row.mtime_ns / 1e9, UTC), row.is_link) for row in rows
        ]
        return Page(entries, total, size)
    found = await Index.of(bucket)
    return found.page(prefix, order=order, descending=descending, offset=offset, limit=limit)


async def status(bucket: Bucket) -> BucketStatus:
    """The bucket's figures, its live objects counted by its index on the server (entries not yet found stale
    included), else by this process's."""
    info = await bucket.stream_info()
    server = await listingindex.of(bucket)
    if server is not None:
        return BucketStatus.from_stream_info(bucket.name, info, await server.count())
    return BucketStatus.from_stream_info(bucket.name, info, (await Index.of(bucket)).count())


_indexes: weakref.WeakKeyDictionary[Client, dict[str, Index]] = weakref.WeakKeyDictionary()


async def forget(bucket: Bucket) -> None:
    """Drop the bucket's index (it was destroyed)."""
    for indexes in list(_indexes.values()):
        index = indexes.pop(bucket.name, None)
        if index is not None:
            await index.close()
