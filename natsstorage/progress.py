"""A one-line progress bar for the management commands."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

from django.core.files.base import File
from django.core.management.base import OutputWrapper

from natsstorage.humanize import duration, size

REDRAW_INTERVAL = 0.1  # seconds between redraws, so drawing never slows a transfer
BAR_WIDTH = 24


def _plain(text: str) -> str:
    return text  # not the error colour Django gives stderr


class Progress:
    """Bytes done of ``total`` (None when unknown), rate and ETA, redrawn in place on ``stream``.

    Draws nothing unless ``enabled`` (the commands pass: stderr is a terminal
    and no ``--no-progress``), so callers update it unconditionally.
    """

    def __init__(
        self,
        stream: OutputWrapper,
        total: int | None,
        *,
        enabled: bool,
        label: str = "",
        shown: Callable[[float], str] = size,
    ) -> None:
        self.stream = stream
        self.shown = shown  # how an amount is written: bytes by default
        self.total = total
        self.enabled = enabled
        self.label = label
        self.done = 0
        self._started = time.monotonic()
        self._drawn = 0.0
        self._width = 0

    def update(self, count: int) -> None:
        self.done += count
        now = time.monotonic()
        if self.enabled and now - self._drawn >= REDRAW_INTERVAL:
            self._drawn = now
            self._draw(now)

    def line(self, now: float) -> str:
        elapsed = max(now - self._started, 1e-6)
        rate = self.done / elapsed
        parts = [self.label] if self.label else []
        if self.total:
            fraction = min(self.done / self.total, 1.0)
            filled = int(fraction * BAR_WIDTH)
            parts.append(f"[{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {fraction:4.0%}")
            parts.append(f"{self.shown(self.done)} / {self.shown(self.total)}")
        else:
            parts.append(self.shown(self.done))
        parts.append(f"{self.shown(rate)}/s")
        if self.total and rate > 0 and self.done < self.total:
            parts.append(f"ETA {duration((self.total - self.done) / rate)}")
        return "  ".join(parts)

    def _draw(self, now: float) -> None:
        text = self.line(now)
        self.stream.write("\r" + text.ljust(self._width), style_func=_plain, ending="")
        self._width = len(text)
        self.stream.flush()

    def close(self) -> None:
        """The final figures, and the line ended so later output starts afresh."""
        if self.enabled:
            self._draw(time.monotonic())
            self.stream.write("", style_func=_plain)


class ProgressFile(File):  # type: ignore[type-arg]
    """A Django ``File`` whose ``chunks()`` report to a ``Progress``; what ``Storage.save`` reads."""

    def __init__(self, file: Any, name: str | None, progress: Progress, *, content_type: str | None = None) -> None:
        super().__init__(file, name)
        self.progress = progress
        self.content_type = content_type

    def chunks(self, chunk_size: int | None = None) -> Iterator[bytes]:
        for chunk in super().chunks(chunk_size):
            self.progress.update(len(chunk))
            yield chunk
