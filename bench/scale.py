"""Buckets of many names, filled as any NATS client could, and what the listing-at-scale section calls on them.

Saving a million objects one by one through ``NatsStorage.save`` would take
about seven minutes (the size sweep saves 2,500 small objects a second);
raw publishes on one nats-py connection, pipelined (every publish asks for
its acknowledgement on one shared inbox, at most ``WINDOW`` unacknowledged),
store 20,000 to 40,000 objects a second here.

The names: a directory ``dir/`` of ``entries`` names (``dir/00000``,
``dir/00001``, ...), the rest ``other/<i // 1000>/<i>``, so a thousand per
directory. Each object is one chunk of 1 to ``MAX_SIZE`` random bytes, so
that sorting by size sorts something.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import random
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import nats
from floor import API, TIMEOUT, chunk_subject, meta_subject, new_event_loop  # uvloop's, where it can
from nats.aio.msg import Msg
from nats.nuid import NUID

if TYPE_CHECKING:  # run.py imports natsstorage once it has found it
    from natsstorage import NatsStorage
    from natsstorage.objectstore import ObjectInfo

DIRECTORY = "dir"  # the directory the section lists
OTHERS = 1000  # names per directory outside it
MAX_SIZE = 256  # bytes per object, at most
BLOCK = 4096  # random bytes the objects' data is cut from
WINDOW = 4096  # publishes awaiting their acknowledgement: enough to keep the server busy
ROLLUP = {"Nats-Rollup": "sub"}
PAGE = 100  # rows on one page of the admin's objects page
# The admin's orders: by name, else largest and newest first.
ORDERS = {"name": "name", "size": "-size", "modified": "-modified"}
# The calls the section times, by their labels; the goals name some.
LISTDIR = f'`listdir("{DIRECTORY}")`'
COUNT = "`status().objects`"
ADMIN_PAGES = tuple(f"admin page by {order}" for order in ORDERS)
UNDER_100_MS = (COUNT, *ADMIN_PAGES)


def names(count: int, entries: int) -> Iterator[str]:
    """``count`` names: ``entries`` of them in ``DIRECTORY``, the rest in other directories."""
    for i in range(count):
        yield f"{DIRECTORY}/{i:05d}" if i < entries else f"other/{i // OTHERS}/{i}"


class Acks:
    """Counts the acknowledgements that come back on one inbox; keeps the first error."""

    def __init__(self) -> None:
        self.sent = 0
        self.received = 0
        self.error = ""
        self._moved = asyncio.Event()

    async def receive(self, msg: Msg) -> None:
        self.received += 1
        if b'"error"' in msg.data and not self.error:
            self.error = msg.data.decode()
        self._moved.set()

    async def at_most(self, outstanding: int) -> None:
        """Return once at most ``outstanding`` publishes await their acknowledgement."""
        while self.sent - self.received > outstanding:
            self._moved.clear()
            await asyncio.wait_for(self._moved.wait(), TIMEOUT)
        if self.error:
            raise RuntimeError(f"a publish was refused: {self.error}")


def fill(url: str, bucket: str, count: int, entries: int) -> float:
    """Create ``bucket`` (with natsstorage's stream configuration), store ``count`` tiny objects in it; the seconds."""
    loop = new_event_loop()
    try:
        started = time.perf_counter()
        loop.run_until_complete(_fill(url, bucket, count, entries))
        return time.perf_counter() - started
    finally:
        loop.close()


async def _fill(url: str, bucket: str, count: int, entries: int) -> None:
    from natsstorage.objectstore import BucketConfig

    nc = await nats.connect(url)
    try:
        stream = BucketConfig().stream_config(bucket)
        reply = await nc.request(f"{API}STREAM.CREATE.{stream['name']}", json.dumps(stream).encode(), timeout=TIMEOUT)
        if b'"error"' in reply.data:
            raise RuntimeError(f"bucket {bucket!r} not created: {reply.data.decode()}")
        acks, inbox, nuids = Acks(), nc.new_inbox(), NUID()
        subscription = await nc.subscribe(inbox, cb=acks.receive, pending_msgs_limit=2 * WINDOW)
        block, sizes = os.urandom(BLOCK + MAX_SIZE), random.Random(count)  # the objects' data: slices of block
        mtime = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        for i, name in enumerate(names(count, entries)):
            start = i % BLOCK
            data = block[start : start + sizes.randint(1, MAX_SIZE)]
            nuid = nuids.next().decode()
            meta = {
                "name": name,
                "bucket": bucket,
                "nuid": nuid,
                "size": len(data),
                "chunks": 1,
                "mtime": mtime,
                "digest": "SHA-256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).decode(),
            }
            await nc.publish(chunk_subject(bucket, nuid), data, reply=inbox)
            await nc.publish(meta_subject(bucket, name), json.dumps(meta).encode(), reply=inbox, headers=ROLLUP)
            acks.sent += 2
            if acks.sent - acks.received >= WINDOW:
                await acks.at_most(WINDOW // 2)
        await acks.at_most(0)
        await subscription.unsubscribe()
    finally:
        await nc.close()


# -- what the section times on each bucket, after its first look --------------------------


def admin_page(storage: NatsStorage, order: str) -> list[ObjectInfo]:
    """What the admin's objects page asks of NATS: its first page in ``order`` and the count, then each row's
    metadata (the page's own ``Rows``, as its ``Paginator`` takes them)."""
    from django.core.paginator import Paginator

    from natsstorage.admin.listing import Rows

    return list(Paginator(Rows(storage, "", ORDERS[order], shown=slice(0, PAGE)), PAGE).get_page(1))


def calls(count: int, entries: int) -> dict[str, Callable[[NatsStorage], object]]:
    """Each call the section times, by its label, checking its answer for a bucket of ``count`` names."""
    from natsstorage.buckettools import BucketTools

    def listdir(storage: NatsStorage) -> None:
        assert len(storage.listdir(DIRECTORY)[1]) == entries

    def exists(storage: NatsStorage) -> None:
        assert storage.exists(DIRECTORY)

    def counted(storage: NatsStorage) -> None:
        assert BucketTools(storage).status().objects == count

    def listed(storage: NatsStorage) -> None:
        assert len(BucketTools(storage).listing("")) == count

    def page(order: str) -> Callable[[NatsStorage], object]:
        return lambda storage: admin_page(storage, order)

    return {
        LISTDIR: listdir,
        f'`exists("{DIRECTORY}")`': exists,
        COUNT: counted,
        '`listing("")`': listed,
        **{label: page(order) for label, order in zip(ADMIN_PAGES, ORDERS, strict=True)},
    }


def estimate(count: int, entries: int) -> float:
    """Bytes per name that index.py's docstring foretells: ``ENTRY_BYTES``, the name included."""
    from natsstorage.index import ENTRY_BYTES

    return float(ENTRY_BYTES)
