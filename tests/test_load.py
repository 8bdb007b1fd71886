"""The load script's short mode: no errors, one connection, flat memory (the long run is in the README)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

LOAD = Path(__file__).resolve().parent.parent / "bench" / "load.py"


def test_mixed_load_from_many_threads_has_no_errors_one_connection_and_flat_memory():
    result = subprocess.run(
        [sys.executable, str(LOAD), "--seconds", "4", "--threads", "16"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    report = json.loads(result.stdout)
    assert report["errors"] == 0, report["first_error"]
    assert report["connections"] == 1
    assert set(report["by_operation"]) == {"save", "open", "exists", "listdir", "delete"}
    assert report["rss_at_end_mib"] - report["rss_after_warm_up_mib"] < 64
