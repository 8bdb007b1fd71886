"""Django ``File`` objects that stream an object from or to the bucket, chunk by chunk."""

from __future__ import annotations

import asyncio
import io
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from types import TracebackType
from typing import IO, TYPE_CHECKING, Any

from django.core.files.base import File

from natsstorage import loop
from natsstorage.exceptions import CorruptObject
from natsstorage.jetstream import let_go
from natsstorage.objectstore import Bucket, ObjectInfo
from natsstorage.transfer import Download, Upload

CHUNKS_PER_HOP = 8  # chunks fetched per hop to the NATS loop, when they are already there

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

    _File = File[bytes]
else:
    _File = File


class ObjectStream(io.RawIOBase):
    """A read-only, seekable raw stream over one object; never holds more than one chunk."""

    def __init__(
        self, bucket: Bucket, info: ObjectInfo, download: Download | None = None, fetched: Iterable[bytes] = ()
    ) -> None:
        self.bucket = bucket
        self.info = info
        self.download = download  # the current one: where it started tells what a seek skipped
        self._chunk = memoryview(b"")
        self._ahead: deque[bytes] = deque(fetched)  # chunks already fetched, after self._chunk
        self._position = 0  # of the first byte of self._chunk

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def _next_chunk(self) -> bytes:
        if not self._ahead:
            if self.download is None:
                self.download = loop.run(Download.begin(self.bucket, self.info))
            self._ahead.extend(loop.run(self.download.read_many(CHUNKS_PER_HOP)))
        return self._ahead.popleft()

    def readinto(self, buffer: WriteableBuffer) -> int:
        if not self._chunk:
            if self._position >= self.info.size:
                return 0
            self._chunk = memoryview(self._next_chunk())
        target = memoryview(buffer).cast("B")
        count = min(len(target), len(self._chunk))
        target[:count] = self._chunk[:count]
        self._chunk = self._chunk[count:]
        self._position += count
        return count

    def readall(self) -> bytes:
        """The rest, each byte copied once (a lone chunk not at all): ``read()`` of a whole object.

        Written into a BytesIO, whose ``getvalue()`` hands over its buffer: each chunk goes once copied, so
        the heap reuses its memory. Joined at the end, they took twice the object's size at once, and the
        kernel's time to map fresh pages (100 MiB reads: 15% faster)."""
        first = bytes(self._chunk) if self._chunk else b""
        self._position += len(first)
        self._chunk = memoryview(b"")
        if not first and self._position < self.info.size:
            first = self._next_chunk()
            self._position += len(first)
        if not first or self._position >= self.info.size:
            return first
        whole = io.BytesIO()
        whole.write(first)
        del first
        while self._position < self.info.size and (chunk := self._next_chunk()):
            whole.write(chunk)
            self._position += len(chunk)
        return whole.getvalue()

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self.info.size}[whence]
        target = base + offset
        if target < 0:
            raise ValueError(f"negative seek position {target}")
        if self._position <= target <= self._position + len(self._chunk):
            self._chunk = self._chunk[target - self._position :]
            self._position = target
            return target
        self._close_download()
        self._ahead.clear()
        self._chunk = memoryview(b"")
        self._position = 0
        if target >= self.info.size:
            self._position = target
            return target
        # Start at the chunk that holds the target, then skip into it.
        self.download, self._position = loop.run(Download.at(self.bucket, self.info, target))
        while self._position < target:
            if not self._chunk:
                self._chunk = memoryview(self._next_chunk())
            step = min(len(self._chunk), target - self._position)
            self._chunk = self._chunk[step:]
            self._position += step
        return target

    def _close_download(self) -> None:
        if self.download is not None:
            download, self.download = self.download, None
            if download.receiving:  # closing only sends messages, nothing to wait for; safe from any thread
                loop.submit(download.close())

    def close(self) -> None:
        if not self.closed:
            self._close_download()
        super().close()


READ_MODES = {"rb": "rb", "r": "r", "br": "rb", "rt": "r", "tr": "r"}
WRITE_MODES = {"wb": "wb", "w": "w", "bw": "wb", "wt": "w", "tw": "w", "xb": "xb", "x": "x", "bx": "xb"}
SUPPORTED_MODES = "'rb', 'r', 'wb', 'w', 'xb' and 'x' (streamed), or 'r+b', 'w+b', 'ab', 'a+b' and their text forms"
PIECE_BYTES = 1024 * 1024  # what a writer hands to the NATS loop at once
PIECES_IN_FLIGHT = 3  # handed over and not yet written: bounds a writer's memory


def normal_mode(mode: str) -> str:
    """``mode`` spelled as ``READ_MODES``/``WRITE_MODES`` values; ValueError for what cannot be streamed."""
    found = READ_MODES.get(mode) or WRITE_MODES.get(mode)
    if found is None:
        raise ValueError(f"NatsStorage cannot open a file in mode {mode!r}. Use {SUPPORTED_MODES}.")
    return found


class ObjectSink(io.RawIOBase):
    """The writing end of an upload: pieces go to the NATS loop while the caller hashes and reads the next.

    At most ``PIECES_IN_FLIGHT`` pieces wait for the loop, so memory stays bounded whatever the
    size. ``drain`` waits until every byte is in the bucket's chunks; ``commit`` (called by
    ``close``) publishes the metadata that makes the object visible. Nothing is visible before.
    """

    def __init__(self, upload: Upload, commit: Callable[[ObjectSink], None] | None = None) -> None:
        self.upload = upload
        self._commit = commit
        self._writes: deque[loop.Call[None]] = deque()
        self._aborted = False

    def writable(self) -> bool:
        return True

    def write(self, data: WriteableBuffer | bytes) -> int:
        if self.closed:
            raise ValueError("write to a closed NatsStorage file")
        if self._aborted:
            return len(memoryview(data))  # an aborted write keeps nothing: what is still buffered goes nowhere
        piece = bytes(memoryview(data)[:PIECE_BYTES])  # the caller may reuse its buffer once we return
        self._writes.append(loop.submit(self.upload.write(piece)))
        self.upload.hash(piece)
        if len(self._writes) >= PIECES_IN_FLIGHT:
            loop.wait(self._writes.popleft())
        return len(piece)

    def drain(self) -> None:
        """Wait until every piece handed over is written (its chunks published)."""
        while self._writes:
            loop.wait(self._writes.popleft())

    def abort(self) -> None:
        """Send no more, and remove what was sent; the object never appears."""
        if not self._aborted:
            self._aborted = True
            for write in self._writes:
                write.cancel()
            self._writes.clear()
            loop.run(self.upload.abort())

    def close(self) -> None:
        if self.closed:
            return
        try:
            if not self._aborted and self._commit is not None:
                try:
                    self.drain()
                    self._commit(self)
                except BaseException:
                    self.abort()
                    raise
        finally:
            super().close()


class NatsFile(_File):
    """An object opened from the bucket: streamed reads (``rb``, or ``r`` as text), or a streamed write
    (``wb``, ``w``, ``xb``, ``x``) that appears in the bucket, whole, on ``close()``."""

    def __init__(
        self,
        name: str,
        mode: str,
        *,
        info: ObjectInfo | None = None,
        open_stream: Callable[[], ObjectStream] | None = None,
        open_sink: Callable[[], ObjectSink] | None = None,
        encoding: str | None = None,
        newline: str | None = None,
    ) -> None:
        self.info = info
        self._open_stream = open_stream
        self._open_sink = open_sink
        self._encoding = encoding
        self._newline = newline
        self._sink: ObjectSink | None = None
        super().__init__(self._stack(mode), name=name)
        self.mode = mode

    def _stack(self, mode: str) -> IO[Any]:
        """The io stack for ``mode``: a raw stream, buffered, then text when the mode says so."""
        buffered: io.BufferedIOBase
        if mode in WRITE_MODES.values():
            if self._open_sink is None:
                raise ValueError(f"{self.name!r} was opened for reading; open it again with mode {mode!r}")
            self._sink = self._open_sink()
            buffered = io.BufferedWriter(self._sink, buffer_size=PIECE_BYTES)
        else:
            if self._open_stream is None or self.info is None:
                raise ValueError(f"{self.name!r} was opened for writing; open it again with mode {mode!r}")
            size = self.info.chunk_size or io.DEFAULT_BUFFER_SIZE
            buffered = io.BufferedReader(self._open_stream(), buffer_size=size)
        if "b" in mode:
            return buffered
        return io.TextIOWrapper(buffered, encoding=self._encoding, newline=self._newline)

    @property
    def size(self) -> int:
        if self.info is None:
            return self.file.tell() if self.file is not None and not self.closed else 0
        return self.info.size

    @property
    def content_type(self) -> str | None:
        return self.info.content_type if self.info is not None else None

    def open(self, mode: str | None = None, *args: object, **kwargs: object) -> NatsFile:
        """Reopen: back to the start, or anew when closed or when ``mode`` differs."""
        mode = normal_mode(mode) if mode is not None else self.mode
        if mode in WRITE_MODES.values() and not (mode == self.mode and not self.closed):
            raise ValueError(f"reopen {self.name!r} for writing through storage.open(name, {mode!r})")
        if self.closed or mode != self.mode:
            if not self.closed:
                self.close()
            self.file = self._stack(mode)
            self.mode = mode
        else:
            self.seek(0)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc_info: object) -> None:
        if exc_type is not None and self._sink is not None:
            self._sink.abort()  # all or nothing: an error inside ``with`` leaves no object
        self.close()


class AsyncNatsFile:
    """An object opened for reading from async code: ``async for chunk in f`` or ``await f.read()``."""

    def __init__(self, info: ObjectInfo, download: Download) -> None:
        self.info = info
        self.name = info.name
        self.size = info.size
        self.content_type = info.content_type
        self._download = download
        self._rest = b""

    def __aiter__(self) -> AsyncNatsFile:
        return self

    async def __anext__(self) -> bytes:
        if self._rest:
            chunk, self._rest = self._rest, b""
            return chunk
        chunk = await loop.arun(self._download.read())
        if not chunk:
            raise StopAsyncIteration
        return chunk

    async def read(self, size: int = -1) -> bytes:
        """Up to ``size`` bytes (all that is left when negative); ``b""`` at the end."""
        parts: list[bytes] = []
        wanted = size if size >= 0 else self.info.size
        async for chunk in self:
            if len(chunk) > wanted:
                chunk, self._rest = chunk[:wanted], chunk[wanted:]
            parts.append(chunk)
            wanted -= len(chunk)
            if wanted <= 0:
                break
        return b"".join(parts)

    async def close(self) -> None:
        await loop.arun(self._download.close())

    async def __aenter__(self) -> AsyncNatsFile:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        await self.close()


class AsyncNatsWriter:
    """An object being written from async code: ``await f.write(data)``; it appears, whole, on ``await f.close()``.

    Use ``async with``: an error inside it leaves no object.
    """

    def __init__(self, name: str, upload: Upload, commit: Callable[[Upload], Coroutine[Any, Any, str]]) -> None:
        self.name = name
        self._upload = upload
        self._commit = commit
        self.closed = False

    async def write(self, data: bytes | str) -> int:
        if self.closed:
            raise ValueError("write to a closed NatsStorage file")
        piece = data.encode() if isinstance(data, str) else bytes(data)
        await loop.arun(self._upload.write(piece))
        return len(data)

    async def close(self) -> None:
        """Publish the object; its final name is ``self.name``."""
        if not self.closed:
            self.closed = True
            try:
                self.name = await loop.arun(self._commit(self._upload))
            except BaseException:
                await self.abort()
                raise

    async def abort(self) -> None:
        self.closed = True
        await loop.arun(self._upload.abort())

    async def __aenter__(self) -> AsyncNatsWriter:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        if exc_type is not None:
            await self.abort()
        else:
            await self.close()


async def begin_reading(
    bucket: Bucket, key: str, locate: Callable[[], Awaitable[tuple[Bucket, ObjectInfo]]]
) -> tuple[Bucket, ObjectInfo, Download | None, list[bytes]]:
    """What an ``ObjectStream`` of ``key`` starts from, in one hop to the NATS loop: the bucket and metadata
    ``locate()`` finds (``key``'s, or what it links to) and, when it is one chunk, its data, checked.

    The chunk of a one-chunk object this process wrote or read lately is asked for with the metadata,
    in the same round trip; it is used when the metadata names it.
    """
    nuid = bucket.known_chunk(key)
    early = asyncio.ensure_future(Download.ask_only_chunk(bucket, nuid)) if nuid else None
    try:
        found, info = await locate()
        if info.chunks != 1:
            return found, info, None, []
        if found is not bucket or info.nuid != nuid:
            let_go(early)
            early = None
        download = await Download.begin(found, info, only_chunk=early)
        early = None
        try:
            return found, info, download, [await download.read()]
        except CorruptObject:  # said when the data is read, as for any object
            return found, info, None, []
    finally:
        let_go(early)
