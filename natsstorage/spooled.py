"""Files opened to be edited (``r+b``, ``w+b``, ``a``/``ab``, ``a+b`` and their text forms), as S3File opens them.

An object is never changed in place: it is read into a bounded spooled temporary file (in memory up to
Django's ``FILE_UPLOAD_MAX_MEMORY_SIZE``, then on disk in ``FILE_UPLOAD_TEMP_DIR``, as uploads are), edited
there, and written back as a new object on ``close()``, through ``save()``'s path (content type, metadata,
digest), only when something was written. An error inside ``with`` writes nothing back.
"""

from __future__ import annotations

import io
import os
import shutil
import tempfile
from typing import IO, TYPE_CHECKING, Any, Protocol

from django.conf import settings
from django.core.files.base import File

from natsstorage import saving
from natsstorage.files import PIECE_BYTES, NatsFile
from natsstorage.names import clean_name
from natsstorage.saving import SavingStorage, Taken

if TYPE_CHECKING:
    _File = File[Any]
else:
    _File = File


class EditingStorage(SavingStorage, Protocol):
    """What an edited file asks of its storage (a ``NatsStorage``, which imports this module)."""

    def open(
        self, name: str, mode: str = "rb", *, encoding: str | None = None, newline: str | None = None
    ) -> NatsFile | SpooledFile: ...


def edit_mode(mode: str) -> str | None:
    """``mode`` as ``r+b``, ``w+b``, ``ab`` or ``a+b`` (without ``b``: text), when it edits; else None."""
    kind = "".join(sorted(set(mode) & set("rwa")))
    if len(mode) != len(set(mode)) or set(mode) - set("rwa+bt") or len(kind) != 1 or {"b", "t"} <= set(mode):
        return None
    if kind != "a" and "+" not in mode:
        return None  # rb, wb: streamed, not spooled
    return kind + ("+" if "+" in mode else "") + ("b" if "b" in mode else "")


class SpooledFile(_File):
    """An object opened to be edited: a spooled copy, written back on ``close()`` when it changed."""

    def __init__(
        self, storage: EditingStorage, name: str, mode: str, *, encoding: str | None = None, newline: str | None = None
    ) -> None:
        self.storage = storage
        self.mode = mode
        self._encoding, self._newline = encoding, newline
        self._key = clean_name(name)
        self._spool: IO[bytes] | None = None
        self.changed = False
        self.handle = self._start()  # self.file, typed
        super().__init__(self.handle, name=self._key)
        self.mode = mode

    def _start(self) -> IO[Any]:
        spool: IO[bytes] = tempfile.SpooledTemporaryFile(  # noqa: SIM115 (closed by close())
            max_size=settings.FILE_UPLOAD_MAX_MEMORY_SIZE, suffix=".natsstorage", dir=settings.FILE_UPLOAD_TEMP_DIR
        )
        self.content_type: str | None = None
        self.changed = self.mode.startswith("w")  # w+ empties the object, as open() empties a file
        try:
            if not self.mode.startswith("w"):
                try:
                    with self.storage.open(self._key, "rb") as source:
                        shutil.copyfileobj(source, spool, PIECE_BYTES)
                        self.content_type = source.content_type  # kept by the new version
                except FileNotFoundError:
                    if self.mode.startswith("r"):
                        raise
                    self.changed = True  # append to nothing: the object is made, as open() makes a file
            spool.seek(0, os.SEEK_END if self.mode.startswith("a") else os.SEEK_SET)
        except BaseException:
            spool.close()
            raise
        self._spool = spool
        if "b" in self.mode:
            return spool
        return io.TextIOWrapper(spool, self._encoding, newline=self._newline, write_through=True)

    # -- what changes it ------------------------------------------------------------------

    def write(self, data: Any) -> int:
        self.changed = True
        if self.mode.startswith("a"):
            self.handle.seek(0, os.SEEK_END)  # appended, wherever the file was read
        return int(self.handle.write(data))

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def truncate(self, size: int | None = None) -> int:
        self.changed = True
        return int(self.handle.truncate(size))

    @property
    def size(self) -> int:
        """What it holds now, written or not."""
        position = self.handle.tell()
        end = int(self.handle.seek(0, os.SEEK_END))
        self.handle.seek(position)
        return end

    # -- written back ---------------------------------------------------------------------

    def close(self) -> None:
        if self.closed or self._spool is None:
            return
        try:
            if self.changed:
                self.handle.flush()
                content = File(self._spool, name=self.name)
                content.content_type = self.content_type  # type: ignore[attr-defined]
                saving.save(self.storage, self._key, content, taken=Taken.REPLACE)
                self.changed = False
        finally:
            self._discard()

    def _discard(self) -> None:
        spool, self._spool = self._spool, None
        self.handle.close()
        if spool is not None:
            spool.close()

    def __exit__(self, exc_type: type[BaseException] | None, *exc_info: object) -> None:
        if exc_type is not None:
            self._discard()  # all or nothing: an error inside ``with`` writes nothing back
        self.close()

    def open(self, mode: str | None = None, *args: object, **kwargs: object) -> SpooledFile:
        """Reopen: back to the start, or read anew from the bucket when closed or in another mode."""
        wanted = edit_mode(mode) if mode is not None else self.mode
        if wanted is None:
            raise ValueError(f"reopen {self.name!r} in mode {mode!r} through storage.open(name, {mode!r})")
        if not self.closed and wanted == self.mode:
            self.seek(0)
            return self
        self.close()
        self.mode = wanted
        self.file = self.handle = self._start()
        return self
