"""The size sweep of two checkouts of natsstorage, run by turns: is one slower than the other?

    python bench/bridge.py BEFORE AFTER                # 5 runs each, from the main thread and a worker thread
    python bench/bridge.py BEFORE AFTER --runs 7 --threads 0 1 4
    python bench/bridge.py BEFORE AFTER --quick        # tiny sizes, 1 run each: a smoke test

BEFORE and AFTER are checkouts, each run by its own ``.venv``'s Python where it has one (else this one's),
with the checkout's ``natsstorage`` first on ``sys.path``. One nats-server;
each run is a fresh process of one checkout's Python doing ``run.py``'s size sweep (save, open + read(),
a first-sight read, exists, through ``NatsStorage`` with default settings) from the main thread
(``--threads 0``) or from N worker threads sharing it (``--threads N``); BEFORE and AFTER take turns run
after run, so load from elsewhere on the machine hits both alike. It prints a Markdown table of objects/s:
median and min-max per checkout, AFTER's median over BEFORE's (below 1: AFTER is slower), and the load
average seen at each run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from run import FIRST_SIGHT, FULL, OPERATIONS, QUICK, SWEEP_BUCKET, names_of, setup_django, size_label

Results = dict[str, dict[str, dict[str, float]]]  # mode -> size label -> operation -> objects/s


def mode_label(threads: int) -> str:
    return "main thread" if threads == 0 else f"{threads} worker thread{'s' * (threads > 1)}"


def sweep(url: str, modes: list[int], quick: bool) -> Results:
    """In this process: objects/s of each size sweep operation, from each mode (0: the main thread)."""
    import floor
    from django.core.files.base import ContentFile

    from natsstorage import NatsStorage, close_connections

    setup_django(url)
    storage, sizes, purger = NatsStorage(SWEEP_BUCKET), (QUICK if quick else FULL), floor.Floor(url)
    pools = {threads: ThreadPoolExecutor(threads) for threads in modes if threads}  # kept, as a server's are

    def save(name: str) -> None:
        assert storage.save(name, ContentFile(payload)) == name

    def read(name: str) -> None:
        with storage.open(name) as handle:
            assert len(handle.read()) == len(payload)

    def exists(name: str) -> None:
        assert storage.exists(name)

    def seconds(threads: int, operation: Callable[[str], None], names: list[str]) -> float:
        started = time.perf_counter()
        if threads:
            shares = [names[start::threads] for start in range(threads)]
            list(pools[threads].map(lambda share: [operation(name) for name in share], shares))
        else:
            for name in names:
                operation(name)
        return time.perf_counter() - started

    results: Results = {mode_label(threads): {} for threads in modes}
    payload = b"warm"
    for threads in modes:  # untimed: connection, bucket, threads
        seconds(threads, save, names_of(f"warm{threads}/", max(threads, 1)))
    for size, count in sizes.sweep:
        payload = os.urandom(size)
        passes = max(1, sizes.exists_calls // count)
        for threads in modes:
            names = names_of(f"{size}/{threads}/", count)
            took = {"save": seconds(threads, save, names), "open + read()": seconds(threads, read, names)}
            storage.bucket.known.clear()  # as another process reads them
            took[FIRST_SIGHT] = seconds(threads, read, names)
            took["exists"] = seconds(threads, exists, names * passes) / passes
            results[mode_label(threads)][size_label(size)] = {op: count / took[op] for op in OPERATIONS}
            purger.purge_stream(f"OBJ_{SWEEP_BUCKET}")
    for pool in pools.values():
        pool.shutdown()
    purger.close()
    close_connections()
    return results


def rate(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:.3g}"


def spread(values: list[float]) -> str:
    return f"{rate(statistics.median(values))} ({rate(min(values))}–{rate(max(values))})"


def table(before: list[Results], after: list[Results]) -> str:
    lines = [
        "| from | size | operation | before: median (min–max) | after: median (min–max) | after/before |",
        "|---|---|---|--:|--:|--:|",
    ]
    for mode, by_size in before[0].items():
        for size, by_operation in by_size.items():
            for operation in by_operation:
                old, new = ([run[mode][size][operation] for run in runs] for runs in (before, after))
                ratio = statistics.median(new) / statistics.median(old)
                mark = " **slower**" if ratio < 1 / 1.1 else ""
                lines.append(f"| {mode} | {size} | {operation} | {spread(old)} | {spread(new)} | {ratio:.2f}{mark} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkouts", nargs="*", type=Path, help="BEFORE AFTER")
    parser.add_argument("--runs", type=int, default=5, help="runs of each checkout (default 5)")
    parser.add_argument("--threads", type=int, nargs="+", default=[0, 1], help="0: the main thread (default 0 1)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes")
    parser.add_argument("--child", help=argparse.SUPPRESS)  # a nats-server's URL: sweep in this process
    args = parser.parse_args()
    if args.child:
        sys.path.insert(0, str(args.checkouts[0]))  # its natsstorage, whatever the Python has installed
        print(json.dumps(sweep(args.child, args.threads, args.quick)))
        return 0
    if len(args.checkouts) != 2:
        parser.error("give two checkouts: BEFORE AFTER")

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from natsstorage.testing import NatsServer

    runs: list[list[Results]] = [[], []]
    loads: list[list[str]] = [[], []]
    with NatsServer() as server:
        for turn in range(args.runs):
            for which, checkout in enumerate(args.checkouts):
                load = os.getloadavg()[0]
                python = checkout / ".venv/bin/python"
                command = [str(python) if python.exists() else sys.executable, __file__, str(checkout.resolve())]
                command += ["--child", server.url, "--threads"]
                command += [str(threads) for threads in args.threads] + ["--quick"] * args.quick
                output = subprocess.run(command, check=True, stdout=subprocess.PIPE, text=True).stdout
                runs[which].append(json.loads(output))
                loads[which].append(f"{load:.2f}")
                print(f"bench: run {turn + 1} of {checkout}, load {load:.2f}", file=sys.stderr, flush=True)
    print(table(*runs))
    print(f"\nLoad average (1 min) as each run began: before {', '.join(loads[0])}; after {', '.join(loads[1])}.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
