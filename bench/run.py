"""Benchmark natsstorage against nats.go's and nats-py's ObjectStore, the protocol's floor and FileSystemStorage.

    python bench/run.py            # the full run the README's tables come from (about six minutes)
    python bench/run.py --scale    # and a bucket of 1,000,000 names (4 minutes more; nats-server grows to 1.4 GB)
    python bench/run.py --quick    # tiny sizes, one repetition: the test suite runs this
    python bench/run.py --only listing_at_scale   # one section

It starts its own nats-server (loopback, temporary store) and prints Markdown
tables of medians. Every reference is measured in the same run, on the same
server, taking turns run by run, so the ratios compare like with like.
nats.go's rows need Go and Debian's nats.go sources (see natsgo_runner.py);
without them they are skipped, saying so.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import itertools
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import floor
import nats
import nats.js.errors
import natsgo_runner
import scale

KiB = 1024
MiB = 1024 * 1024
NATS_PY_BUCKET = "bench_nats_py"
NATS_PY_STREAM = f"OBJ_{NATS_PY_BUCKET}"
NATS_PY_BATCH = 100  # nats-py operations timed between two clean-ups of the consumers its get leaves
SWEEP_BUCKET = "bench_sweep"  # NatsStorage's, with default settings, emptied after every run
OPERATIONS = ("save", "open + read()", "open + read(), first sight", "exists")  # the size sweep's, as Django names them
FIRST_SIGHT = OPERATIONS[2]  # a read of names this process has not written or read (no client but ours remembers)
FLOOR_GOAL = 0.8  # the "within 20% of the protocol's floor"
NATSGO = (("save", "put"), ("open + read()", "get"), ("exists", "info"))  # natsgo's op for each operation
THREADS = (1, 4, 16)  # sharing one NatsStorage (one connection) in the concurrency section
CONCURRENT_SIZES = (KiB, 100 * KiB)
STEPS = (
    "throughput", "memory", "small_ops", "listing", "seeking", "sweep", "floor_gap", "concurrency", "listing_at_scale",
)  # fmt: skip
WORKER = "worker thread"  # the floor-gap columns: natsstorage called from one
FLOOR_CALLS = "floor, a call each"
FLOOR_CHECKED = "floor, digest checked"
SCALE_FIRST_LOOKS = 3  # fresh processes listing the --scale bucket (each takes its first look, the slow one)
LISTING_GOAL_MS = 100  # the "under 100 ms", for the count and an admin page
LISTDIR_GOAL = 2.0  # the "listdir within 2x of the same call in a small bucket"
TIMEOUT = 30.0  # seconds: natsstorage's timeout setting in the benchmark
# A first look must finish to be measured, but it gets one timeout in all (index.fresh()'s deadline): its
# fresh processes may wait this long; the table tells whether it would fit natsstorage's default.
FIRST_LOOK_TIMEOUT: float | None = None  # a fresh process lists with the default timeout

T = TypeVar("T")


@dataclass(frozen=True)
class Sizes:
    transfers: tuple[int, ...]  # bytes per object for save/read
    nats_py_get_max: int  # nats-py's get is quadratic: only up to this size
    memory: int  # bytes saved then read to measure peak RSS
    small_ops: int  # operations per small-op measurement (nats-py leaves a consumer behind per get)
    listing: tuple[int, ...]  # objects in the listed bucket
    seek: int  # object size for the seek measurement
    reps: int
    sweep: tuple[tuple[int, int], ...]  # (bytes per object, objects per measurement): about 0.2-1 s each
    exists_calls: int  # at least this many per exists measurement: the objects, again and again
    sweep_reps: int
    concurrent: int  # objects per concurrency measurement, shared among the threads
    scale: tuple[int, ...]  # names per bucket listed at scale, smallest first
    scale_more: int  # and with --scale
    directory: int  # entries in the directory listed at scale
    first_looks: int  # fresh processes per bucket listed at scale
    scale_timed: float  # seconds of calls (at least one) per measurement after the first look


FULL = Sizes(
    (10 * MiB, 100 * MiB), 10 * MiB, 1024 * MiB, 400, (1_000, 10_000), 100 * MiB, 15,
    ((KiB, 500), (100 * KiB, 200), (MiB, 60), (10 * MiB, 8), (100 * MiB, 3)), 2000, 7, 160,
    (1_000, 100_000), 1_000_000, 1_000, 5, 0.2,
)  # fmt: skip
QUICK = Sizes(
    (1 * MiB,), 1 * MiB, 8 * MiB, 20, (50,), 2 * MiB, 1, ((KiB, 4), (100 * KiB, 3), (MiB, 2)), 1, 1, 16,
    (200, 2_000), 20_000, 100, 1, 0.01,
)  # fmt: skip


@dataclass
class Row:
    target: str
    ours: float
    nats_py: float | None
    filesystem: float | None
    unit: str
    goal: str
    met: bool

    def ratio(self) -> str:
        if not self.nats_py:
            return "—"
        ratio = self.nats_py / self.ours if self.unit in ("s", "ms") else self.ours / self.nats_py
        return f"{ratio:.2f}x"


@dataclass(frozen=True)
class Rate:
    """Objects/s over the runs: the median, and how far the runs spread around it."""

    runs: tuple[float, ...]

    @property
    def median(self) -> float:
        return statistics.median(self.runs)

    @staticmethod
    def number(value: float) -> str:
        return f"{value:,.0f}" if value >= 10 else f"{value:.1f}"

    def __str__(self) -> str:
        median = self.number(self.median)
        if len(self.runs) < 2:
            return median
        return f"{median} ±{(max(self.runs) - min(self.runs)) / 2 / self.median:.0%}"


class Took(Rate):
    """Milliseconds (or seconds) over the runs: small values keep two decimals."""

    @staticmethod
    def number(value: float) -> str:
        return f"{value:,.0f}" if value >= 100 else f"{value:.1f}" if value >= 10 else f"{value:.2f}"


@dataclass
class RateRow:
    """One line of objects/s: its labels (size or threads, operation), then a Rate per backend measured."""

    labels: tuple[str, ...]
    rates: dict[str, Rate]

    def cell(self, column: str) -> str:
        return str(self.rates[column]) if column in self.rates else "—"

    def versus(self, column: str, of: str = "natsstorage") -> str:
        """``of``'s rate over ``column``'s."""
        if column not in self.rates or of not in self.rates:
            return "—"
        return f"{self.rates[of].median / self.rates[column].median:.2f}x"

    def near_floor(self) -> str:
        if "floor" not in self.rates:
            return "—"
        return "yes" if self.rates["natsstorage"].median >= FLOOR_GOAL * self.rates["floor"].median else "**no**"


def rate_table(
    labels: list[str], columns: list[str], versus: list[str] | list[tuple[str, str]], rows: list[RateRow]
) -> str:
    """Rows of objects/s as Markdown: the labels, a column per backend, natsstorage (or another column, in
    ``(of, column)`` pairs) versus some of them."""
    floor_goal = "floor" in versus
    pairs = [pair if isinstance(pair, tuple) else ("natsstorage", pair) for pair in versus]
    versus_heads = (f"vs {column}" if of == "natsstorage" else f"{of} vs {column}" for of, column in pairs)
    heads = [*labels, *columns, *versus_heads]
    heads += [f"within {1 - FLOOR_GOAL:.0%} of floor"] if floor_goal else []
    aligns = ["---"] * len(labels) + ["---:"] * (len(columns) + len(versus)) + (["---"] if floor_goal else [])
    lines = [f"| {' | '.join(heads)} |", f"|{'|'.join(aligns)}|"]
    for row in rows:
        cells = [*row.labels, *map(row.cell, columns), *(row.versus(column, of) for of, column in pairs)]
        cells += [row.near_floor()] if floor_goal else []
        lines.append(f"| {' | '.join(cells)} |")
    return "\n".join(lines)


def per_second(calls: dict[str, int], seconds: dict[str, float]) -> dict[str, float]:
    """Objects/s by operation, from how many calls each made and the seconds they took."""
    return {operation: calls[operation] / spent for operation, spent in seconds.items()}


def rates_of(runs: dict[str, list[dict[str, float]]], operation: str) -> dict[str, Rate]:
    """``operation``'s Rate for each backend that measured it, from each backend's runs (objects/s by operation)."""
    return {
        column: Rate(tuple(run[operation] for run in results))
        for column, results in runs.items()
        if operation in results[0]
    }


def median_of(reps: int, measure: Callable[[], float]) -> float:
    return statistics.median(measure() for _ in range(reps))


def interleaved_runs(reps: int, *measures: Callable[[], T]) -> list[list[T]]:
    """Each measure's results, taking turns run after run so that drift on the machine hits all alike.

    A first untimed turn warms up connections, buckets and caches.
    """
    for measure in measures:
        measure()
    results: list[list[T]] = [[] for _ in measures]
    for _ in range(reps):
        for values, measure in zip(results, measures, strict=True):
            values.append(measure())
    return results


def interleaved_medians(reps: int, *measures: Callable[[], float]) -> list[float]:
    """Each measure's median, taking turns (see ``interleaved_runs``)."""
    return [statistics.median(values) for values in interleaved_runs(reps, *measures)]


def names_of(prefix: str, count: int) -> list[str]:
    """``count`` distinct names, as natsgo makes them: ``prefix`` + "0", "1", ..."""
    return [f"{prefix}{i}" for i in range(count)]


def size_label(size: int) -> str:
    return f"{size // MiB} MiB" if size >= MiB else f"{size // KiB} KiB"


def setup_django(url: str, timeout: float | None = TIMEOUT) -> None:
    """Django configured for ``url``; ``timeout`` None: natsstorage's default."""
    import django
    from django.conf import settings

    if not settings.configured:
        options: dict[str, Any] = {"servers": [url]} | ({"timeout": timeout} if timeout is not None else {})
        apps = ["django.contrib.admin", "django.contrib.auth", "django.contrib.contenttypes", "natsstorage"]
        settings.configure(INSTALLED_APPS=apps, USE_TZ=True, NATSSTORAGE=options)  # the admin's pages are timed
        django.setup()


def chunks_of(path: Path, size: int = MiB) -> Iterator[bytes]:
    with path.open("rb") as handle:
        while piece := handle.read(size):
            yield piece


class Bench:
    def __init__(self, url: str, workdir: Path, sizes: Sizes, *, at_scale: bool = False) -> None:
        from django.core.files.storage import FileSystemStorage

        from natsstorage import NatsStorage

        self.url = url
        self.workdir = workdir
        self.sizes = sizes
        self.ours = NatsStorage("bench", file_overwrite=True)
        self.plain = NatsStorage(SWEEP_BUCKET)  # default settings, as most projects run it
        self.disk = FileSystemStorage(location=workdir / "fs", allow_overwrite=True)
        self._nats_py_loop = asyncio.new_event_loop()
        self._nats_py: tuple[Any, Any] | None = None
        self.floor = floor.Floor(url)
        self.natsgo: natsgo_runner.NatsGo | None = None
        self.natsgo_skipped = ""  # why there is no nats.go column
        try:
            self.natsgo = natsgo_runner.NatsGo(natsgo_runner.build(workdir), url)
        except natsgo_runner.Unavailable as why:
            self.natsgo_skipped = f"nats.go rows skipped: {why}."
            print(f"bench: {self.natsgo_skipped}", file=sys.stderr, flush=True)
        self.rows: list[Row] = []
        self.sweep_rows: list[RateRow] = []
        self.gap_rows: list[RateRow] = []
        self.threads_rows: list[RateRow] = []
        self._runs = itertools.count()  # see prefix()
        # Listing at scale: names per bucket, the --scale one only when asked.
        self.scale_counts = [*sizes.scale, *([sizes.scale_more] if at_scale else [])]
        self.filled: dict[int, float] = {}  # seconds to fill each bucket
        self.first_looks: dict[int, list[dict[str, float]]] = {}  # what each fresh process saw
        self.scale_runs: dict[int, list[dict[str, float]]] = {}  # ms per call by label, run after run

    def nats_py(self, work: Callable[[Any], Any]) -> Any:
        """Run ``work(object_store)`` with nats-py's own ObjectStore, as its users run it.

        Its own connection, opened once, on a standard asyncio loop (natsstorage
        runs uvloop on its loop thread; nats-py's default is asyncio's loop).
        """

        async def go() -> Any:
            if self._nats_py is None:
                nc = await nats.connect(self.url)
                js = nc.jetstream(timeout=30)
                try:
                    self._nats_py = (nc, await js.object_store(NATS_PY_BUCKET))
                except Exception:  # noqa: BLE001 - nats-py raises its own NotFoundError
                    self._nats_py = (nc, await js.create_object_store(NATS_PY_BUCKET))
            result = await work(self._nats_py[1])
            # nats-py's get leaves its ordered consumers behind; drop them (untimed) before they
            # reach the server's consumer limit.
            jsm = self._nats_py[0].jsm()
            for consumer in await jsm.consumers_info(NATS_PY_STREAM):
                with contextlib.suppress(nats.js.errors.NotFoundError):  # gone meanwhile, by its inactivity
                    await jsm.delete_consumer(NATS_PY_STREAM, consumer.name)
            return result

        return self._nats_py_loop.run_until_complete(go())

    def settle(self) -> None:
        """Let our save's background purge of the version it replaced finish, untimed, before the next measurement."""
        from natsstorage.buckettools import BucketTools

        BucketTools(self.ours).bucket_exists()  # asks for the stream's info, which waits for this process's purges

    def prefix(self) -> str:
        """A new prefix for a run's object names, so that no name is used twice."""
        return f"run{next(self._runs)}/"

    def nats_py_seconds(self, operation: Callable[[Any, str], Any], names: list[str]) -> float:
        """How long nats-py's ``operation(store, name)`` takes on every name, in batches of NATS_PY_BATCH:
        between them, untimed, ``nats_py()`` drops the consumers its get leaves behind."""

        async def timed(store: Any, batch: list[str]) -> float:
            started = time.perf_counter()
            for name in batch:
                await operation(store, name)
            return time.perf_counter() - started

        batches = [names[start : start + NATS_PY_BATCH] for start in range(0, len(names), NATS_PY_BATCH)]
        return sum(float(self.nats_py(lambda store, batch=batch: timed(store, batch))) for batch in batches)

    def close(self) -> None:
        if self._nats_py is not None:
            self._nats_py_loop.run_until_complete(self._nats_py[0].close())
        self._nats_py_loop.close()
        if self.natsgo is not None:
            self.natsgo.close()
        self.floor.close()
        from natsstorage import close_connections

        close_connections()

    def file_of(self, size: int) -> Path:
        path = self.workdir / f"data-{size}.bin"
        if not path.exists():
            with path.open("wb") as handle:
                for _ in range(0, size, MiB):
                    handle.write(os.urandom(min(MiB, size)))
                handle.truncate(size)
        return path

    # -- 1 and 2: throughput -------------------------------------------------------

    def throughput(self) -> None:
        for size in self.sizes.transfers:
            self.throughput_of(size)

    def throughput_of(self, size: int) -> None:
        from django.core.files import File

        path, mb = self.file_of(size), size / 1e6
        label = f"{size // MiB} MiB"

        def save(storage: Any) -> float:
            started = time.perf_counter()
            with path.open("rb") as handle:
                storage.save("object.bin", File(handle))
            rate = mb / (time.perf_counter() - started)
            self.settle()
            return rate

        def read(storage: Any) -> float:
            started = time.perf_counter()
            with storage.open("object.bin") as handle:
                for _ in handle.chunks():
                    pass
            return mb / (time.perf_counter() - started)

        async def nats_py_put(store: Any) -> float:
            started = time.perf_counter()
            with path.open("rb") as handle:
                await store.put("object.bin", handle)
            return mb / (time.perf_counter() - started)

        async def nats_py_get(store: Any) -> float:
            started = time.perf_counter()
            await store.get("object.bin")
            return mb / (time.perf_counter() - started)

        reps = self.sizes.reps
        ours_save, theirs_save, disk_save = interleaved_medians(
            reps, lambda: save(self.ours), lambda: self.nats_py(nats_py_put), lambda: save(self.disk)
        )
        self.rows.append(
            Row(f"save {label} from disk", ours_save, theirs_save, disk_save, "MB/s",
                "≥ 250 MB/s and ≥ 2.5x nats-py", ours_save >= 250 and ours_save >= 2.5 * theirs_save)
        )  # fmt: skip
        if size <= self.sizes.nats_py_get_max:
            ours_read, theirs_read, disk_read = interleaved_medians(
                reps, lambda: read(self.ours), lambda: self.nats_py(nats_py_get), lambda: read(self.disk)
            )
        else:  # nats-py's get is quadratic: once is enough to show it
            ours_read, disk_read = interleaved_medians(reps, lambda: read(self.ours), lambda: read(self.disk))
            theirs_read = self.nats_py(nats_py_get)
        goal = "≥ 300 MB/s and ≥ 15x nats-py" if size <= self.sizes.nats_py_get_max else "≥ 300 MB/s"
        met = ours_read >= 300 and (size > self.sizes.nats_py_get_max or ours_read >= 15 * theirs_read)
        self.rows.append(Row(f"read {label} (chunks())", ours_read, theirs_read, disk_read, "MB/s", goal, met))

    # -- 3: memory -----------------------------------------------------------------

    def memory(self) -> None:
        child = subprocess.run(
            [sys.executable, __file__, "--memory-child", str(self.sizes.memory), "--url", self.url],
            capture_output=True,
            text=True,
            check=True,
        )
        grown_mib, seconds = (float(value) for value in child.stdout.split())
        label = f"peak RSS growth, save + read {self.sizes.memory // MiB} MiB"
        self.rows.append(Row(label, grown_mib, None, None, "MiB", "≤ 64 MiB", grown_mib <= 64))

    # -- 4: small operations ---------------------------------------------------------

    def small_ops(self) -> None:
        from django.core.files.base import ContentFile

        n, payload = self.sizes.small_ops, os.urandom(1024)
        self.ours.save("small.bin", ContentFile(payload))
        self.nats_py(lambda store: store.put("small.bin", payload))

        def ours_rate(operation: Callable[[], Any]) -> float:
            started = time.perf_counter()
            for _ in range(n):
                operation()
            rate = n / (time.perf_counter() - started)
            self.settle()
            return rate

        def theirs_rate(operation: Callable[[Any], Any]) -> float:
            async def loop(store: Any) -> float:
                started = time.perf_counter()
                for _ in range(batch):
                    await operation(store)
                return time.perf_counter() - started

            # In batches: between them, untimed, nats_py() drops the consumers nats-py's get left
            # behind, before they reach the server's limit (seen at a few hundred).
            batch = min(n, NATS_PY_BATCH)
            seconds = sum(float(self.nats_py(loop)) for _ in range(n // batch))
            return (n // batch) * batch / seconds

        def ours_save_open() -> None:
            self.ours.save("small2.bin", ContentFile(payload))
            with self.ours.open("small2.bin") as handle:
                handle.read()

        async def theirs_save_open(store: Any) -> None:
            await store.put("small2.bin", payload)
            await store.get("small2.bin")

        async def theirs_info(store: Any) -> Any:
            return await store.get_info("small.bin")

        cases = [
            ("exists()", lambda: self.ours.exists("small.bin"), theirs_info),
            ("size()", lambda: self.ours.size("small.bin"), theirs_info),
            ("save() + open().read() of 1 KiB", ours_save_open, theirs_save_open),
        ]
        for label, ours, theirs in cases:
            ours_ops = median_of(self.sizes.reps, lambda ours=ours: ours_rate(ours))
            theirs_ops = median_of(self.sizes.reps, lambda theirs=theirs: theirs_rate(theirs))
            met = theirs_ops / ours_ops <= 1.3
            self.rows.append(Row(label, ours_ops, theirs_ops, None, "ops/s", "cost ≤ 1.3x nats-py", met))

    # -- 5: listing ------------------------------------------------------------------

    def listing(self) -> None:
        for count in self.sizes.listing:
            self.listing_of(count)

    def listing_of(self, count: int) -> None:
        from django.core.files.base import ContentFile

        from natsstorage import NatsStorage
        from natsstorage.buckettools import BucketTools

        storage = NatsStorage(f"bench_list_{count}", file_overwrite=True)
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda i: storage.save(f"dir{i % 10}/file{i}.txt", ContentFile(b"x")), range(count)))

        def timed() -> float:
            started = time.perf_counter()
            directories, files = storage.listdir("")
            assert len(directories) == min(count, 10)
            return time.perf_counter() - started

        seconds = median_of(self.sizes.reps, timed)
        goal = "< 0.5 s" if count >= 10_000 else f"{seconds / count * 1e6:.0f} µs per object"
        self.rows.append(Row(f"listdir of {count:,} objects", seconds, None, None, "s", goal, seconds < 0.5))
        BucketTools(storage).destroy()

    # -- 6: seeking ------------------------------------------------------------------

    def seeking(self) -> None:
        from django.core.files import File

        size = self.sizes.seek
        with self.file_of(size).open("rb") as handle:
            self.ours.save("seek.bin", File(handle))

        def seek_read() -> float:
            started = time.perf_counter()
            with self.ours.open("seek.bin") as handle:
                handle.seek(size - 4096)
                assert len(handle.read(4096)) == 4096
            return (time.perf_counter() - started) * 1000

        def full_read() -> float:
            started = time.perf_counter()
            with self.ours.open("seek.bin") as handle:
                for _ in handle.chunks():
                    pass
            return (time.perf_counter() - started) * 1000

        seek_ms = median_of(self.sizes.reps, seek_read)
        full_ms = median_of(self.sizes.reps, full_read)
        label = f"seek to the last 4 KiB of {size // MiB} MiB + read (full read: {full_ms:.0f} ms)"
        goal, met = "about one chunk, not the prefix", seek_ms * 10 < full_ms
        self.rows.append(Row(label, seek_ms, None, None, "ms", goal, met))

    # -- 7: size sweep --------------------------------------------------------------

    def sweep(self) -> None:
        for size, count in self.sizes.sweep:
            self.sweep_of(size, count)

    def sweep_of(self, size: int, count: int) -> None:
        """Objects/s of save, open + read() and exists on ``count`` distinct names, for every backend that can."""
        from django.core.files.storage import FileSystemStorage

        payload = os.urandom(size)
        disk_dir = self.workdir / "sweep"
        disk = FileSystemStorage(location=disk_dir)
        passes = max(1, self.sizes.exists_calls // count)  # exists is quick: time enough calls of it
        calls = {"save": count, "open + read()": count, FIRST_SIGHT: count, "exists": count * passes}

        def ours_run() -> dict[str, float]:
            rates = self.django_rates(self.plain, payload, calls)
            self.floor.purge_stream(f"OBJ_{SWEEP_BUCKET}")
            return rates

        def disk_run() -> dict[str, float]:
            rates = self.django_rates(disk, payload, calls)
            shutil.rmtree(disk_dir)
            return rates

        def natsgo_run() -> dict[str, float]:
            assert self.natsgo is not None
            prefix = self.prefix()
            seconds = {
                operation: self.natsgo.seconds(op, prefix, size=size, count=count, passes=calls[operation] // count)
                for operation, op in NATSGO
            }
            seconds[FIRST_SIGHT] = seconds["open + read()"]  # it remembers nothing between reads
            self.floor.purge_stream(natsgo_runner.STREAM)
            return per_second(calls, seconds)

        def nats_py_run() -> dict[str, float]:
            names = names_of(self.prefix(), count)

            async def put(store: Any, name: str) -> None:
                await store.put(name, payload)

            async def get(store: Any, name: str) -> None:
                assert len((await store.get(name)).data) == size

            async def get_info(store: Any, name: str) -> None:
                await store.get_info(name)

            seconds = {"save": self.nats_py_seconds(put, names)}
            if size <= self.sizes.nats_py_get_max:  # its get is quadratic: beyond, it would take minutes
                seconds["open + read()"] = seconds[FIRST_SIGHT] = self.nats_py_seconds(get, names)
            seconds["exists"] = self.nats_py_seconds(get_info, names * passes)
            self.floor.purge_stream(NATS_PY_STREAM)
            return per_second(calls, seconds)

        measures: dict[str, Callable[[], dict[str, float]]] = {"natsstorage": ours_run}
        if self.natsgo is not None:
            measures["nats.go"] = natsgo_run
        if size <= floor.CHUNK_SIZE:
            measures["floor"] = partial(self.floor_rates, payload, calls)
        measures["nats-py ObjectStore"] = nats_py_run
        measures["FileSystemStorage"] = disk_run
        runs = dict(zip(measures, interleaved_runs(self.sizes.sweep_reps, *measures.values()), strict=True))
        for operation in OPERATIONS:
            self.sweep_rows.append(RateRow((size_label(size), operation), rates_of(runs, operation)))

    def django_rates(self, storage: Any, payload: bytes, calls: dict[str, int]) -> dict[str, float]:
        """Objects/s of Django's Storage API as projects call it, for NatsStorage and FileSystemStorage alike:
        ``calls`` says which operations (``exists`` over the names again and again) and how many."""
        from django.core.files.base import ContentFile

        names, seconds, size = names_of(self.prefix(), calls["save"]), {}, len(payload)
        started = time.perf_counter()
        for name in names:
            assert storage.save(name, ContentFile(payload)) == name
        seconds["save"] = time.perf_counter() - started
        for operation in ("open + read()", FIRST_SIGHT):
            if operation == FIRST_SIGHT and storage is self.plain:  # as another process reads them
                self.plain.bucket.known.clear()
            started = time.perf_counter()
            for name in names:
                with storage.open(name) as handle:
                    assert len(handle.read()) == size
            seconds[operation] = time.perf_counter() - started
            if storage is not self.plain:  # nothing remembered, nothing to forget: the same reads
                seconds[FIRST_SIGHT] = seconds[operation]
                break
        if "exists" in calls:
            started = time.perf_counter()
            for name in names * (calls["exists"] // len(names)):
                assert storage.exists(name)
            seconds["exists"] = time.perf_counter() - started
        return per_second(calls, seconds)

    def floor_rates(
        self, payload: bytes, calls: dict[str, int], *, each_a_call: bool = False, check: bool = False
    ) -> dict[str, float]:
        """The floor's objects/s: timed inside its loop, or ``each_a_call`` from this thread (as a synchronous
        program calls nats-py); ``check``: its reads check the digest, as every read here does."""
        names = names_of(self.prefix(), calls["save"])
        timed = self.floor.calls if each_a_call else self.floor.seconds

        async def save(name: str) -> None:
            await self.floor.save(name, payload)

        async def read(name: str) -> None:
            await self.floor.read(name, check=check)

        seconds = {"save": timed(save, names), "open + read()": timed(read, names)}
        seconds[FIRST_SIGHT] = seconds["open + read()"]
        if "exists" in calls:
            seconds["exists"] = timed(self.floor.exists, names * (calls["exists"] // len(names)))
        self.floor.purge_stream(floor.STREAM)
        return per_second(calls, seconds)

    # -- 7b: where the gap to the floor is ---------------------------------------------

    def floor_gap(self) -> None:
        """Objects of one chunk: natsstorage from the main thread and from a worker thread, against the floor
        timed inside its loop, the floor called once per operation from the main thread, and the floor checking
        the digest as natsstorage's reads do."""
        with ThreadPoolExecutor(1) as worker:  # one thread, kept, as a server's are
            for size, count in self.sizes.sweep:
                if size <= floor.CHUNK_SIZE:
                    self._floor_gap(size, count, worker)

    def _floor_gap(self, size: int, count: int, worker: ThreadPoolExecutor) -> None:
        payload = os.urandom(size)
        calls = dict.fromkeys(OPERATIONS[:3], count)

        def ours(in_worker: bool) -> dict[str, float]:
            if in_worker:
                rates = worker.submit(self.django_rates, self.plain, payload, calls).result()
            else:
                rates = self.django_rates(self.plain, payload, calls)
            self.floor.purge_stream(f"OBJ_{SWEEP_BUCKET}")
            return rates

        measures: dict[str, Callable[[], dict[str, float]]] = {
            "natsstorage": partial(ours, False),
            WORKER: partial(ours, True),
            "floor": partial(self.floor_rates, payload, calls),
            FLOOR_CALLS: partial(self.floor_rates, payload, calls, each_a_call=True),
            FLOOR_CHECKED: partial(self.floor_rates, payload, calls, check=True),
        }
        runs = dict(zip(measures, interleaved_runs(self.sizes.sweep_reps, *measures.values()), strict=True))
        for operation in calls:
            self.gap_rows.append(RateRow((size_label(size), operation), rates_of(runs, operation)))

    # -- 8: concurrency --------------------------------------------------------------

    def concurrency(self) -> None:
        """Threads saving, then reading, small objects through one NatsStorage, so on one connection."""
        for size in CONCURRENT_SIZES:
            self._concurrency(size)

    def _concurrency(self, size: int) -> None:
        from django.core.files.base import ContentFile

        count, payload = self.sizes.concurrent, os.urandom(size)
        operations = OPERATIONS[:2]
        calls = dict.fromkeys(operations, count)

        def save(name: str) -> None:
            assert self.plain.save(name, ContentFile(payload)) == name

        def read(name: str) -> None:
            with self.plain.open(name) as handle:
                assert len(handle.read()) == size

        def ours_run(threads: int) -> dict[str, float]:
            names, seconds = names_of(self.prefix(), count), {}
            shares = [names[thread::threads] for thread in range(threads)]  # each thread works through its own
            with ThreadPoolExecutor(threads) as pool:
                for operation, work in zip(operations, (save, read), strict=True):
                    started = time.perf_counter()
                    list(pool.map(lambda share, work=work: [work(name) for name in share], shares))
                    seconds[operation] = time.perf_counter() - started
            self.floor.purge_stream(f"OBJ_{SWEEP_BUCKET}")
            return per_second(calls, seconds)

        def natsgo_run(threads: int) -> dict[str, float]:
            assert self.natsgo is not None
            prefix = self.prefix()
            seconds = {
                operation: self.natsgo.seconds(op, prefix, size=size, count=count, workers=threads)
                for operation, op in NATSGO[:2]
            }
            self.floor.purge_stream(natsgo_runner.STREAM)
            return per_second(calls, seconds)

        measures: dict[tuple[int, str], Callable[[], dict[str, float]]] = {}
        for threads in THREADS:
            measures[threads, "natsstorage"] = lambda threads=threads: ours_run(threads)
            if self.natsgo is not None:
                measures[threads, "nats.go"] = lambda threads=threads: natsgo_run(threads)
        runs = dict(zip(measures, interleaved_runs(self.sizes.sweep_reps, *measures.values()), strict=True))
        for threads in THREADS:
            of_threads = {column: results for (of, column), results in runs.items() if of == threads}
            for operation in operations:
                labels = (size_label(size), str(threads), operation)
                self.threads_rows.append(RateRow(labels, rates_of(of_threads, operation)))

    # -- 9: listing at scale ---------------------------------------------------------

    def listing_at_scale(self) -> None:
        """Buckets of many names: their first look in fresh processes, then listings, the count, admin pages."""
        from natsstorage import NatsStorage
        from natsstorage.buckettools import BucketTools
        from natsstorage.exceptions import NatsUnavailable

        def progress(done: str, started: float) -> None:
            print(f"bench: ... {done} in {time.perf_counter() - started:.1f} s", file=sys.stderr, flush=True)

        buckets = {count: f"bench_scale_{count}" for count in self.scale_counts}
        for count, bucket in buckets.items():
            self.filled[count] = scale.fill(self.url, bucket, count, self.sizes.directory)
            print(f"bench: ... filled {count:,} names in {self.filled[count]:.1f} s", file=sys.stderr, flush=True)
        started = time.perf_counter()
        self.first_looks = {count: [] for count in buckets}
        for turn in range(self.sizes.first_looks):  # in turns, so that drift on the machine hits all alike
            for count, looks in self.first_looks.items():
                if count in self.sizes.scale or turn < SCALE_FIRST_LOOKS:
                    looks.append(self.first_look(buckets[count]))
        progress("first looks in fresh processes", started)
        started = time.perf_counter()
        storages = {count: NatsStorage(bucket) for count, bucket in buckets.items()}
        for storage in storages.values():
            while True:  # this process's first look, untimed; it goes on making the index after a timeout
                with contextlib.suppress(NatsUnavailable):
                    storage.listdir(scale.DIRECTORY)
                    break
        progress("this process's first looks", started)
        started = time.perf_counter()

        def per_call(call: Callable[[], object]) -> float:
            """Milliseconds per call, over at least ``scale_timed`` seconds of calls."""
            calls, started = 0, time.perf_counter()
            while True:
                call()
                calls += 1
                if (elapsed := time.perf_counter() - started) >= self.sizes.scale_timed:
                    return elapsed / calls * 1000

        def run(count: int) -> dict[str, float]:
            calls = scale.calls(count, self.sizes.directory)
            return {label: per_call(partial(call, storages[count])) for label, call in calls.items()}

        measures = [partial(run, count) for count in buckets]
        self.scale_runs = dict(zip(buckets, interleaved_runs(self.sizes.sweep_reps, *measures), strict=True))
        progress("calls after the first look", started)
        for storage in storages.values():
            BucketTools(storage).destroy()

    def first_look(self, bucket: str) -> dict[str, float]:
        """What a fresh process's first ``listdir`` of ``bucket`` costs (see ``first_look_child``)."""
        child = subprocess.run(
            [sys.executable, __file__, "--first-look-child", bucket, "--url", self.url],
            capture_output=True,
            text=True,
            check=True,
        )
        look: dict[str, float] = json.loads(child.stdout)
        return look

    # -- tables ----------------------------------------------------------------------

    def table(self) -> str:
        def number(value: float | None, unit: str) -> str:
            if value is None:
                return "—"
            return f"{value:,.3f}" if unit == "s" else f"{value:,.0f}" if value >= 10 else f"{value:.1f}"

        lines = [
            "| target | natsstorage | nats-py ObjectStore | FileSystemStorage | unit | vs nats-py | goal | met |",
            "|---|---:|---:|---:|---|---:|---|---|",
        ]
        for row in self.rows:
            lines.append(
                f"| {row.target} | {number(row.ours, row.unit)} | {number(row.nats_py, row.unit)} "
                f"| {number(row.filesystem, row.unit)} | {row.unit} | {row.ratio()} | {row.goal} "
                f"| {'yes' if row.met else '**no**'} |"
            )
        return "\n".join(lines)

    def sweep_table(self) -> str:
        return rate_table(
            ["size", "operation"],
            ["natsstorage", "nats.go", "floor", "nats-py ObjectStore", "FileSystemStorage"],
            ["nats.go", "floor"],
            self.sweep_rows,
        )

    def gap_table(self) -> str:
        return rate_table(
            ["size", "operation"],
            ["natsstorage", WORKER, "floor", FLOOR_CALLS, FLOOR_CHECKED],
            [("natsstorage", "floor"), ("natsstorage", FLOOR_CALLS), (WORKER, "floor"), (WORKER, FLOOR_CHECKED)],
            self.gap_rows,
        )

    def threads_table(self) -> str:
        return rate_table(["size", "threads", "operation"], ["natsstorage", "nats.go"], ["nats.go"], self.threads_rows)

    def scale_table(self) -> str:
        """Milliseconds per call after the first look: a column per bucket, then the issue's goals."""
        counts, small, big = [*self.sizes.scale, self.sizes.scale_more], self.sizes.scale[0], self.sizes.scale[-1]
        heads = ["after the first look: ms per call", *(f"{count:,} names" for count in counts), "goal", "met"]
        lines = [f"| {' | '.join(heads)} |", f"|---|{'---:|' * len(counts)}---|---|"]
        for label in self.scale_runs[small][0]:
            took = {count: Took(tuple(run[label] for run in runs)) for count, runs in self.scale_runs.items()}
            goal, met = "—", ""
            if label == scale.LISTDIR:
                ratio = took[big].median / took[small].median
                goal = f"{big:,} names ≤ {LISTDIR_GOAL:g}x {small:,}: {ratio:.2f}x"
                met = "yes" if ratio <= LISTDIR_GOAL else "**no**"
            elif label in scale.UNDER_100_MS:
                goal = f"< {LISTING_GOAL_MS} ms at {big:,} names"
                met = "yes" if took[big].median < LISTING_GOAL_MS else "**no**"
            cells = [str(took[count]) if count in took else "not run (`--scale`)" for count in counts]
            lines.append(f"| {' | '.join((label, *cells, goal, met))} |")
        return "\n".join(lines)

    def first_look_table(self) -> str:
        """A fresh process's first listing of each bucket: its time and memory, and the time to fill the bucket."""
        from natsstorage import conf

        default_timeout = float(conf.OPTIONS["timeout"].default)  # type: ignore[arg-type]
        heads = ["names", "filled in, s", "first look, s", "per 100,000 names, s",
                 f"within the default timeout ({default_timeout:g} s)", "RSS growth, MiB", "per name, bytes",
                 "index.py's estimate, bytes", "peak RSS growth, MiB"]  # fmt: skip
        lines = [f"| {' | '.join(heads)} |", f"|{'---:|' * len(heads)}"]
        for count in [*self.sizes.scale, self.sizes.scale_more]:
            looks = self.first_looks.get(count)
            if not looks:
                lines.append(f"| {count:,} | not run: pass `--scale` |{' |' * (len(heads) - 2)}")
                continue
            seconds, grown, peak = (Took(tuple(look[key] for look in looks)) for key in ("seconds", "grown", "peak"))
            estimate = scale.estimate(count, self.sizes.directory)
            cells = [f"{count:,}", Took.number(self.filled[count]), str(seconds),
                     Took.number(seconds.median * 100_000 / count),
                     "yes",
                     str(grown), f"{grown.median * MiB / count:,.0f}", f"{estimate:,.0f}", str(peak)]  # fmt: skip
            lines.append(f"| {' | '.join(cells)} |")
        return "\n".join(lines)

    def report(self) -> str:
        """Every table under its heading, with what its columns mean."""
        reps, natsgo = self.sizes.sweep_reps, self.natsgo
        spread = f"Median of {reps} runs ± half their range, as a share of the median." if reps > 1 else "One run."
        reference = f"Reference: nats.go {natsgo.version} (bench/natsgo)." if natsgo else self.natsgo_skipped
        from natsstorage import objectstore

        sweep_notes = [
            f"{spread} Distinct names, default settings. {reference}",
            "",
            "- save: `storage.save(name, ContentFile(data))`; nats.go `PutBytes`, nats-py `put`",
            "- open + read(): `with storage.open(name) as f: f.read()`; nats.go `GetBytes`, nats-py `get` "
            f"(not above {size_label(self.sizes.nats_py_get_max)}: it is quadratic). NatsStorage remembers the "
            f"metadata of the last {objectstore.KNOWN_NAMES:,} names it wrote, read or deleted, and asks for a "
            "one-chunk object's chunk beside its metadata: these names were just saved",
            "- open + read(), first sight: the same reads with nothing remembered, as another process reads them "
            "(the references remember nothing: their numbers are the read's)",
            f"- exists: `storage.exists(name)`; nats.go `GetInfo`, nats-py `get_info`; over the saved names as many "
            f"times as it takes to make at least {self.sizes.exists_calls:,} calls",
            "- floor: the same round trips made with nats-py directly on one connection, nothing else "
            f"(objects of one {size_label(floor.CHUNK_SIZE)} chunk only; bench/floor.py)",
            "- vs: natsstorage's objects/s over the reference's (above 1.00x: natsstorage is faster)",
        ]
        gap_notes = [
            f"{spread} The size sweep's operations on objects of one chunk, from where the time goes: natsstorage "
            "called from the main thread (as above), and from one worker thread (a pool's, kept, as most servers "
            "run Django); the floor timed inside its loop (as above), called once per operation from the main thread "
            "(what a synchronous program using nats-py directly pays: the loop run once per call; uvloop sets up its "
            "signal wake-up on every run in the main thread), and checking the digest as every read here does.",
        ]
        threads_note = (
            f"{spread} {self.sizes.concurrent} objects saved, then read, per run, shared among the threads; "
            "nats.go: as many goroutines on its one connection. The threads are a pool's, not the main thread: "
            f"a call from one runs the NATS loop itself while no other thread does. {reference}"
        )
        looks = self.sizes.first_looks
        looks_note = (
            f"median of {looks} processes ± half their range ({SCALE_FIRST_LOOKS} at {self.sizes.scale_more:,} names)"
            if looks > 1
            else "one process"
        )
        scale_notes = [
            f"Buckets filled with raw publishes on one nats-py connection, pipelined (bench/scale.py): each object "
            f"one chunk of 1 to {scale.MAX_SIZE} bytes; `{scale.DIRECTORY}/` holds {self.sizes.directory:,} names, "
            f"the rest are {scale.OTHERS:,} to a directory. The machine is shared (other jobs run meanwhile): the "
            "spreads say how much that moved the numbers.",
            "",
            f"- after the first look: this process's index made, each call repeated for at least "
            f"{self.sizes.scale_timed:g} s; {spread[0].lower()}{spread[1:]}",
            f"- admin page: the objects page's `Rows` through Django's `Paginator`, in the order named (size: largest "
            f"first; modified: newest first): the count and size of all, its first {scale.PAGE} rows from the index, "
            "then their metadata in one round trip (what the page asks of NATS; the template is not rendered)",
            f'- first look: a fresh process, connected, calls `listdir("{scale.DIRECTORY}")` for the first time; '
            f"RSS growth: VmRSS after it less VmRSS before, peak: VmHWM; {looks_note}",
            "- per name: RSS growth over names (in a small bucket, mostly what any first listing costs); index.py's "
            "estimate: its ENTRY_BYTES plus the names' own size (sys.getsizeof)",
            "- within the default timeout: fresh processes list with the default `timeout`, which bounds the wait "
            "for progress, not the whole first look (a failed first look would have stopped this run)",
        ]
        sections = [
            ("## Targets", [self.table()], self.rows),
            ("## Size sweep: objects/s", ["\n".join(sweep_notes), self.sweep_table()], self.sweep_rows),
            (
                "## Small objects: where the gap to the floor is, objects/s",
                ["\n".join(gap_notes), self.gap_table()],
                self.gap_rows,
            ),
            (
                "## Concurrency: objects/s, threads sharing one NatsStorage",
                [threads_note, self.threads_table()],
                self.threads_rows,
            ),
        ]
        if self.scale_runs:  # its tables need runs
            sections.append(
                ("## Listing at scale", ["\n".join(scale_notes), self.scale_table(), self.first_look_table()], True)
            )
        blocks = [block for heading, body, shown in sections if shown for block in (heading, *body)]
        return "\n\n".join(blocks)


def resident(field: str) -> float:
    """``VmRSS`` (now) or ``VmHWM`` (peak) of this process, in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def memory_child(size: int, url: str) -> None:
    """Save and read ``size`` bytes made on the fly; print the peak RSS growth (MiB) and seconds."""
    setup_django(url)
    from django.core.files.base import ContentFile, File

    from natsstorage import NatsStorage

    storage = NatsStorage("bench_memory", file_overwrite=True)
    storage.save("warm-up", ContentFile(os.urandom(MiB)))  # connect, create the bucket, import everything
    with storage.open("warm-up") as handle:
        for _ in handle.chunks():
            pass
    Path("/proc/self/clear_refs").write_text("5")  # resets the peak (VmHWM) to the current RSS
    baseline = resident("VmRSS")

    class Generated(File):  # type: ignore[type-arg]
        """``size`` bytes of a repeating random block, never all in memory."""

        def __init__(self) -> None:
            super().__init__(None, "generated.bin")
            self.block = os.urandom(MiB)

        @property
        def size(self) -> int:
            return size

        def chunks(self, chunk_size: int | None = None) -> Iterator[bytes]:
            for offset in range(0, size, MiB):
                yield self.block[: min(MiB, size - offset)]

    started = time.perf_counter()
    storage.save("generated.bin", Generated())
    digest = hashlib.sha256()
    with storage.open("generated.bin") as handle:
        for chunk in handle.chunks():
            digest.update(chunk)
    seconds = time.perf_counter() - started
    peak = resident("VmHWM")
    storage.delete("generated.bin")
    print(f"{peak - baseline:.1f} {seconds:.2f}")


def first_look_child(bucket: str, url: str) -> None:
    """List ``bucket`` once in this fresh process; print the seconds and the RSS growth (MiB: after, and peak)."""
    setup_django(url, FIRST_LOOK_TIMEOUT)
    from natsstorage import NatsStorage
    from natsstorage.buckettools import BucketTools

    storage = NatsStorage(bucket)
    assert BucketTools(storage).bucket_exists()  # connects and imports: only the index is left to make
    Path("/proc/self/clear_refs").write_text("5")  # resets the peak (VmHWM) to the current RSS
    baseline = resident("VmRSS")
    started = time.perf_counter()
    storage.listdir(scale.DIRECTORY)
    seconds = time.perf_counter() - started
    print(json.dumps({"seconds": seconds, "grown": resident("VmRSS") - baseline, "peak": resident("VmHWM") - baseline}))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny sizes, one repetition")
    parser.add_argument(
        "--scale",
        action="store_true",
        help=f"list a bucket of {FULL.scale_more:,} names too ({QUICK.scale_more:,} quick)",
    )
    parser.add_argument("--only", choices=STEPS, help="run this section only")
    parser.add_argument("--memory-child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--first-look-child", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:
        memory_child(args.memory_child, args.url)
        return 0
    if args.first_look_child:
        first_look_child(args.first_look_child, args.url)
        return 0

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from natsstorage.testing import NatsServer

    sizes = QUICK if args.quick else FULL
    with tempfile.TemporaryDirectory(prefix="natsstorage-bench-") as workdir, NatsServer() as server:
        setup_django(server.url)
        bench = Bench(server.url, Path(workdir), sizes, at_scale=args.scale)
        for name in [args.only] if args.only else STEPS:
            print(f"bench: {name} ...", file=sys.stderr, flush=True)
            started = time.perf_counter()
            getattr(bench, name)()
            print(f"bench: {name} took {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
        bench.close()
    print(f"Machine: {os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()}, "
          f"nats-server on loopback; targets: medians of {sizes.reps} runs.\n")  # fmt: skip
    print(bench.report())
    return 0


if __name__ == "__main__":
    sys.exit(main())
