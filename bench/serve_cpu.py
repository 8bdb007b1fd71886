"""What one request for a 100 KiB object costs the serving process: Django's WSGI handler called in-process, no
HTTP server, after a warm-up (nats-server's own CPU is not counted).

    python bench/serve_cpu.py                 # each target in a process of its own, 3,000 requests, two runs
    python bench/serve_cpu.py --requests 10000

Targets: the view of a media origin as it comes (``serve_watch`` on: a kept copy served unasked), the same as the
view served before its watch (``serve_watch=False``: the metadata asked each time), and WhiteNoise serving the
same file from disk in a site (bench/serve_site.py).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGETS = {  # label: (BENCH_SITE, what is asked for)
    "media origin (serve_watch on)": ("origin", "view"),
    "media origin, serve_watch=False": ("origin-asking", "view"),
    "WhiteNoise, in the site": ("site", "WhiteNoise"),
}
SIZE = 100 * 1024
WARM_UP = 600


def measure(site: str, asked: str, requests: int) -> str:
    """One target, in this process: CPU and wall time per request, microseconds."""
    sys.path[:0] = [str(ROOT), str(ROOT / "bench")]
    from natsstorage.testing import NatsServer

    with NatsServer() as nats_server, tempfile.TemporaryDirectory(prefix="serve-cpu-") as files:
        os.environ.update(DJANGO_SETTINGS_MODULE="serve_site", BENCH_FILES=files, NATS_URL=nats_server.url)
        os.environ["BENCH_SITE"] = site
        data = os.urandom(SIZE)
        Path(files, "small.bin").write_bytes(data)
        import django

        django.setup()
        from django.core.files.base import ContentFile
        from django.core.files.storage import storages
        from django.core.handlers.wsgi import WSGIHandler
        from django.test import RequestFactory

        from natsstorage import close_connections

        name = storages["default"].save("small.bin", ContentFile(data))
        url = storages["default"].url(name) if asked == "view" else "/static/small.bin"
        handler = WSGIHandler()
        environ = RequestFactory().get(url, SERVER_NAME="127.0.0.1").environ
        statuses = set()

        def one() -> None:
            body = handler(dict(environ), lambda status, headers: statuses.add(status))
            assert len(b"".join(body)) == SIZE
            body.close()

        for _ in range(WARM_UP):
            one()
        time.sleep(0.5)  # the watch, started by the first request, is live by now
        for _ in range(WARM_UP):
            one()
        cpu, wall = time.process_time(), time.perf_counter()
        for _ in range(requests):
            one()
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        close_connections()
    assert statuses == {"200 OK"}, statuses
    return f"{cpu / requests * 1e6:.0f} {wall / requests * 1e6:.0f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--one", nargs=2, help=argparse.SUPPRESS)  # (site, asked): measure in this process
    options = parser.parse_args()
    if options.one:
        print(measure(*options.one, options.requests))
        return 0
    results: dict[str, list[tuple[int, int]]] = {label: [] for label in TARGETS}
    for _ in range(options.runs):
        for label, (site, asked) in TARGETS.items():
            command = [sys.executable, __file__, "--one", site, asked, "--requests", str(options.requests)]
            said = subprocess.run(command, capture_output=True, text=True, check=True).stdout.split()
            results[label].append((int(said[-2]), int(said[-1])))
    print("| target | CPU per request | wall time per request |")
    print("|---|---:|---:|")
    for label, runs in results.items():
        cpu, wall = [c for c, _ in runs], [w for _, w in runs]
        print(f"| {label} | {min(cpu)}–{max(cpu)} µs | {min(wall)}–{max(wall)} µs |")
    print(f"\nLoad average: {os.getloadavg()[0]:.2f} ({os.cpu_count()} cores).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
