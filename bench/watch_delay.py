"""How late the view's watch (``serve_watch``) hears of a change another process made: the window in which a
serving process may still send the copy it kept.

    python bench/watch_delay.py               # 500 saves, then 500 deletes, by another client
    python bench/watch_delay.py --changes 2000

Starts a nats-server; this process serves a public bucket (its watch and its kept entries, as the view has
them), and another client (nats-py's Object Store, on a connection of its own, as another process would) saves
and deletes objects one at a time. For each change: the time from the moment the writer sends it to the moment
the serving process drops its entry, and the same from the moment the writer has the server's acknowledgement
(negative: the watch heard of it first). Loopback, one server: add the network's one-way latency for others.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--changes", type=int, default=500)
    options = parser.parse_args()
    sys.path[:0] = [str(ROOT), str(ROOT / "bench")]
    from natsstorage.testing import NatsServer

    with NatsServer() as nats_server:
        os.environ.update(DJANGO_SETTINGS_MODULE="serve_site", NATS_URL=nats_server.url, BENCH_SITE="origin")
        import django

        django.setup()
        import nats
        from django.core.files.base import ContentFile
        from django.core.files.storage import storages

        from natsstorage import close_connections, loop, servecache, servewatch

        storage = storages["default"]
        storage.save("warm.txt", ContentFile(b"x"))
        cache = servecache.of(storage.bucket, storage.config.serve_cache)
        heard: dict[str, float] = {}
        arrived = threading.Condition()
        changed = cache.changed

        def noted(name: str) -> None:
            with arrived:
                heard[name] = time.perf_counter()
                arrived.notify_all()
            changed(name)

        cache.changed = noted  # type: ignore[method-assign]  # a bench's probe: when the watch drops an entry

        async def start_watching() -> None:
            servewatch.follow(storage.bucket, cache)

        loop.run(start_watching())
        while cache.watched is None:
            time.sleep(0.01)

        async def write() -> dict[str, list[float]]:
            nc = await nats.connect(nats_server.url)
            store = await nc.jetstream().object_store(storage.config.bucket)
            found: dict[str, list[float]] = {"save, from sent": [], "save, from acknowledged": []}
            found.update({"delete, from sent": [], "delete, from acknowledged": []})
            try:
                for kind in ("save", "delete"):
                    for n in range(options.changes):
                        name = f"{n}.txt"
                        sent = time.perf_counter()
                        if kind == "save":
                            await store.put(name, b"new")
                        else:
                            await store.delete(name)
                        acknowledged = time.perf_counter()
                        deadline = time.monotonic() + 5
                        while name not in heard and time.monotonic() < deadline:
                            await asyncio.sleep(0.0002)
                        at = heard.pop(name)
                        found[f"{kind}, from sent"].append((at - sent) * 1000)
                        found[f"{kind}, from acknowledged"].append((at - acknowledged) * 1000)
            finally:
                await nc.close()
            return found

        results = asyncio.run(write())
        close_connections()
    print(f"| change by another client ({options.changes} each) | p50 ms | p90 ms | p99 ms | max ms |")
    print("|---|---:|---:|---:|---:|")
    for label, values in results.items():
        cuts = statistics.quantiles(values, n=100)
        print(f"| {label} | {cuts[49]:.2f} | {cuts[89]:.2f} | {cuts[98]:.2f} | {max(values):.2f} |")
    print(f"\nLoad average: {os.getloadavg()[0]:.2f} ({os.cpu_count()} cores).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
