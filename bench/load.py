"""Load: threads doing a mix of save, open, exists, listdir and delete on one bucket.

    python bench/load.py                  # 16 threads for 60 s, the README's figures
    python bench/load.py --seconds 3      # the short run the test suite does

It starts its own nats-server and prints ops/s, errors, the connections the
server saw from this process, and the process's RSS after warm-up and at the
end (it should stay flat: every transfer is streamed through bounded buffers).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import threading
import time
from collections import Counter
from pathlib import Path

SIZES = (1024, 64 * 1024, 300 * 1024, 2 * 1024 * 1024)  # one chunk, one chunk, three chunks, sixteen chunks
WARM_UP = 0.2  # of the run, before RSS is taken as the baseline


def rss_mib() -> float:
    """Resident memory now (not the peak), from /proc."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def run(seconds: float, threads: int) -> dict[str, float | int]:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    import django
    from django.conf import settings

    from natsstorage.testing import NatsServer

    with NatsServer() as server:
        settings.configure(INSTALLED_APPS=["natsstorage"], USE_TZ=True, NATSSTORAGE={"servers": [server.url]})
        django.setup()
        from django.core.files.base import ContentFile

        from natsstorage import NatsStorage, close_connections

        storage = NatsStorage("load")
        payloads = {size: os.urandom(size) for size in SIZES}
        counts: Counter[str] = Counter()
        errors: list[str] = []
        lock = threading.Lock()
        deadline = time.monotonic() + seconds
        baseline: list[float] = []

        def worker(number: int) -> None:
            rng = random.Random(number)
            mine: list[str] = []
            while time.monotonic() < deadline:
                operation = rng.choice(["save", "save", "open", "open", "exists", "listdir", "delete"])
                try:
                    if operation == "save" or not mine:
                        size = rng.choice(SIZES)
                        mine.append(storage.save(f"worker{number}/object-{size}.bin", ContentFile(payloads[size])))
                        operation = "save"
                    elif operation == "open":
                        name = rng.choice(mine)
                        with storage.open(name) as handle:
                            for _ in handle.chunks():
                                pass
                    elif operation == "exists":
                        assert storage.exists(rng.choice(mine))
                    elif operation == "listdir":
                        storage.listdir(f"worker{number}")
                    else:
                        storage.delete(mine.pop(rng.randrange(len(mine))))
                except Exception as error:  # noqa: BLE001 - counted and reported, the run goes on
                    with lock:
                        errors.append(f"{operation}: {type(error).__name__}: {error}")
                    continue
                with lock:
                    counts[operation] += 1

        workers = [threading.Thread(target=worker, args=(number,)) for number in range(threads)]
        started = time.monotonic()
        for thread in workers:
            thread.start()
        time.sleep(seconds * WARM_UP)
        baseline.append(rss_mib())
        for thread in workers:
            thread.join()
        elapsed = time.monotonic() - started
        end_rss = rss_mib()
        connections = sum(
            1 for conn in server.monitor("connz").get("connections", []) if conn.get("name") == "natsstorage"
        )
        close_connections()
    total = sum(counts.values())
    return {
        "threads": threads,
        "seconds": round(elapsed, 1),
        "operations": total,
        "ops_per_second": round(total / elapsed),
        "by_operation": dict(sorted(counts.items())),
        "errors": len(errors),
        "first_error": errors[0] if errors else "",
        "connections": connections,
        "rss_after_warm_up_mib": round(baseline[0], 1),
        "rss_at_end_mib": round(end_rss, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--threads", type=int, default=16)
    args = parser.parse_args()
    print(json.dumps(run(args.seconds, args.threads), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
