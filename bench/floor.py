"""The protocol's floor: an Object Store's round trips made with nats-py directly, and nothing else.

No client can do an operation on a one-chunk object in fewer round trips
than these (the wire layout of ADR-20, which every NATS client shares):

- save: publish the chunk and wait for its acknowledgement, then publish the
  metadata (``Nats-Rollup: sub``, and ``Nats-Expected-Last-Subject-Sequence``
  so two writers of one name cannot both win) and wait for its;
- read: a direct get of the metadata, then a direct get of the chunk;
- exists: a direct get of the metadata.

One connection, on a loop of its own that nothing else uses, timed inside the
loop: what is left is the server and the wire. Reads check the size, not the
digest (unless asked to); saves must compute it, the metadata carries it.
``calls`` times the same operations each run by a call of its own, as a
synchronous program (a Django view) would have to use nats-py.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
from collections.abc import Awaitable, Callable, Coroutine
from datetime import UTC, datetime
from typing import Any, TypeVar

import nats
from nats.nuid import NUID

try:  # what natsstorage's loop runs on, where it can
    from uvloop import new_event_loop
except ImportError:  # Windows
    from asyncio import new_event_loop

BUCKET = "bench_floor"
STREAM = f"OBJ_{BUCKET}"
CHUNK_SIZE = 128 * 1024  # the clients' default; the floor handles objects of one chunk only
API = "$JS.API."
TIMEOUT = 30.0  # seconds for any one reply

T = TypeVar("T")


def meta_subject(bucket: str, name: str) -> str:
    return f"$O.{bucket}.M.{base64.urlsafe_b64encode(name.encode()).decode()}"


def chunk_subject(bucket: str, nuid: str) -> str:
    return f"$O.{bucket}.C.{nuid}"


class Floor:
    def __init__(self, url: str) -> None:
        self.loop = new_event_loop()
        self.nc: Any = self.run(nats.connect(url))
        self.nuid = NUID()
        self.run(
            self.api(
                f"STREAM.CREATE.{STREAM}",
                {
                    "name": STREAM,
                    "subjects": [chunk_subject(BUCKET, ">"), f"$O.{BUCKET}.M.>"],
                    "storage": "file",
                    "discard": "new",
                    "allow_rollup_hdrs": True,
                    "allow_direct": True,
                },
            )
        )

    def run(self, work: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(work)

    def close(self) -> None:
        self.run(self.nc.close())
        self.loop.close()

    def seconds(self, operation: Callable[[str], Awaitable[object]], names: list[str]) -> float:
        """How long ``operation`` takes on every name in turn, timed inside the loop."""

        async def timed() -> float:
            started = time.perf_counter()
            for name in names:
                await operation(name)
            return time.perf_counter() - started

        return self.run(timed())

    def calls(self, operation: Callable[[str], Coroutine[Any, Any, object]], names: list[str]) -> float:
        """How long ``operation`` takes on every name in turn, each a call of its own from this thread: what a
        synchronous program pays to use nats-py directly (the loop run once per call)."""
        started = time.perf_counter()
        for name in names:
            self.run(operation(name))
        return time.perf_counter() - started

    def purge_stream(self, stream: str) -> None:
        """Empty a bucket's stream (any bucket's: between runs, untimed)."""
        self.run(self.api(f"STREAM.PURGE.{stream}", {}))

    async def api(self, subject: str, body: dict[str, Any]) -> dict[str, Any]:
        reply = await self.nc.request(API + subject, json.dumps(body).encode(), timeout=TIMEOUT)
        response: dict[str, Any] = json.loads(reply.data)
        if "error" in response:
            raise RuntimeError(f"{subject}: {response['error']}")
        return response

    # -- the operations -------------------------------------------------------------

    async def save(self, name: str, data: bytes) -> None:
        """Store a new object of at most ``CHUNK_SIZE`` bytes under a name not yet taken."""
        nuid = self.nuid.next().decode()
        await self._publish(chunk_subject(BUCKET, nuid), data, None)
        meta = {
            "name": name,
            "options": {"max_chunk_size": CHUNK_SIZE},
            "bucket": BUCKET,
            "nuid": nuid,
            "size": len(data),
            "mtime": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "chunks": 1,
            "digest": "SHA-256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).decode(),
        }
        headers = {"Nats-Rollup": "sub", "Nats-Expected-Last-Subject-Sequence": "0"}
        await self._publish(meta_subject(BUCKET, name), json.dumps(meta).encode(), headers)

    async def read(self, name: str, *, check: bool = False) -> bytes:
        """The object's data, its size checked; ``check``: its digest too, as every natsstorage read does."""
        meta = await self._direct_get(meta_subject(BUCKET, name))
        if meta is None:
            raise FileNotFoundError(name)
        info = json.loads(meta)
        data = await self._direct_get(chunk_subject(BUCKET, info["nuid"]))
        if data is None or len(data) != info["size"]:
            raise RuntimeError(f"{name}: chunk missing or of the wrong size")
        if check and info["digest"] != "SHA-256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).decode():
            raise RuntimeError(f"{name}: the data does not match its digest")
        return data

    async def exists(self, name: str) -> bool:
        meta = await self._direct_get(meta_subject(BUCKET, name))
        return meta is not None and not json.loads(meta).get("deleted")

    async def _publish(self, subject: str, data: bytes, headers: dict[str, str] | None) -> None:
        ack = await self.nc.request(subject, data, timeout=TIMEOUT, headers=headers)
        if b'"error"' in ack.data:
            raise RuntimeError(f"{subject}: {ack.data.decode()}")

    async def _direct_get(self, subject: str) -> bytes | None:
        """The last message on ``subject``, or None."""
        request = json.dumps({"last_by_subj": subject}).encode()
        reply = await self.nc.request(f"{API}DIRECT.GET.{STREAM}", request, timeout=TIMEOUT)
        if reply.headers and reply.headers.get("Status") == "404":
            return None
        data: bytes = reply.data
        return data
