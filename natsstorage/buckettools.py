"""``BucketTools(storage)``: a storage's bucket as a whole, for the admin, the commands and tests.

Django's ``Storage`` API names files under the storage's ``location`` and only by names Django code may
use; these tools name objects as the bucket does (any name another client wrote, links as themselves),
and see the bucket's figures, listings, changes and leftovers.
"""

from __future__ import annotations

import errno
from collections.abc import Callable, Iterator, Mapping
from datetime import timedelta
from functools import partial

from natsstorage import contenttypes, garbage, index, links, listingindex
from natsstorage.changes import Changes
from natsstorage.files import NatsFile, ObjectStream
from natsstorage.garbage import OrphanChunks
from natsstorage.index import Entry, Page
from natsstorage.loop import iterate, run
from natsstorage.objectstore import Bucket, BucketStatus, ObjectInfo
from natsstorage.storage import NatsStorage, served_bucket


class BucketTools:
    """The bucket of ``storage`` (its connection and options), whatever its ``location``."""

    def __init__(self, storage: NatsStorage) -> None:
        self.storage = storage

    @property
    def bucket(self) -> Bucket:
        return self.storage.bucket

    def _missing(self, key: str) -> FileNotFoundError:
        """As ``NatsStorage`` raises it (and FileSystemStorage): ENOENT and the object's name."""
        where = f"No such file or directory in the NATS bucket {self.bucket.name!r}"
        return FileNotFoundError(errno.ENOENT, where, key)

    def status(self) -> BucketStatus:
        """The bucket's figures, as ``nats object status`` shows them; ``BucketNotFound`` if it is missing."""
        return run(index.status(self.bucket))

    def bucket_exists(self) -> bool:
        """Whether the bucket is on the server; never creates it."""
        return run(self.bucket.exists())

    def object_info(self, key: str) -> ObjectInfo:
        """The metadata stored under ``key``, whatever the name (a link's own, not followed)."""
        info = run(self.bucket.info(key))
        if info is None:
            raise self._missing(key)
        return info

    def object_infos(self, keys: list[str]) -> list[ObjectInfo | None]:
        """``object_info`` of many keys at once (None for each not there): a page of rows in one round trip."""
        return run(self.bucket.infos(keys))

    def open_object(self, key: str) -> NatsFile:
        """Read what is stored under ``key``, following a link, whatever the name: also names another
        client wrote that Django code may not use (control characters, ``..``)."""
        bucket, info, download, fetched = run(self.storage._open_for_reading(key, verbatim=True))
        return NatsFile(key, "rb", info=info, open_stream=partial(ObjectStream, bucket, info, download, fetched))

    def update_object(
        self,
        key: str,
        *,
        seq: int,
        description: str | None = None,
        headers: Mapping[str, list[str]] | None = None,
    ) -> ObjectInfo:
        """``update_meta`` of what is stored under ``key``, whatever the name, only if its metadata is still
        the version at ``seq`` (what an editor was shown); ``ObjectChanged`` when another writer came first."""
        if headers is not None:
            headers = contenttypes.in_headers(headers)
        info = run(self.bucket.update_meta(key, description=description, headers=headers, expected_seq=seq))
        if info is None:
            raise self._missing(key)
        return info

    def follow_link(
        self, link: ObjectInfo, buckets: Callable[[str], Bucket | None] | None = None
    ) -> tuple[Bucket, ObjectInfo]:
        """The bucket and metadata of what ``link`` names, followed once as nats.go does; ``buckets(name)``: the
        bucket a link into another one may lead to (default: one a storage of this project serves)."""
        return run(links.follow(self.bucket, link, buckets or served_bucket))

    def delete_object(self, key: str) -> bool:
        """Delete what is stored under ``key``, whatever the name; False when nothing was there."""
        return run(self.bucket.delete(key))

    def destroy(self) -> None:
        """Delete the bucket and every object in it, for good."""
        run(self.bucket.destroy())
        run(index.forget(self.bucket))
        run(listingindex.drop(self.bucket))  # its listing index's streams

    def build_index(self, progress: Callable[[int, int], None] | None = None) -> int:
        """Give the bucket its listing index on the server (or finish building it); the names it holds.
        ``progress(names, left)`` after each batch read. See ``manage.py natsos_index``."""
        return run(listingindex.build(self.bucket, progress))

    def drop_index(self) -> None:
        """Delete the bucket's listing index: storages list it the old way (every name in each process)."""
        run(listingindex.drop(self.bucket))

    def listing_page(
        self, prefix: str = "", *, order: str = "name", descending: bool = False, offset: int = 0, limit: int = 100
    ) -> Page:
        """One page of ``listing(prefix)`` sorted by ``order`` ("name", "size" or "mtime"), with the count
        and total size of all: what an admin page shows, without sorting the whole bucket. From the index on the
        server: ``total_size`` None for a page by name, ``TooBroad`` past ``listingpages``' bounds."""
        if order not in ("name", "size", "mtime"):
            raise ValueError(f"order by 'name', 'size' or 'mtime', not {order!r}")
        return run(index.page(self.bucket, prefix, order, descending, offset, limit))

    def listing(self, prefix: str = "") -> Iterator[Entry]:
        """Name, size, modified time and link-ness of the live objects whose names start with ``prefix``, by
        name, as the bucket's index on the server gives them, a batch at a time (else this process's index)."""
        return iterate(index.listing(self.bucket, prefix))

    def objects(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """The bucket's live objects whose names start with ``prefix``, by name, a batch at a time (without the
        index on the server: every name's metadata read, then sorted)."""
        return iterate(index.objects(self.bucket, prefix))

    def watch(self, *, history: bool = False) -> Changes:
        """Changes to the bucket's objects as they happen (``history``: each object's latest first)."""
        return Changes(self.bucket.watch(history=history))

    def orphans(self, *, min_age: timedelta) -> list[OrphanChunks]:
        """Chunks no object points to, untouched for ``min_age`` (left by writers that died mid-upload)."""
        return run(garbage.orphans(self.bucket, min_age=min_age))

    def purge_orphans(self, orphans: list[OrphanChunks]) -> int:
        """Remove what ``orphans`` found; the number of chunk messages removed."""
        return run(garbage.purge(self.bucket, orphans))
