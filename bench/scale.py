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
from typing import TYPE_CHECKING, Any

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
        assert sum(1 for _ in BucketTools(storage).listing("")) == count

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


# -- `python bench/scale.py --names N --fresh`: issue #24's figures, with the listing index on the server ----------

FRESH_RUNS = 5  # fresh child processes per figure
OLD_WAY_RUNS = 3  # the same on the old way (every name read into the process): slow at scale
WARM_RUNS = 20
SAVES = 500  # 1 KiB saves per round
SAVE_ROUNDS = 15
IDLE_PROCESSES = 8
MISSING = f"{DIRECTORY}/missing.bin"
FIRST_CALLS = {
    f'first `listdir("{DIRECTORY}")` (1,000 entries)': lambda storage: storage.listdir(DIRECTORY),
    f'first `exists("{MISSING}")`': lambda storage: storage.exists(MISSING),
    f'first `exists("{DIRECTORY}/00001")` (a file)': lambda storage: storage.exists(f"{DIRECTORY}/00001"),
    f'first `exists("{DIRECTORY}")` (a directory)': lambda storage: storage.exists(DIRECTORY),
    "`manage.py natsos_status BUCKET`": lambda storage: _natsos_status(storage.config.bucket),
}
GOALS = {0: "< 100 ms", 1: "< 5 ms", 2: "< 5 ms", 3: "< 5 ms", 4: "< 100 ms"}


def _natsos_status(bucket: str) -> None:
    import io

    from django.core.management import call_command

    call_command("natsos_status", bucket, stdout=io.StringIO())


def _child(args: Any) -> None:
    """In a fresh process: connect, then time one first call (``--child N``, of FIRST_CALLS) and the RSS growth."""
    from run import resident, setup_django

    setup_django(args.url, None)
    from natsstorage import NatsStorage
    from natsstorage.buckettools import BucketTools

    storage = NatsStorage(args.bucket, create_bucket=False, listing=args.listing)
    assert BucketTools(storage).bucket_exists()  # connected, imports done: what is timed is the call
    baseline = resident("VmRSS")
    call = list(FIRST_CALLS.values())[args.child]
    started = time.perf_counter()
    call(storage)
    took = time.perf_counter() - started
    print(json.dumps({"ms": took * 1000, "grown": resident("VmRSS") - baseline}))


def _idle_child(args: Any) -> None:
    """Hold a storage on the bucket (having listed it, or only connected) until stdin closes."""
    import sys

    from run import setup_django

    setup_django(args.url, None)
    from natsstorage import NatsStorage

    listing = "process" if args.listing == "none" else args.listing
    storage = NatsStorage(args.bucket, create_bucket=False, listing=listing)
    if args.listing == "none":  # connected, no index of any kind (a file's exists() looks at no index)
        assert storage.exists(f"{DIRECTORY}/00000")
    else:
        storage.listdir(DIRECTORY)
    print("ready", flush=True)
    sys.stdin.read()


def _in_children(url: str, bucket: str, listing: str, figure: int, runs: int) -> tuple[list[float], list[float]]:
    import subprocess
    import sys

    took, grown = [], []
    for _ in range(runs):
        command = [sys.executable, __file__, "--child", str(figure), "--bucket", bucket, "--url", url]
        out = subprocess.run([*command, "--listing", listing], capture_output=True, text=True, check=True).stdout
        answer = json.loads(out.strip().splitlines()[-1])
        took.append(answer["ms"])
        grown.append(answer["grown"])
    return took, grown


def _saves_per_second(storage: NatsStorage, round_: int) -> float:
    from django.core.files.base import ContentFile

    data = os.urandom(1024)
    started = time.perf_counter()
    for i in range(SAVES):
        storage.save(f"saves/{round_}/{i}", ContentFile(data))
    return SAVES / (time.perf_counter() - started)


def _idle(url: str, bucket: str, listing: str) -> list[Any]:
    import subprocess
    import sys

    children = []
    for _ in range(IDLE_PROCESSES):
        command = [sys.executable, __file__, "--idle-child", "--bucket", bucket, "--url", url, "--listing", listing]
        child = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        children.append(child)
    for child in children:
        assert child.stdout is not None and child.stdout.readline().strip() == "ready"
    return children


def _stop(children: list[Any]) -> None:
    for child in children:
        child.stdin.close()
        child.wait(timeout=30)


def _admin_figures(storage: NatsStorage) -> dict[str, list[float]]:
    """The admin's objects page in a warm process, ms: pages by name, a sort under a prefix, counts."""
    from django.core.paginator import Paginator

    from natsstorage.admin.listing import Rows
    from natsstorage.buckettools import BucketTools
    from natsstorage.exceptions import TooBroad

    def page(prefix: str, order: str, number: int) -> Callable[[], object]:
        shown = slice((number - 1) * PAGE, number * PAGE)
        return lambda: list(Paginator(Rows(storage, prefix, order, shown=shown), PAGE).get_page(number))

    def counted(prefix: str) -> Callable[[], object]:
        return lambda: BucketTools(storage).listing_page(prefix, limit=0).total

    refused = []

    def by_size_at_the_top() -> None:
        try:
            BucketTools(storage).listing_page("", order="size", descending=True, limit=PAGE)
        except TooBroad as error:
            refused.append(str(error))

    figures = {
        "admin page 1 by name, ms": page("", "name", 1),
        "admin page 50 by name, ms": page("", "name", 50),
        f'admin page 1 by size under "{DIRECTORY}/" (1,000 entries), ms': page(f"{DIRECTORY}/", "-size", 1),
        "admin page 1 by size at the top, ms": by_size_at_the_top,
        "admin count, whole bucket, ms": counted(""),
        'admin count under "other/", ms': counted("other/"),
    }
    took: dict[str, list[float]] = {}
    for label, call in figures.items():
        call()
        took[label] = []
        for _ in range(5):
            started = time.perf_counter()
            call()
            took[label].append((time.perf_counter() - started) * 1000)
    if refused:
        took[f"admin page 1 by size at the top, ms (refused: {refused[0]})"] = took.pop(
            "admin page 1 by size at the top, ms"
        )
    return took


def _spread(values: list[float]) -> str:
    import statistics

    median = statistics.median(values)
    shown = f"{median:,.0f}" if median >= 100 else f"{median:.1f}" if median >= 10 else f"{median:.2f}"
    return f"{shown} (min {min(values):.2f}, max {max(values):.2f})"


def main() -> int:
    import argparse
    import statistics
    import sys
    import tempfile

    parser = argparse.ArgumentParser(description="Issue #24's figures on a bucket of --names names.")
    parser.add_argument("--names", type=int, default=100_000)
    parser.add_argument("--fresh", action="store_true", help="fill a new bucket (always, with the server started here)")
    parser.add_argument("--old-way", action="store_true", help="time the per-process index too, for comparison")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--idle-child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--bucket", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--listing", default="auto", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        _child(args)
        return 0
    if args.idle_child:
        _idle_child(args)
        return 0

    from run import setup_django

    from natsstorage.testing import NatsServer

    with tempfile.TemporaryDirectory(prefix="natsstorage-scale-") as workdir, NatsServer(store_dir=workdir) as server:
        setup_django(server.url, None)
        from natsstorage import NatsStorage
        from natsstorage.buckettools import BucketTools

        rows: list[tuple[str, str, str]] = []
        bucket, small, plain = f"scale_{args.names}", "scale_small", "scale_plain"
        filled = fill(server.url, bucket, args.names, 1000)
        print(f"filled {args.names:,} names in {filled:.1f} s", file=sys.stderr, flush=True)
        memory = server.monitor("varz")["mem"]
        started = time.perf_counter()
        held = BucketTools(NatsStorage(bucket, create_bucket=False)).build_index()
        built = time.perf_counter() - started
        grown_server = (server.monitor("varz")["mem"] - memory) / 2**20
        rows.append(("index build (`natsos_index`)", f"{built:.1f} s, {held / built:,.0f} names/s", "—"))
        rows.append(("server RSS growth for the index", f"{grown_server:,.0f} MiB", "—"))
        print(f"indexed {held:,} names in {built:.1f} s", file=sys.stderr, flush=True)

        rss = []
        for figure, label in enumerate(FIRST_CALLS):
            took, grown = _in_children(server.url, bucket, "auto", figure, FRESH_RUNS)
            rss.extend(grown)
            rows.append((f"fresh process: {label}, ms", _spread(took), GOALS[figure]))
        rows.append(("fresh process: RSS growth after the first call, MiB", _spread(rss), "< 16"))
        if args.old_way:
            for figure in (0, 1):
                took, grown = _in_children(server.url, bucket, "process", figure, OLD_WAY_RUNS)
                label = list(FIRST_CALLS)[figure]
                rows.append((f"old way (`listing='process'`): {label}, ms", _spread(took), "—"))
                rows.append((f"old way: RSS growth after {label}, MiB", _spread(grown), "—"))

        fill(server.url, small, 1000, 1000)
        BucketTools(NatsStorage(small, create_bucket=False)).build_index()
        warm = {}
        for name in (bucket, small):
            storage = NatsStorage(name, create_bucket=False)
            storage.listdir(DIRECTORY)
            took = []
            for _ in range(WARM_RUNS):
                started = time.perf_counter()
                storage.listdir(DIRECTORY)
                took.append((time.perf_counter() - started) * 1000)
            warm[name] = took
        ratio = statistics.median(warm[bucket]) / statistics.median(warm[small])
        rows.append((f"warm `listdir` at {args.names:,} names, ms", _spread(warm[bucket]), f"≤ 2x: {ratio:.2f}x"))
        rows.append(("warm `listdir` at 1,000 names, ms", _spread(warm[small]), "—"))

        storage = NatsStorage(bucket, create_bucket=False)
        for label, took in _admin_figures(storage).items():
            rows.append((label, _spread(took), "< 100 ms" if "by name" in label or "count" in label else "bounded"))

        # Saves into three buckets at once, each with 8 idle processes holding a storage on it, rounds interleaved:
        # the indexed bucket; one of as many names without index, whose processes only connected (a stream of a
        # million subjects costs the server more per message than a small one: the two differ by the index only);
        # and a small one whose processes listed it the old way (each holds a watch every save is delivered to).
        fill(server.url, plain, args.names, 1000)
        fill(server.url, f"{plain}_listed", 1, 1)
        variants = {
            "auto": NatsStorage(bucket, create_bucket=False),
            "none": NatsStorage(plain, create_bucket=False, listing="process"),
            "process": NatsStorage(f"{plain}_listed", create_bucket=False, listing="process"),
        }
        children = [
            *_idle(server.url, bucket, "auto"),
            *_idle(server.url, plain, "none"),
            *_idle(server.url, f"{plain}_listed", "process"),
        ]
        rates: dict[str, list[float]] = {listing: [] for listing in variants}
        try:
            order = list(variants)
            for round_ in range(SAVE_ROUNDS):
                for listing in order:  # each first in turn: the first of a round runs slower here
                    rates[listing].append(_saves_per_second(variants[listing], round_))
                order.append(order.pop(0))
        finally:
            _stop(children)
        # The ratio of each round's two rates, run back to back, then the median: the box's drift between rounds
        # (a shared VM's) cancels out, which a ratio of the two medians keeps.
        ratios = [auto / none for auto, none in zip(rates["auto"], rates["none"], strict=True)]
        medians = statistics.median(rates["auto"]) / statistics.median(rates["none"])
        paired = f"≥ 0.9x: {statistics.median(ratios):.2f}x ({min(ratios):.2f}-{max(ratios):.2f})"
        paired += f"; medians' ratio {medians:.2f}x"
        rows.append(("saves/s of 1 KiB, indexed bucket, 8 idle processes", _spread(rates["auto"]), paired))
        rows.append(
            (f"saves/s of 1 KiB, {args.names:,} names without index, 8 idle processes", _spread(rates["none"]), "—")
        )
        old_way = _spread(rates["process"])
        rows.append(("saves/s of 1 KiB, 1 name, 8 idle processes that listed it (old way)", old_way, "—"))

    load = os.getloadavg()
    print(f"{args.names:,} names; {os.cpu_count()} cores, load average {load[0]:.1f} at the end (shared machine).\n")
    print("| figure | median (min, max) | goal |\n|---|---:|---|")
    for figure, value, goal in rows:
        print(f"| {figure} | {value} | {goal} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
