"""The benchmark's quick mode runs in the suite so it cannot rot (no timing is asserted)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent / "bench" / "run.py"


def test_the_benchmark_quick_mode_prints_every_target():
    result = subprocess.run(
        [sys.executable, str(BENCH), "--quick"], capture_output=True, text=True, timeout=300, check=True
    )
    table = result.stdout
    targets = ["save 1 MiB", "read 1 MiB", "peak RSS growth", "exists()", "size()", "save() + open()", "listdir of"]
    for target in [*targets, "seek to the last 4 KiB"]:
        assert target in table
    sweep = ["## Size sweep: objects/s", "| vs nats.go | vs floor |", "## Concurrency: 100 KiB objects/s"]
    for size in ("1 KiB", "100 KiB", "1 MiB"):
        sweep += [f"| {size} | save |", f"| {size} | open + read() |", f"| {size} | exists |"]
    for threads in (1, 4, 16):
        sweep.append(f"| {threads} |")
    for line in sweep:
        assert line in table
    # nats.go's column is filled where Go and Debian's nats.go are installed, else the run says why not.
    assert "Reference: nats.go " in table or "nats.go rows skipped: " in table
