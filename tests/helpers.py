"""Small helpers the tests share: a NATS round trip outside the storage API, and sizes."""

from __future__ import annotations

import base64
import os
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from nats.aio.client import Client

from natsstorage import NatsStorage, _bridge

T = TypeVar("T")
MiB = 1024 * 1024
# A 1x1 PNG.
DOT_PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)
CSS = '#dot { background-image: url("../img/dot.png"); }\n'


def with_nats(storage: NatsStorage, work: Callable[[Client], Awaitable[T]]) -> T:
    """Run ``work(nc)`` on the storage's own connection (for raw NATS and nats-py's ObjectStore)."""

    async def go() -> T:
        return await work(await _bridge.connection(storage.config.connection))

    return _bridge.run(go())


def stream_state(storage: NatsStorage) -> dict[str, Any]:
    return _bridge.run(storage.bucket.stream_info())["state"]


def random_bytes(size: int) -> bytes:
    return os.urandom(size)


def corrupt_last_byte(storage: NatsStorage, name: str) -> None:
    """Rewrite the object's chunks with its last byte flipped: same sizes, so only the digest can tell."""
    info = storage.info(name)
    with storage.open(name) as f:
        data = bytearray(f.read())
    data[-1] ^= 0xFF
    subject = f"$O.{storage.config.bucket}.C.{info.nuid}"
    purge = f'{{"filter": "{subject}"}}'.encode()

    async def rewrite(nc: Client) -> None:
        await nc.request(f"$JS.API.STREAM.PURGE.OBJ_{storage.config.bucket}", purge, timeout=5)
        for start in range(0, len(data), info.chunk_size or len(data)):
            await nc.request(subject, bytes(data[start : start + (info.chunk_size or len(data))]), timeout=5)

    with_nats(storage, rewrite)
