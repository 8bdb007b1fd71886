"""A 1 GiB upload through a form, to a real server: ``NatsUploadHandler`` against Django's own handlers.

    python bench/upload.py                       # 1 GiB, 3 runs of each setup: docs/uploads.md's table
    python bench/upload.py --mib 64 --runs 1     # a quick look

It starts a nats-server (loopback, temporary store), then for each run a fresh server process
(gunicorn, one sync worker; uvicorn with Django's ASGI handler or ``natsstorage.asgi``'s) serving ``tests.urls`` with
``bench/upload_settings.py``. A small upload warms it up (imports, the NATS connection); then the
big one is posted as a browser posts a form: multipart, a title and the file, to ``/attach/`` (a
``ModelForm`` whose ``FileField`` saves into the default storage). Per run: the growth of the
serving process's peak RSS over the warmed-up one (``VmHWM``), the bytes it wrote to disk
(``/proc/PID/io`` ``write_bytes``: temporary files, named or not, and FileSystemStorage's file),
the most seen at once under ``FILE_UPLOAD_TEMP_DIR``, the wall time from the first byte sent
to the response, and the CPU time the serving process took meanwhile (all its threads). Prints a
Markdown table of medians, and the load average.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
MiB = 1024 * 1024
BUCKET = "bench_uploads"
CSRF = "b" * 32  # a CSRF cookie and the same token in the form, as a browser sends them
BOUNDARY = "natsstorage-bench"
START_TIMEOUT = 60.0
SETUPS = {  # name: (server, handlers, storage)
    "NatsUploadHandler → NatsStorage (gunicorn)": ("gunicorn", "nats", "nats"),
    "Django's handlers → FileSystemStorage (gunicorn)": ("gunicorn", "django", "files"),
    "Django's handlers → NatsStorage (gunicorn)": ("gunicorn", "django", "nats"),
    "NatsUploadHandler → NatsStorage (uvicorn, Django's ASGIHandler)": ("uvicorn", "nats", "nats"),
    "NatsUploadHandler → NatsStorage (uvicorn, natsstorage.asgi)": ("streaming uvicorn", "nats", "nats"),
}


@dataclass(frozen=True)
class Run:
    rss_growth: int
    disk_writes: int
    temp_dir_peak: int
    seconds: float
    cpu_seconds: float  # the serving process's, all its threads: less moved by other work on the machine


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def proc(pid: int, file: str, key: str) -> int:
    for line in Path(f"/proc/{pid}/{file}").read_text().splitlines():
        name, _, value = line.partition(":")
        if name == key:
            return int(value.split()[0]) * (1024 if file == "status" else 1)
    raise KeyError(key)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def serving_pid(server: str, pid: int) -> int:
    """gunicorn serves from a child of its master; uvicorn from the process itself."""
    if server != "gunicorn":
        return pid
    deadline = time.monotonic() + START_TIMEOUT
    while not (children := Path(f"/proc/{pid}/task/{pid}/children").read_text().split()):
        assert time.monotonic() < deadline, "gunicorn started no worker"
        time.sleep(0.05)
    return int(children[0])


def post(port: int, mib: int, block: bytes) -> tuple[int, dict[str, object], float]:
    """The form, multipart, the file streamed from a repeated block: status, JSON answer, seconds."""
    fields = (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="csrfmiddlewaretoken"\r\n\r\n{CSRF}\r\n'
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="title"\r\n\r\nbench\r\n'
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="big.bin"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    tail = f"\r\n--{BOUNDARY}--\r\n".encode()
    size = mib * MiB

    def body() -> Iterator[bytes]:
        yield fields
        for _ in range(size // len(block)):
            yield block
        yield tail

    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    headers = {
        "Content-Type": f"multipart/form-data; boundary={BOUNDARY}",
        "Content-Length": str(len(fields) + size + len(tail)),
        "Cookie": f"csrftoken={CSRF}",
    }
    started = time.perf_counter()
    connection.request("POST", "/attach/", body=body(), headers=headers)
    response = connection.getresponse()
    answer = response.read()
    seconds = time.perf_counter() - started
    connection.close()
    try:
        return response.status, json.loads(answer), seconds
    except ValueError:
        return response.status, {"body": answer[:2000].decode(errors="replace")}, seconds


class TempDirWatch:
    """The most bytes seen at once under a directory, looked at every few milliseconds."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def _watch(self) -> None:
        while not self._stop.wait(0.01):
            total = 0
            for entry in self.path.iterdir():
                with contextlib.suppress(FileNotFoundError):
                    total += entry.stat().st_size
            self.peak = max(self.peak, total)

    def __enter__(self) -> TempDirWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


@contextlib.contextmanager
def serving(server: str, handlers: str, storage: str, nats_url: str, where: Path) -> Iterator[tuple[int, int]]:
    """A fresh server process for one run: (port, the pid that serves)."""
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "bench.upload_settings",
        "BENCH_UPLOAD_DIR": str(where),
        "BENCH_UPLOAD_HANDLERS": handlers,
        "BENCH_UPLOAD_STORAGE": storage,
        "BENCH_UPLOAD_BUCKET": BUCKET,
        "NATS_URL": nats_url,
        "TMPDIR": str(where / "tmp"),  # where Python's own temporary files go (ASGI's spooled body)
    }
    subprocess.run(
        [str(BIN / "python"), "-m", "django", "migrate", "--run-syncdb", "-v", "0"], cwd=ROOT, env=env, check=True
    )
    port = free_port()
    command = {
        "gunicorn": [str(BIN / "gunicorn"), "--workers", "1", "--timeout", "600", "--bind", f"127.0.0.1:{port}"]
        + ["django.core.wsgi:get_wsgi_application()"],
        "uvicorn": [str(BIN / "uvicorn"), "--factory", "django.core.asgi:get_asgi_application"]
        + ["--lifespan", "off", "--log-level", "warning", "--port", str(port)],
        "streaming uvicorn": [str(BIN / "uvicorn"), "--factory", "natsstorage.asgi:get_asgi_application"]
        + ["--lifespan", "off", "--log-level", "warning", "--port", str(port)],
    }[server]
    log = (where / "server.log").open("wb")
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert process.poll() is None and time.monotonic() < deadline, (where / "server.log").read_text()
                time.sleep(0.1)
        yield port, serving_pid(server, process.pid)
    finally:
        process.terminate()
        process.wait(30)
        log.close()


def one_run(setup: str, mib: int, block: bytes, nats_url: str) -> Run:
    server, handlers, storage = SETUPS[setup]
    with tempfile.TemporaryDirectory(prefix="natsstorage-bench-upload-") as directory:
        where = Path(directory)
        (where / "tmp").mkdir()
        with serving(server, handlers, storage, nats_url, where) as (port, pid):
            status, answer, _ = post(port, 1, block)  # warm-up: imports, the NATS connection
            assert status == 200, answer
            before_rss, before_writes = proc(pid, "status", "VmHWM"), proc(pid, "io", "write_bytes")
            before_cpu = cpu_seconds(pid)
            with TempDirWatch(where / "tmp") as watch:
                status, answer, seconds = post(port, mib, block)
            assert status == 200, answer
            run = Run(
                rss_growth=proc(pid, "status", "VmHWM") - before_rss,
                disk_writes=proc(pid, "io", "write_bytes") - before_writes,
                temp_dir_peak=watch.peak,
                seconds=seconds,
                cpu_seconds=cpu_seconds(pid) - before_cpu,
            )
    clean_bucket(nats_url)
    return run


def clean_bucket(nats_url: str) -> None:
    from natsstorage import NatsStorage
    from natsstorage.buckettools import BucketTools
    from natsstorage.exceptions import BucketNotFound

    with contextlib.suppress(BucketNotFound):
        BucketTools(NatsStorage(BUCKET, servers=[nats_url])).destroy()


def mib_text(value: float) -> str:
    return f"{value / MiB:,.1f} MiB"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mib", type=int, default=1024, help="the upload's size in MiB (default: 1024)")
    parser.add_argument("--runs", type=int, default=3, help="runs of each setup, taking turns (default: 3)")
    parser.add_argument("--only", choices=sorted(SETUPS), action="append", help="these setups only")
    arguments = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    import django
    from django.conf import settings

    from natsstorage import close_connections
    from natsstorage.testing import NatsServer

    setups = arguments.only or list(SETUPS)
    block = os.urandom(MiB)
    results: dict[str, list[Run]] = {setup: [] for setup in setups}
    with tempfile.TemporaryDirectory(prefix="natsstorage-bench-nats-") as store, NatsServer(store_dir=store) as nats:
        settings.configure(INSTALLED_APPS=["natsstorage"], USE_TZ=True)
        django.setup()
        loads = [os.getloadavg()[0]]
        for number in range(arguments.runs):
            for setup in setups:
                run = one_run(setup, arguments.mib, block, nats.url)
                results[setup].append(run)
                loads.append(os.getloadavg()[0])
                print(f"run {number + 1}, {setup}: {run}", file=sys.stderr, flush=True)
        close_connections()
    print(f"\nA {arguments.mib} MiB upload through a form (multipart POST to /attach/, a ModelForm), ", end="")
    print(f"medians of {arguments.runs} (min–max):\n")
    print(
        "| setup | peak RSS growth | written to disk by the server | most under the temp dir at once "
        "| wall time | server CPU time |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for setup, runs in results.items():

        def cell(values: list[float], show: object) -> str:
            low, middle, high = min(values), statistics.median(values), max(values)
            return f"{show(middle)} ({show(low)}–{show(high)})" if len(values) > 1 else str(show(middle))

        print(
            f"| {setup} | {cell([r.rss_growth for r in runs], mib_text)} | "
            f"{cell([r.disk_writes for r in runs], mib_text)} | {cell([r.temp_dir_peak for r in runs], mib_text)} | "
            f"{cell([r.seconds for r in runs], lambda s: f'{s:.1f} s')} | "
            f"{cell([r.cpu_seconds for r in runs], lambda s: f'{s:.1f} s')} |"
        )
    print(f"\nLoad average (1 min) during the runs: {min(loads):.1f}–{max(loads):.1f}, on {os.cpu_count()} cores.")


if __name__ == "__main__":
    main()
