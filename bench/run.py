"""Benchmark natsstorage against nats-py's ObjectStore and Django's FileSystemStorage.

    python bench/run.py            # the full run the README's table comes from (a few minutes)
    python bench/run.py --quick    # tiny sizes, one repetition: the test suite runs this

It starts its own nats-server (loopback, temporary store) and prints a
Markdown table of medians. Every reference is measured in the same run, on
the same server, so the ratios compare like with like.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nats
import nats.js.errors

MiB = 1024 * 1024
NATS_PY_BUCKET = "bench_nats_py"
NATS_PY_STREAM = f"OBJ_{NATS_PY_BUCKET}"
NATS_PY_BATCH = 100  # nats-py operations timed between two clean-ups of the consumers its get leaves


@dataclass(frozen=True)
class Sizes:
    transfers: tuple[int, ...]  # bytes per object for save/read
    nats_py_get_max: int  # nats-py's get is quadratic: only up to this size
    memory: int  # bytes saved then read to measure peak RSS
    small_ops: int  # operations per small-op measurement (nats-py leaves a consumer behind per get)
    listing: tuple[int, ...]  # objects in the listed bucket
    seek: int  # object size for the seek measurement
    reps: int


FULL = Sizes((10 * MiB, 100 * MiB), 10 * MiB, 1024 * MiB, 400, (1_000, 10_000), 100 * MiB, 15)
QUICK = Sizes((1 * MiB,), 1 * MiB, 8 * MiB, 20, (50,), 2 * MiB, 1)


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


def median_of(reps: int, measure: Callable[[], float]) -> float:
    return statistics.median(measure() for _ in range(reps))


def interleaved_medians(reps: int, *measures: Callable[[], float]) -> list[float]:
    """Each measure's median, taking turns run after run so that drift on the machine hits all alike.

    A first untimed turn warms up connections, buckets and caches.
    """
    for measure in measures:
        measure()
    results: list[list[float]] = [[] for _ in measures]
    for _ in range(reps):
        for values, measure in zip(results, measures, strict=True):
            values.append(measure())
    return [statistics.median(values) for values in results]


def setup_django(url: str) -> None:
    import django
    from django.conf import settings

    if not settings.configured:
        settings.configure(INSTALLED_APPS=["natsstorage"], USE_TZ=True, NATSSTORAGE={"servers": [url], "timeout": 30.0})
        django.setup()


def chunks_of(path: Path, size: int = MiB) -> Iterator[bytes]:
    with path.open("rb") as handle:
        while piece := handle.read(size):
            yield piece


class Bench:
    def __init__(self, url: str, workdir: Path, sizes: Sizes) -> None:
        from django.core.files.storage import FileSystemStorage

        from natsstorage import NatsStorage, _bridge

        self.url = url
        self.workdir = workdir
        self.sizes = sizes
        self.ours = NatsStorage("bench", file_overwrite=True)
        self.disk = FileSystemStorage(location=workdir / "fs", allow_overwrite=True)
        self.bridge = _bridge
        self._nats_py_loop = asyncio.new_event_loop()
        self._nats_py: tuple[Any, Any] | None = None
        self.rows: list[Row] = []

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
        self.bridge.run(self.ours.bucket.stream.settled())

    def close(self) -> None:
        if self._nats_py is not None:
            self._nats_py_loop.run_until_complete(self._nats_py[0].close())
        self._nats_py_loop.close()
        self.bridge.close_connections()

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
        self.bridge.run(storage.bucket.destroy())

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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny sizes, one repetition")
    parser.add_argument("--memory-child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:
        memory_child(args.memory_child, args.url)
        return 0

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from natsstorage.testing import NatsServer

    sizes = QUICK if args.quick else FULL
    with tempfile.TemporaryDirectory(prefix="natsstorage-bench-") as workdir, NatsServer() as server:
        setup_django(server.url)
        bench = Bench(server.url, Path(workdir), sizes)
        for step in (bench.throughput, bench.memory, bench.small_ops, bench.listing, bench.seeking):
            print(f"bench: {step.__name__} ...", file=sys.stderr, flush=True)
            step()
        bench.close()
    print(f"Machine: {os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()}, "
          f"nats-server on loopback; medians of {sizes.reps} runs.\n")  # fmt: skip
    print(bench.table())
    return 0


if __name__ == "__main__":
    sys.exit(main())
