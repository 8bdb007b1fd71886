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
