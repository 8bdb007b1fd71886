"""Small helpers the tests share: a NATS round trip outside the storage API, and sizes."""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from nats.aio.client import Client

from natsstorage import NatsStorage, _bridge

T = TypeVar("T")
MiB = 1024 * 1024


def with_nats(storage: NatsStorage, work: Callable[[Client], Awaitable[T]]) -> T:
    """Run ``work(nc)`` on the storage's own connection (for raw NATS and nats-py's ObjectStore)."""

    async def go() -> T:
        return await work(await _bridge.connection(storage.config.connection))

    return _bridge.run(go())


def stream_state(storage: NatsStorage) -> dict[str, Any]:
    return _bridge.run(storage.bucket.stream_info())["state"]


def random_bytes(size: int) -> bytes:
    return os.urandom(size)
