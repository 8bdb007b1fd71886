"""A bucket's changes as they happen, for synchronous callers (``natsos_watch``)."""

from __future__ import annotations

from types import TracebackType

from natsstorage.loop import run
from natsstorage.objectstore import ObjectInfo, Watch


class Changes:
    """``Watch`` for synchronous code: ``start()``, then ``next()`` per change; ``start()`` again resumes
    right after the last change returned (after a server restart, say)."""

    def __init__(self, watch: Watch) -> None:
        self._watch = watch

    def start(self) -> None:
        run(self._watch.start())

    def next(self) -> ObjectInfo:
        """The next change; ``NatsUnavailable`` when the server went quiet for longer than the timeout."""
        return run(self._watch.next())

    def close(self) -> None:
        run(self._watch.close())

    def __enter__(self) -> Changes:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self.close()
