"""Copies on this host's disk of the large objects the view serves, sent with ``sendfile()``.

An object over 1 MiB (past what ``servecache`` keeps in memory) that the view serves is copied once, by a
background thread, into a directory of this host (``serve_files_dir``; by default ``<temp dir>/natsstorage-<uid>``)
under its SHA-256 digest: written to a temporary file, hashed as it is written, and renamed to its digest only
once that matched, so a copy is checked once and never seen half written; a fill that fails removes its file.
The processes of the host share the copies (of any bucket: one digest, one content). The view sends a copy only
while the object's current metadata names its digest (asked of the server, or current by the watch:
``servewatch``): a WSGI server hands the file to ``sendfile()`` (``wsgi.file_wrapper``, as gunicorn's), an ASGI
response reads it in blocks.

The directory holds ``serve_files`` bytes of copies at most, plus one copy being written per process: the least
recently used go first to make room, no object over an eighth of that is copied, and no copy is made that would
leave the disk with less than a tenth of it free.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import re
import stat
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from django.http import FileResponse, HttpResponseBase, StreamingHttpResponse

from natsstorage import loop
from natsstorage.exceptions import CorruptObject
from natsstorage.objectstore import Bucket, ObjectInfo
from natsstorage.servecache import LARGEST
from natsstorage.transfer import Download

if TYPE_CHECKING:
    from natsstorage.conf import Config

logger = logging.getLogger("natsstorage")

FILLING = ".filling-"  # prefix of a copy being written; one older than STALE was left by a process killed mid-fill
STALE = 3600.0
COPY_NAME = re.compile(r"[0-9a-f]{64}")
SHARE = 8  # no object over capacity / SHARE is copied: the directory holds several
MIN_FREE = 0.1  # share of the file system a copy must leave free
TOUCH_EVERY = 60.0  # seconds between two updates of a copy's mtime (its last use, for eviction)
TOUCHED = 4096  # copies whose last update this process remembers
PENDING = 16  # fills waiting per process at most; more are not asked for
BLOCK = 512 * 1024  # bytes read at a time when a file is not handed to sendfile()
HOPS = 8  # chunks asked per hop to the NATS loop while filling


class DiskCopies:
    """The checked copies in ``directory``, ``capacity`` bytes at most."""

    def __init__(self, directory: Path, capacity: int) -> None:
        self.directory = directory
        self.capacity = capacity
        self.filling: set[str] = set()  # digests being copied by this process
        self.touched: dict[str, float] = {}
        self.lock = threading.Lock()

    def takes(self, info: ObjectInfo) -> bool:
        return LARGEST < info.size <= self.capacity // SHARE and info.link is None and len(info.sha256) == 32

    def path(self, info: ObjectInfo) -> Path | None:
        """The copy of ``info``'s object, if this host has it."""
        digest = info.sha256.hex()
        path = self.directory / digest
        try:
            if os.stat(path).st_size != info.size:
                return None
        except OSError:
            return None
        now = time.monotonic()
        if now - self.touched.get(digest, 0.0) > TOUCH_EVERY:
            if len(self.touched) >= TOUCHED:
                self.touched.clear()
            self.touched[digest] = now
            with contextlib.suppress(OSError):
                os.utime(path)
        return path

    def fill_soon(self, bucket: Bucket, info: ObjectInfo) -> None:
        """Copy ``info``'s object in the background, unless it is under way or too many are."""
        digest = info.sha256.hex()
        with self.lock:
            if digest in self.filling or len(self.filling) >= PENDING:
                return
            self.filling.add(digest)
        _worker().put(lambda: self._fill(bucket, info))

    def _fill(self, bucket: Bucket, info: ObjectInfo) -> None:
        digest = info.sha256.hex()
        try:
            if not (self.directory / digest).exists() and self._room_for(info.size):
                self._copy(bucket, info, self.directory / digest)
        except Exception as error:  # noqa: BLE001 - a copy not made: the object is served from the bucket
            logger.warning("no disk copy of %r of bucket %r: %s", info.name, bucket.name, error)
        finally:
            with self.lock:
                self.filling.discard(digest)

    def _copy(self, bucket: Bucket, info: ObjectInfo, target: Path) -> None:
        descriptor, temporary = tempfile.mkstemp(dir=self.directory, prefix=FILLING)
        try:
            with os.fdopen(descriptor, "wb") as file:
                download = loop.run(Download.begin(bucket, info))
                try:  # (the download checks the size and the digest at the last chunk: CorruptObject)
                    while download.chunks < info.chunks:
                        for chunk in loop.run(download.read_many(HOPS)):
                            file.write(chunk)
                finally:
                    if download.receiving:
                        loop.run(download.close())
            os.replace(temporary, target)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise

    def _room_for(self, size: int) -> bool:
        """Make room for ``size`` more bytes (least recently used copies first); whether there is."""
        copies, held = [], 0
        for entry in os.scandir(self.directory):
            with contextlib.suppress(OSError):
                found = entry.stat(follow_symlinks=False)
                if COPY_NAME.fullmatch(entry.name) and stat.S_ISREG(found.st_mode):
                    copies.append((found.st_mtime, found.st_size, entry.path))
                    held += found.st_size
                elif entry.name.startswith(FILLING) and time.time() - found.st_mtime > STALE:
                    os.unlink(entry.path)
        for _, copy_size, path in sorted(copies):
            if held + size <= self.capacity:
                break
            with contextlib.suppress(FileNotFoundError):  # another process removed it first
                os.unlink(path)
            held -= copy_size
        disk = os.statvfs(self.directory)
        return held + size <= self.capacity and (disk.f_bavail - disk.f_blocks * MIN_FREE) * disk.f_frsize > size


class Slice:
    """``length`` bytes of an open copy from ``start``: read in blocks (an async iterator of them, for ASGI), or
    handed to ``sendfile()``, which sends Content-Length bytes from the descriptor's position (gunicorn). Open from
    the start: a copy another process evicts meanwhile is still read whole."""

    def __init__(self, file: BinaryIO, start: int, length: int) -> None:
        self.file, self.left = file, length
        file.seek(start)

    def fileno(self) -> int:
        return self.file.fileno()

    def read(self, size: int = -1) -> bytes:
        data = self.file.read(self.left if size < 0 else min(size, self.left))
        if not data and self.left:
            raise CorruptObject(f"the disk copy {self.file.name} ended {self.left} bytes early")
        self.left -= len(data)
        return data

    async def __aiter__(self) -> AsyncIterator[bytes]:  # a block of the page cache per read
        while self.left > 0:
            yield self.read(BLOCK)

    def close(self) -> None:
        self.file.close()


def _copies_for(config: Config, info: ObjectInfo) -> DiskCopies | None:
    copies = of(config.serve_files_dir, config.serve_files)
    return copies if copies is not None and copies.takes(info) else None


def copy_for(config: Config, info: ObjectInfo) -> Path | None:
    """The checked copy of ``info``'s object on this host's disk, for a storage's ``config``, if there is one."""
    copies = _copies_for(config, info)
    return None if copies is None else copies.path(info)


def fill_for(config: Config, bucket: Bucket, info: ObjectInfo) -> None:
    """Have the copy of ``info``'s object made soon: a response is reading its bytes from the bucket (not a HEAD
    or a 304, which read none: a crawler's or a revalidating cache's would fill the space)."""
    copies = _copies_for(config, info)
    if copies is not None:
        copies.fill_soon(bucket, info)


def response(
    path: Path, size: int, start: int, length: int, status: int, headers: Mapping[str, str | None], *, asgi: bool
) -> HttpResponseBase | None:
    """The response sending ``length`` bytes of the copy at ``path`` from ``start``; None when it is gone."""
    try:
        file = open(path, "rb")  # noqa: SIM115 - closed by Slice.close(), which the response calls
    except OSError:
        return None
    if os.fstat(file.fileno()).st_size != size:
        file.close()
        return None
    part = Slice(file, start, length)
    sent: HttpResponseBase
    if asgi:
        sent = StreamingHttpResponse(part, status=status, content_type=headers.get("Content-Type"))
    else:
        sent = FileResponse(part, status=status, content_type=headers.get("Content-Type"))
        sent.block_size = BLOCK
    for header, value in headers.items():
        if value is not None:
            sent[header] = value
    return sent


_copies: dict[tuple[str, int], DiskCopies | None] = {}
_making = threading.Lock()
_fills: queue.SimpleQueue[Callable[[], None]] | None = None  # what the copying thread has to do


def default_directory() -> str:
    return os.path.join(tempfile.gettempdir(), f"natsstorage-{os.getuid()}" if hasattr(os, "getuid") else "natsstorage")


def of(directory: str | None, capacity: int) -> DiskCopies | None:
    """The copies in ``directory`` (None: the default one), or None when off (``capacity`` 0) or the directory
    is not this user's alone (a warning says why, once)."""
    if capacity <= 0:
        return None
    key = (directory or default_directory(), capacity)
    if key in _copies:
        return _copies[key]
    with _making:
        if key not in _copies:
            _copies[key] = _usable(Path(key[0]), capacity)
        return _copies[key]


def _usable(directory: Path, capacity: int) -> DiskCopies | None:
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        found = os.lstat(directory)
    except OSError as error:
        logger.warning("natsstorage keeps no disk copies of large objects: %s", error)
        return None
    mine = not hasattr(os, "getuid") or found.st_uid == os.getuid()
    if not stat.S_ISDIR(found.st_mode) or not mine or found.st_mode & 0o022:
        logger.warning(
            "natsstorage keeps no disk copies of large objects in %s: it must be a directory of this user that "
            "no other can write to",
            directory,
        )
        return None
    return DiskCopies(directory, capacity)


def _worker() -> queue.SimpleQueue[Callable[[], None]]:
    """The queue of the thread that makes copies, one at a time (a daemon: exit never waits for a copy)."""
    global _fills
    with _making:
        if _fills is None:
            _fills = queue.SimpleQueue()
            threading.Thread(target=_copying, args=(_fills,), name="natsstorage-copies", daemon=True).start()
        return _fills


def _copying(fills: queue.SimpleQueue[Callable[[], None]]) -> None:
    while True:
        fills.get()()


def _forget_in_child() -> None:
    """After a fork the copying thread does not exist: the first fill starts one."""
    global _fills, _making
    _fills, _making = None, threading.Lock()
    for copies in _copies.values():
        if copies is not None:
            copies.filling.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_in_child)
