"""Work started on the loop that no caller waits for (purging a replaced version's chunks), and what waits
for it: closing the connections, so that work sent is work done."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Coroutine
from typing import Any

CLOSE_TIMEOUT = 2.0  # seconds for all of it at exit

# By what it concerns (a stream). Only code on the loop touches it.
_background: dict[str, set[asyncio.Task[Any]]] = {}
os.register_at_fork(after_in_child=_background.clear)  # the parent's tasks are the parent's loop's


def start(about: str, coro: Coroutine[Any, Any, Any]) -> None:
    """Start ``coro`` on the running loop without waiting; ``settled(about)`` waits for it, and so
    does closing the connections, so that work sent is work done. Call on the loop."""
    task = asyncio.get_running_loop().create_task(coro)
    tasks = _background.setdefault(about, set())
    tasks.add(task)
    task.add_done_callback(tasks.discard)


async def settled(about: str | None = None) -> None:
    """Wait for the background work about ``about`` (None: all of it), started by any caller in this process;
    at most ``CLOSE_TIMEOUT`` for all of it."""
    loop = asyncio.get_running_loop()
    groups = _background.values() if about is None else [_background.get(about, set())]
    if pending := [task for tasks in groups for task in tasks if task.get_loop() is loop]:
        await asyncio.wait(pending, timeout=CLOSE_TIMEOUT if about is None else None)


async def cancel_and_wait(task: asyncio.Future[Any]) -> None:
    """Cancel ``task`` and wait, within CLOSE_TIMEOUT, for it to end. nats-py swallows a cancellation that
    lands while it closes a failed connect attempt (which would retry for ever) or waits for its flusher:
    cancel again."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + CLOSE_TIMEOUT
    while not task.done() and loop.time() < deadline:
        task.cancel()
        await asyncio.wait({task}, timeout=0.05)
    if task.done() and not task.cancelled():
        task.exception()  # retrieved: no "exception was never retrieved" at exit
