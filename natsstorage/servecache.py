"""What the view keeps of the objects it served lately, in each process: a hot object then costs no round trip.

For each name served lately it keeps the metadata the server gave, and the bytes of objects up to 1 MiB (read
and checked against the digest once; bigger ones may have a checked copy on disk, ``servefiles``). A kept entry
is served without asking the server while this process watches the bucket's metadata (``servewatch``): every
change any client makes drops the entry as it arrives, and so do this process's own saves and deletes, at once.
While no watch is live and caught up (starting, disconnected, a change missed), each request asks the server
for the metadata, and the entry serves only while that metadata names it (same chunks' id, digest and size).

A storage may also trust its entries for a few seconds without a watch (``serve_cache_trust``): an entry the
server named less than that long ago is then served without asking (eventual, as behind a CDN's ``max-age``).
"""

from __future__ import annotations

import os
import threading
import time
import weakref
from collections import OrderedDict
from dataclasses import dataclass
from typing import NamedTuple

from natsstorage import objectstore
from natsstorage.objectstore import Bucket, ObjectInfo

LARGEST = 1024 * 1024  # bytes of the largest object kept in memory: past that, the transfer is the cost
METADATA_BYTES = 1024  # what an entry without bytes (an object served from disk) counts against the capacity
RECENT = 4096  # names whose last change is remembered, so that a lookup under way when it came keeps nothing


@dataclass
class Copy:
    """An object's metadata as the server named it, and its bytes as read and checked (None: not in memory)."""

    info: ObjectInfo
    data: bytes | None
    named: float  # time.monotonic() when the server last named this entry
    watched: int | None = None  # the watch under which it was named: current while that watch is

    def serves(self, info: ObjectInfo) -> bool:
        """Whether ``info``, the metadata the server has now, is still this entry's object."""
        return (
            info.nuid == self.info.nuid
            and info.digest == self.info.digest
            and info.size == self.info.size
            and info.link is None
            and not info.deleted
        )

    @property
    def cost(self) -> int:
        return len(self.data) if self.data is not None else METADATA_BYTES


class Mark(NamedTuple):
    """Where the watch was when a lookup began: what it learns is kept only if nothing changed since."""

    watched: int | None
    changes: int


class ServeCache:
    """Entries of one bucket, least recently served dropped first, ``capacity`` bytes at most."""

    def __init__(self, capacity: int, bucket: str) -> None:
        self.capacity = capacity
        self.bucket = bucket
        self.held = 0  # bytes the entries count for
        self.copies: OrderedDict[str, Copy] = OrderedDict()
        self.lock = threading.Lock()  # the loop keeps and forgets; request threads read
        self.watched: int | None = None  # the live watch's number (servewatch); None: none live and caught up
        self.changes = 0  # changes seen (by the watch or written here)
        self.recent: OrderedDict[str, int] = OrderedDict()  # name -> ``changes`` at its last change
        self.floor = 0  # ``changes`` of the newest change no longer in ``recent``
        self.used = time.monotonic()  # when a request last looked here (the watch stops when nobody does)
        self.follower: object = None  # servewatch's task for this cache, on the loop

    def get(self, name: str) -> Copy | None:
        with self.lock:
            copy = self.copies.get(name)
            if copy is not None:
                self.copies.move_to_end(name)
            return copy

    def current(self, name: str, trust: float = 0) -> Copy | None:
        """The entry of ``name`` if it may be served without asking the server: the live watch named it, or
        (``trust`` seconds) the server named it lately."""
        self.used = time.monotonic()
        copy = self.get(name)
        if copy is None:
            return None
        if copy.watched is not None and copy.watched == self.watched:
            return copy
        return copy if trust and time.monotonic() - copy.named < trust else None

    def mark(self) -> Mark:
        with self.lock:
            return Mark(self.watched, self.changes)

    def takes(self, info: ObjectInfo) -> bool:
        """Whether the bytes of ``info``'s object would be kept."""
        return 0 < info.size <= min(LARGEST, self.capacity) and info.link is None

    def keep(self, name: str, info: ObjectInfo, chunks: list[bytes] | None, mark: Mark) -> None:
        """Keep ``info`` and, with ``chunks``, the object's bytes (all of them: read, so checked against its
        digest), unless ``name`` changed since ``mark``: what was read may be older than that change."""
        data = None if chunks is None else b"".join(chunks)  # one chunk of bytes: that very object, no copy
        with self.lock:
            self._drop(name)
            if info.link is not None or info.deleted or self._changed_since(name, mark):
                return
            if data is not None and (not self.takes(info) or len(data) != info.size):
                return
            copy = Copy(info, data, time.monotonic(), mark.watched if mark.watched == self.watched else None)
            if copy.cost > self.capacity:
                return
            while self.held + copy.cost > self.capacity:
                self._drop(next(iter(self.copies)))  # the least recently served
            self.copies[name] = copy
            self.held += copy.cost

    def confirm(self, copy: Copy, mark: Mark) -> None:
        """The server named ``copy`` again, in a lookup begun at ``mark``."""
        with self.lock:
            copy.named = time.monotonic()
            if mark.watched == self.watched and not self._changed_since(copy.info.name, mark):
                copy.watched = mark.watched

    def changed(self, name: str) -> None:
        """``name`` changed (the watch says so, or this process wrote it): its entry goes."""
        with self.lock:
            self._drop(name)
            self.changes += 1
            self.recent[name] = self.changes
            self.recent.move_to_end(name)
            if len(self.recent) > RECENT:
                self.floor = self.recent.popitem(last=False)[1]

    def watching(self, number: int | None) -> None:
        """A watch is live and caught up (``number``), or none is (None): entries named before count for nothing."""
        with self.lock:
            self.watched = number

    def forget(self, name: str) -> None:
        with self.lock:
            self._drop(name)

    def _changed_since(self, name: str, mark: Mark) -> bool:
        return self.recent.get(name, 0) > mark.changes or self.floor > mark.changes

    def _drop(self, name: str) -> None:
        copy = self.copies.pop(name, None)
        if copy is not None:
            self.held -= copy.cost


# One per bucket handle (a storage's ``bucket``, made again when its settings change), gone with it.
_caches: weakref.WeakKeyDictionary[Bucket, ServeCache] = weakref.WeakKeyDictionary()
_making = threading.Lock()


def of(bucket: Bucket, capacity: int) -> ServeCache:
    """The cache of ``bucket``'s entries in this process (``capacity`` 0: one that keeps none)."""
    cache = _caches.get(bucket)
    if cache is not None:
        return cache
    with _making:
        cache = _caches.get(bucket)
        if cache is None:
            cache = _caches[bucket] = ServeCache(capacity, bucket.name)
        return cache


def _written(bucket: str, name: str) -> None:
    """This process changed ``name`` in ``bucket`` (through any storage): its entries go at once."""
    with _making:
        caches = list(_caches.values())
    for cache in caches:
        if cache.bucket == bucket:
            cache.changed(name)


def _forget_in_child() -> None:
    """After a fork no watch runs in the child (its loop is new): no entry counts until one does."""
    global _making
    _making = threading.Lock()
    for cache in list(_caches.values()):
        cache.watched, cache.follower, cache.lock = None, None, threading.Lock()


objectstore.WRITTEN.append(_written)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_in_child)
