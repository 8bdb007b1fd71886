"""What fsync before every acknowledgement costs a save: nats-server's default against ``sync_interval: always``.

    python bench/durability.py             # the run docs/durability.md's table comes from (about two minutes)
    python bench/durability.py --cluster   # and the same on a 3-node cluster, R3 buckets (a few minutes more)
    python bench/durability.py --quick     # tiny counts, one repetition: the test suite runs this

It starts its own servers (loopback, store dirs under --dir: put it on the disk the
production servers would use; a tmpfs makes fsync free), one per setting, and times
``NatsStorage.save`` of 1 KiB, 100 KiB and 10 MiB objects, the settings taking turns
run by run so that drift on the machine hits both alike. Medians with half their
range as a share of the median.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from run import KiB, MiB, Rate, interleaved_runs, setup_django, size_label

SETTINGS = {"default": None, "always": "always"}  # column -> the servers' sync_interval
SAVES = {KiB: 200, 100 * KiB: 100, 10 * MiB: 4}  # saves per timed run, by size
QUICK_SAVES = {KiB: 3, 100 * KiB: 2, 10 * MiB: 1}
REPS, QUICK_REPS = 7, 1


def filesystem(path: Path) -> str:
    """The type of the filesystem holding ``path``, as /proc/mounts says (Linux), else "?"."""
    try:
        mounts = [line.split()[1:3] for line in Path("/proc/mounts").read_text().splitlines()]
    except OSError:
        return "?"
    resolved = str(path.resolve())
    found = [
        (point, kind) for point, kind in mounts if resolved == point or resolved.startswith(point.rstrip("/") + "/")
    ]
    return max(found, key=lambda pair: len(pair[0]))[1] if found else "?"


@contextlib.contextmanager
def servers(base: Path, cluster: bool) -> Iterator[dict[str, list[str]]]:
    """Per setting, the URLs of a server (or a 3-node cluster) that fsyncs that way."""
    from natsstorage.testing import NatsCluster, NatsServer

    with contextlib.ExitStack() as running:
        urls = {}
        for column, sync in SETTINGS.items():
            if cluster:
                urls[column] = running.enter_context(NatsCluster(3, base_dir=base / column, sync_interval=sync)).urls
            else:
                urls[column] = [running.enter_context(NatsServer(store_dir=base / column, sync_interval=sync)).url]
        yield urls


def saves(storage: object, size: int, count: int) -> Callable[[], float]:
    """A run: ``count`` saves of ``size`` bytes, timed, as saves/s; then deleted, untimed."""
    from django.core.files.base import ContentFile

    data = os.urandom(size)
    runs = itertools.count()

    def run() -> float:
        names = [f"r{next(runs)}/{i}" for i in range(count)]
        started = time.perf_counter()
        for name in names:
            storage.save(name, ContentFile(data))  # type: ignore[attr-defined]
        took = time.perf_counter() - started
        for name in names:
            storage.delete(name)  # type: ignore[attr-defined]
        return count / took

    return run


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny counts, one repetition")
    parser.add_argument("--cluster", action="store_true", help="also 3-node clusters and R3 buckets")
    parser.add_argument("--dir", type=Path, help="where the servers keep their streams (default: a temporary dir)")
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from natsstorage import NatsStorage, close_connections
    from natsstorage.buckettools import BucketTools
    from natsstorage.testing import nats_server_binary, nats_server_version

    counts, reps = (QUICK_SAVES, QUICK_REPS) if args.quick else (SAVES, REPS)
    layouts = [("single server", False, 1)] + ([("3-node cluster", True, 3)] if args.cluster else [])
    setup_django("nats://127.0.0.1:4222")  # each storage names its own servers
    lines = [
        "| servers | size | default (fsync every 2 min) | `sync_interval: always` | always vs default |",
        "|---|---|---:|---:|---:|",
    ]
    with tempfile.TemporaryDirectory(prefix="natsstorage-durability-", dir=args.dir) as workdir:
        kind = filesystem(Path(workdir))
        for label, cluster, replicas in layouts:
            print(f"bench: {label} ...", file=sys.stderr, flush=True)
            with servers(Path(workdir) / label.replace(" ", "-"), cluster) as urls:
                stores = {
                    column: NatsStorage("durability", servers=url, replicas=replicas, timeout=60.0)
                    for column, url in urls.items()
                }
                for size, count in counts.items():
                    runs = interleaved_runs(reps, *(saves(stores[column], size, count) for column in SETTINGS))
                    rates = [Rate(tuple(values)) for values in runs]
                    versus = rates[1].median / rates[0].median
                    lines.append(
                        f"| {label}, R{replicas} | {size_label(size)} | {rates[0]} saves/s "
                        f"({1000 / rates[0].median:.1f} ms) | {rates[1]} saves/s ({1000 / rates[1].median:.1f} ms) "
                        f"| {versus:.2f}x |"
                    )
                for store in stores.values():
                    BucketTools(store).destroy()
                close_connections()
    version = ".".join(map(str, nats_server_version(nats_server_binary())))
    print(
        f"Machine: {os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()}, nats-server "
        f"{version} on loopback, streams on {kind}; medians of {reps} interleaved runs, ± half their range.\n"
    )
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
