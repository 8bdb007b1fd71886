"""Small helpers the tests share: a NATS round trip outside the storage API, sizes, a fresh clone and pip."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import nats
from django.core.files.base import ContentFile
from nats.aio.client import Client
from nats.aio.subscription import Subscription

from natsstorage import NatsStorage
from natsstorage.testing import on_connection

T = TypeVar("T")
CHECKOUT = Path(__file__).resolve().parent.parent
MiB = 1024 * 1024
# A 1x1 PNG.
DOT_PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)
CSS = '#dot { background-image: url("../img/dot.png"); }\n'


WITHIN = 30.0  # seconds something done in the background may take on a loaded machine: a bound, not a measure


def body(response) -> bytes:
    """A response's bytes, streamed or not."""
    return b"".join(response.streaming_content) if response.streaming else response.content


def consumed(response):
    """``response``, read to its end: the test client then closes it (and a disk copy's file it holds open)."""
    body(response)
    return response


def eventually(check: Callable[[], bool], within: float = WITHIN) -> None:
    """Wait until ``check()`` holds (what is under test: no timing asserted)."""
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, "not within the bound"
        time.sleep(0.02)


def as_another_client(storage: NatsStorage, work: Callable[[Any], Awaitable[Any]]) -> None:
    """``work(object_store)`` with nats-py's ObjectStore on a connection of its own, as another process would."""

    async def go() -> None:
        nc = await nats.connect(storage.config.servers[0])
        try:
            await work(await nc.jetstream().object_store(storage.config.bucket))
        finally:
            await nc.close()

    asyncio.run(go())


def with_nats(storage: NatsStorage, work: Callable[[Client], Awaitable[T]]) -> T:
    """Run ``work(nc)`` on the storage's own connection (for raw NATS and nats-py's ObjectStore)."""
    return on_connection(storage, work)


def jetstream(
    storage: NatsStorage, request: str, body: dict[str, Any] | None = None, *, of: str = "OBJ"
) -> dict[str, Any]:
    """A JetStream API request about the storage's stream (``of="NSI"``, ``"NSD"``: its listing index's), as any
    NATS client would make it."""

    async def ask(nc: Client) -> dict[str, Any]:
        payload = json.dumps(body).encode() if body is not None else b""
        reply = await nc.request(f"$JS.API.{request}.{of}_{storage.config.bucket}", payload, timeout=5)
        answer: dict[str, Any] = json.loads(reply.data)
        return answer

    return with_nats(storage, ask)


def stream_info(storage: NatsStorage, of: str = "OBJ") -> dict[str, Any]:
    """The bucket's stream (or its listing index's) as the server describes it: config, state, cluster."""
    return jetstream(storage, "STREAM.INFO", of=of)


def stream_state(storage: NatsStorage) -> dict[str, Any]:
    return stream_info(storage)["state"]


def purge(storage: NatsStorage, subject: str) -> None:
    """Remove every message on ``subject`` from the bucket's stream, as another client could."""
    jetstream(storage, "STREAM.PURGE", {"filter": subject})


def random_bytes(size: int) -> bytes:
    return os.urandom(size)


def corrupt_last_byte(storage: NatsStorage, name: str) -> None:
    """Rewrite the object's chunks with its last byte flipped: same sizes, so only the digest can tell."""
    info = storage.info(name)
    with storage.open(name) as f:
        data = bytearray(f.read())
    data[-1] ^= 0xFF
    subject = f"$O.{storage.config.bucket}.C.{info.nuid}"
    purge(storage, subject)

    async def rewrite(nc: Client) -> None:
        for start in range(0, len(data), info.chunk_size or len(data)):
            await nc.request(subject, bytes(data[start : start + (info.chunk_size or len(data))]), timeout=5)

    with_nats(storage, rewrite)


def put_foreign(storage: NatsStorage, name: str, data: bytes, **meta: Any) -> None:
    """Store ``name`` as any NATS client could, with raw publishes (names nats-py itself refuses too)."""
    bucket = storage.config.bucket
    nuid = os.urandom(11).hex()
    raw = {
        "name": name,
        "bucket": bucket,
        "nuid": nuid,
        "size": len(data),
        "chunks": 1 if data else 0,
        "mtime": "2026-01-01T00:00:00Z",
        "digest": "SHA-256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).decode(),
        **meta,
    }

    async def publish(nc: Client) -> None:
        if data:
            await nc.request(f"$O.{bucket}.C.{nuid}", data, timeout=5)
        key = base64.urlsafe_b64encode(name.encode()).decode()
        await nc.request(f"$O.{bucket}.M.{key}", json.dumps(raw).encode(), headers={"Nats-Rollup": "sub"}, timeout=5)

    with_nats(storage, publish)


def default_sigint() -> None:
    """For ``preexec_fn``: a child that is sent Ctrl-C gets SIGINT's default disposition, as a terminal's
    foreground job has it. A suite run as a background job (``pytest &``) ignores SIGINT, and its
    children would inherit that: Python then installs no KeyboardInterrupt handler."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def save_once_back(storage: NatsStorage, name: str, data: bytes, *, within: float = 15) -> None:
    """Save ``name`` as soon as the client has reconnected after a server restart (it does so in the background)."""
    deadline = time.monotonic() + within
    while True:
        try:
            storage.save(name, ContentFile(data))
            return
        except OSError:  # NatsUnavailable, and whatever else a connection coming back raises
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def steal_a_message(storage: NatsStorage) -> Subscription:
    """Ask the bucket's one consumer for a message on an inbox of our own, as if one it sent got lost (in a
    reconnect, a failover): the server takes turns between pull requests. The subscription it will arrive on."""
    (consumer,) = jetstream(storage, "CONSUMER.NAMES")["consumers"]

    async def ask(nc: Client) -> Subscription:
        inbox = nc.new_inbox()
        taken = await nc.subscribe(inbox, max_msgs=1)
        request = json.dumps({"batch": 1, "expires": 5_000_000_000}).encode()
        await nc.publish(f"$JS.API.CONSUMER.MSG.NEXT.OBJ_{storage.config.bucket}.{consumer}", request, reply=inbox)
        await nc.flush()
        return taken

    return with_nats(storage, ask)


def pip_env(home: Path) -> dict[str, str]:
    """A bare environment for pip and what it installs: no virtual environment of ours, pip's index settings kept."""
    return {
        "PATH": "/usr/bin:/bin",
        "HOME": str(home),
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        "PIP_CACHE_DIR": os.environ.get("PIP_CACHE_DIR", str(Path.home() / ".cache" / "pip")),  # warm, not $HOME's
        **{
            key: os.environ[key]
            for key in ("PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_FIND_LINKS")
            if key in os.environ
        },
    }


def fresh_clone(into: Path) -> Path:
    """What `git clone` gives: the checkout's tracked files (as they are now), nothing it built."""
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=CHECKOUT, capture_output=True, check=True).stdout
    for name in filter(None, tracked.decode().split("\0")):
        source = CHECKOUT / name
        if source.is_file():
            (into / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, into / name)
    return into
