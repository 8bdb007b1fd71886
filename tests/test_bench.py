"""The benchmark's quick mode runs in the suite so it cannot rot (no timing is asserted)."""

from __future__ import annotations

import itertools
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent / "bench" / "run.py"
OPERATIONS = ("save", "open + read()", "open + read(), first sight", "exists")
SCALE_ROWS = [
    '| `listdir("dir")` |',
    '| `exists("dir")` |',
    "| `status().objects` |",
    '| `listing("")` |',
    "| admin page by name |",
    "| admin page by size |",
    "| admin page by modified |",
]


def bench(*options: str) -> str:
    result = subprocess.run(
        [sys.executable, str(BENCH), "--quick", *options], capture_output=True, text=True, timeout=300, check=True
    )
    return result.stdout


def test_the_benchmark_quick_mode_prints_every_target():
    table = bench()
    targets = ["save 1 MiB", "read 1 MiB", "peak RSS growth", "exists()", "size()", "save() + open()", "listdir of"]
    for target in [*targets, "seek to the last 4 KiB"]:
        assert target in table
    sweep = ["## Size sweep: objects/s", "| vs nats.go | vs floor |", "## Concurrency: objects/s"]
    for size in ("1 KiB", "100 KiB", "1 MiB"):
        sweep += [f"| {size} | save |", f"| {size} | open + read() |", f"| {size} | exists |"]
    for size, threads, operation in itertools.product(("1 KiB", "100 KiB"), (1, 4, 16), ("save", "open + read()")):
        sweep.append(f"| {size} | {threads} | {operation} |")
    for line in sweep:
        assert line in table
    # nats.go's column is filled where Go and Debian's nats.go are installed, else the run says why not.
    assert "Reference: nats.go " in table or "nats.go rows skipped: " in table
    # Listing at scale: two buckets; the largest only with --scale, and the tables say so.
    for line in ["## Listing at scale", "| 200 names | 2,000 names | 20,000 names |", *SCALE_ROWS]:
        assert line in table
    assert "| 200 | " in table and "| 2,000 | " in table
    assert "| 20,000 | not run: pass `--scale` |" in table


def test_the_benchmark_lists_the_largest_bucket_when_asked_and_runs_one_section_alone():
    table = bench("--scale", "--only", "listing_at_scale")
    for line in ["## Listing at scale", *SCALE_ROWS, "| 20,000 | "]:
        assert line in table
    assert "not run" not in table
    assert "## Targets" not in table and "## Size sweep" not in table and "## Concurrency" not in table


def test_the_bridge_comparison_runs_two_checkouts_by_turns():
    root = str(BENCH.parent.parent)
    command = [
        sys.executable,
        str(BENCH.parent / "bridge.py"),
        root,
        root,
        "--quick",
        "--runs",
        "1",
        "--threads",
        "0",
        "2",
    ]
    table = subprocess.run(command, capture_output=True, text=True, timeout=300, check=True).stdout
    for mode, size, operation in itertools.product(("main thread", "2 worker threads"), ("1 KiB", "1 MiB"), OPERATIONS):
        assert f"| {mode} | {size} | {operation} |" in table
    assert "Load average (1 min) as each run began: before " in table
