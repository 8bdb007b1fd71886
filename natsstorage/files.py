"""Django ``File`` objects that stream an object from the bucket, chunk by chunk."""

from __future__ import annotations

import io
from collections import deque
from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING

from django.core.files.base import File

from natsstorage import _bridge
from natsstorage.objectstore import Bucket, Download, ObjectInfo

CHUNKS_PER_HOP = 8  # chunks fetched per hop to the NATS loop, when they are already there

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

    _File = File[bytes]
else:
    _File = File


class ObjectStream(io.RawIOBase):
    """A read-only, seekable raw stream over one object; never holds more than one chunk."""

    def __init__(self, bucket: Bucket, info: ObjectInfo) -> None:
        self.bucket = bucket
        self.info = info
        self._download: Download | None = None
        self._chunk = memoryview(b"")
        self._ahead: deque[bytes] = deque()  # chunks already fetched, after self._chunk
        self._position = 0  # of the first byte of self._chunk

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def _next_chunk(self) -> memoryview:
        if not self._ahead:
            if self._download is None:
                self._download = _bridge.run(self.bucket.download(self.info))
            self._ahead.extend(_bridge.run(self._download.read_many(CHUNKS_PER_HOP)))
        return memoryview(self._ahead.popleft())

    def readinto(self, buffer: WriteableBuffer) -> int:
        if not self._chunk:
            if self._position >= self.info.size:
                return 0
            self._chunk = self._next_chunk()
        target = memoryview(buffer).cast("B")
        count = min(len(target), len(self._chunk))
        target[:count] = self._chunk[:count]
        self._chunk = self._chunk[count:]
        self._position += count
        return count

    def readall(self) -> bytes:
        parts = [bytes(self._chunk)]
        self._position += len(self._chunk)
        self._chunk = memoryview(b"")
        while self._position < self.info.size:
            chunk = self._next_chunk()
            if not chunk:
                break
            parts.append(bytes(chunk))
            self._position += len(chunk)
        return b"".join(parts)

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
        self._download, self._position = _bridge.run(self.bucket.download_from(self.info, target))
        while self._position < target:
            if not self._chunk:
                self._chunk = self._next_chunk()
            step = min(len(self._chunk), target - self._position)
            self._chunk = self._chunk[step:]
            self._position += step
        return target

    def _close_download(self) -> None:
        if self._download is not None:
            download, self._download = self._download, None
            # Closing only sends messages, nothing to wait for; safe from any thread.
            _bridge.submit(download.close())

    def close(self) -> None:
        if not self.closed:
            self._close_download()
        super().close()


class NatsFile(_File):
    """An object opened for reading; ``read``, ``chunks`` and iteration stream from NATS."""

    def __init__(self, info: ObjectInfo, open_stream: Callable[[], ObjectStream]) -> None:
        self.info = info
        self._open_stream = open_stream
        super().__init__(self._buffered(), name=info.name)
        self.mode = "rb"

    def _buffered(self) -> io.BufferedReader:
        return io.BufferedReader(self._open_stream(), buffer_size=self.info.chunk_size or io.DEFAULT_BUFFER_SIZE)

    @property
    def size(self) -> int:
        return self.info.size

    @property
    def content_type(self) -> str | None:
        return self.info.content_type

    def open(self, mode: str | None = None, *args: object, **kwargs: object) -> NatsFile:
        if mode not in (None, "rb"):
            raise ValueError(f"NatsStorage files open for reading only ('rb'), not {mode!r}")
        if self.closed:
            self.file = self._buffered()
        else:
            self.seek(0)
        return self


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
        chunk = await _bridge.arun(self._download.read())
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
        await _bridge.arun(self._download.close())

    async def __aenter__(self) -> AsyncNatsFile:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        await self.close()
