"""The bytes of small objects the view served lately, kept in each process: a hot object then costs the view
its metadata alone.

Every request still asks the server for the object's metadata, so the next request after a save or a delete
in any process sees it; the bytes come from here only while that metadata names the copy held (same chunks'
id, digest and size). A copy is kept only once all its chunks were read and matched the digest, so nothing
unchecked is ever served from here, and each is checked once, not per request.

A storage may choose to trust its copies for a few seconds (``serve_cache_trust``): a copy the server named
less than that long ago is then served without asking, in the request's thread, so a save or a delete by
another process is seen only once that time is up (eventual, as behind a CDN's ``max-age``).
"""

from __future__ import annotations

import threading
import time
import weakref
from collections import OrderedDict
from dataclasses import dataclass

from natsstorage.objectstore import Bucket, ObjectInfo

LARGEST = 1024 * 1024  # bytes of the largest object kept: past that, the transfer, not the lookup, is the cost


@dataclass
class Copy:
    """An object's bytes as read and checked, with the metadata that names them."""

    info: ObjectInfo
    data: bytes
    named: float  # time.monotonic() when the server last named this copy

    def serves(self, info: ObjectInfo) -> bool:
        """Whether ``info``, the metadata the server has now, is still this copy's object."""
        return (
            info.nuid == self.info.nuid
            and info.digest == self.info.digest
            and info.size == len(self.data)
            and info.link is None
            and not info.deleted
        )


class ServeCache:
    """Copies of objects of one bucket, least recently served dropped first, ``capacity`` bytes at most."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.held = 0  # bytes of the copies kept
        self.copies: OrderedDict[str, Copy] = OrderedDict()
        self.lock = threading.Lock()  # the loop keeps and forgets; request threads read trusted copies

    def get(self, name: str) -> Copy | None:
        with self.lock:
            copy = self.copies.get(name)
            if copy is not None:
                self.copies.move_to_end(name)
            return copy

    def trusted(self, name: str, seconds: float) -> Copy | None:
        """The copy of ``name`` if the server named it less than ``seconds`` ago."""
        copy = self.get(name)
        return copy if copy is not None and time.monotonic() - copy.named < seconds else None

    def takes(self, info: ObjectInfo) -> bool:
        """Whether a copy of ``info``'s object would be kept."""
        return 0 < info.size <= min(LARGEST, self.capacity) and info.link is None

    def keep(self, name: str, info: ObjectInfo, chunks: list[bytes]) -> None:
        """Keep ``chunks`` if they are all of ``info``'s object (read, so checked against its digest)."""
        data = b"".join(chunks)  # one chunk of bytes: that very object, no copy
        with self.lock:
            self._drop(name)
            if not self.takes(info) or len(data) != info.size:
                return
            while self.held + info.size > self.capacity:
                self._drop(next(iter(self.copies)))  # the least recently served
            self.copies[name] = Copy(info, data, time.monotonic())
            self.held += info.size

    def forget(self, name: str) -> None:
        with self.lock:
            self._drop(name)

    def _drop(self, name: str) -> None:
        copy = self.copies.pop(name, None)
        if copy is not None:
            self.held -= len(copy.data)


# One per bucket handle (a storage's ``bucket``, made again when its settings change), gone with it.
_caches: weakref.WeakKeyDictionary[Bucket, ServeCache] = weakref.WeakKeyDictionary()
_making = threading.Lock()


def of(bucket: Bucket, capacity: int) -> ServeCache | None:
    """The cache of ``bucket``'s copies in this process (None when ``capacity`` is 0: none kept)."""
    if capacity <= 0:
        return None
    with _making:
        cache = _caches.get(bucket)
        if cache is None:
            cache = _caches[bucket] = ServeCache(capacity)
        return cache
