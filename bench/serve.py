"""Serving over HTTP: natsstorage's view against WhiteNoise and nginx, the same files, measured with wrk.

    python bench/serve.py                 # the figures in docs/serving-at-scale.md (about ten minutes)
    python bench/serve.py --quick         # one short round of each, to see that it all runs
    python bench/serve.py --servers uvicorn --rounds 5

Needs ``wrk`` and ``nginx`` on PATH (Debian: ``apt-get install nginx wrk``) and the ``bench`` dependency
group (``pip install -e . --group bench``). It starts its own nats-server, stores a 100 KiB and a 10 MiB file
in a public bucket and writes the same files to a directory, then runs each server (2 workers, loopback):

- the view of a site with a project's usual middleware (WhiteNoise first, as its docs ask);
- the view of a media origin: the same view, no middleware (``BENCH_SITE=origin``, bench/serve_site.py);
- the same media origin as the view was before its watch and disk copies (``serve_watch=False, serve_files=0``):
  every request asks nats-server for the metadata, and large objects come from the bucket;
- WhiteNoise serving the files from disk, in the site's process;
- nginx serving them from disk (``sendfile``): the ceiling.

Targets take turns within a round (their order rotates), so each ratio compares runs made side by side;
cells are the median of the rounds and their spread (min to max).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
KiB = 1024
MiB = 1024 * KiB
FILES = {"100 KiB": ("small.bin", 100 * KiB), "10 MiB": ("big.bin", 10 * MiB)}
LOADS = (("100 KiB", 1), ("100 KiB", 16), ("10 MiB", 1), ("10 MiB", 16))  # (file, concurrent clients)
WORKERS = 2  # the machine's cores
SERVERS = {
    "uvicorn": [
        str(BIN / "uvicorn"),
        "--factory",
        "django.core.asgi:get_asgi_application",
        "--workers",
        str(WORKERS),
        "--lifespan",
        "off",
        "--no-access-log",
        "--log-level",
        "warning",
        "--host",
        "127.0.0.1",
        "--port",
        "{port}",
    ],
    "gunicorn sync": [
        str(BIN / "gunicorn"),
        "--workers",
        str(WORKERS),
        "--bind",
        "127.0.0.1:{port}",
        "django.core.wsgi:get_wsgi_application()",
    ],
    "gunicorn gthread": [
        str(BIN / "gunicorn"),
        "--workers",
        str(WORKERS),
        "--worker-class",
        "gthread",
        "--threads",
        "8",
        "--bind",
        "127.0.0.1:{port}",
        "django.core.wsgi:get_wsgi_application()",
    ],
}
# The view's targets by the site that serves them (bench/serve_site.py's BENCH_SITE), then WhiteNoise.
SITES = {
    "view": "site",
    "view, media origin": "origin",
    "media origin as before (asking)": "origin-asking",
}
VIEWS = tuple(SITES)
TARGETS = (*VIEWS, "WhiteNoise")
NGINX = "nginx"
NGINX_CONFIG = """
worker_processes {workers};
pid {prefix}/nginx.pid;
error_log {prefix}/error.log;
{user}
events {{ worker_connections 1024; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    types {{ application/octet-stream bin; }}
    server {{
        listen 127.0.0.1:{port};
        root {files};
        etag on;
    }}
}}
"""
START_TIMEOUT = 30.0  # seconds for a server to answer its first request


def free_port() -> int:
    from natsstorage.testing import free_port

    return free_port()


def wait_until_served(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                response.read()
                return
        except urllib.error.HTTPError as error:
            raise RuntimeError(f"{url} answered {error.code}:\n{log.read_text()[-3000:]}") from error
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the server behind {url} did not start:\n{log.read_text()[-3000:]}") from None
            time.sleep(0.2)


@contextlib.contextmanager
def running(command: list[str], environment: dict[str, str], log: Path, probe: str) -> Iterator[None]:
    with log.open("ab") as output:
        process = subprocess.Popen(
            command, cwd=ROOT, env=environment, stdout=output, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        wait_until_served(probe, process, log)
        yield
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def wrk(url: str, clients: int, seconds: float) -> dict[str, float]:
    """Requests/s, p50 latency (ms) and errors of ``clients`` connections for ``seconds``."""
    command = ["wrk", f"-t{min(clients, WORKERS)}", f"-c{clients}", f"-d{seconds:g}s", "--latency", "--timeout", "10s"]
    said = subprocess.run([*command, url], capture_output=True, text=True, timeout=seconds + 60, check=True).stdout
    rate = re.search(r"Requests/sec:\s+([\d.]+)", said)
    p50 = re.search(r"^\s+50%\s+([\d.]+)(us|ms|s)\b", said, re.MULTILINE)
    if rate is None or p50 is None:
        raise RuntimeError(f"wrk said:\n{said}")
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[p50.group(2)]
    errors = sum(
        int(n) for n in re.findall(r"(?:Non-2xx or 3xx responses|connect|read|write|timeout)\s*:?\s*(\d+)", said)
    )
    return {"rate": float(rate.group(1)), "p50": float(p50.group(1)) * scale, "errors": errors}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="one round of one second each")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=4.0, help="per wrk run")
    parser.add_argument(
        "--servers", default="uvicorn,gunicorn gthread", help=f"comma-separated, of {', '.join(SERVERS)}"
    )
    options = parser.parse_args()
    rounds, seconds = (1, 1.0) if options.quick else (options.rounds, options.seconds)
    servers = [name.strip() for name in options.servers.split(",")]
    for tool in ("wrk", "nginx"):
        if shutil.which(tool) is None and not Path("/usr/sbin", tool).exists():
            print(f"bench/serve.py needs {tool}: apt-get install nginx wrk", file=sys.stderr)
            return 2

    sys.path[:0] = [str(ROOT), str(ROOT / "bench")]
    from natsstorage.testing import NatsServer

    load_before = os.getloadavg()
    with NatsServer() as nats, tempfile.TemporaryDirectory(prefix="serve-bench-") as temporary:
        work = Path(temporary)
        files = work / "files"
        files.mkdir()
        work.chmod(0o755)
        os.environ.update(DJANGO_SETTINGS_MODULE="serve_site", BENCH_FILES=str(files), NATS_URL=nats.url)
        import django

        django.setup()
        from django.core.files.base import ContentFile
        from django.core.files.storage import storages

        from natsstorage import close_connections

        paths = {}
        for label, (name, size) in FILES.items():
            data = os.urandom(size)
            (files / name).write_bytes(data)
            saved = storages["default"].save(name, ContentFile(data))
            paths[label] = {"view": storages["default"].url(saved), "WhiteNoise": f"/static/{name}", NGINX: f"/{name}"}
        close_connections()

        environment = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(ROOT / "bench"), str(ROOT)]),
            "DJANGO_SETTINGS_MODULE": "serve_site",
        }
        results: dict[tuple[str, str, str, int], list[dict[str, float]]] = defaultdict(list)
        with contextlib.ExitStack() as stack:
            bases: dict[tuple[str, str], str] = {}
            for server in servers:
                for site in SITES.values():
                    port = free_port()
                    command = [part.format(port=port) for part in SERVERS[server]]
                    base = f"http://127.0.0.1:{port}"
                    log = work / f"{server}-{site}.log".replace(" ", "-")
                    stack.enter_context(
                        running(command, {**environment, "BENCH_SITE": site}, log, base + paths["100 KiB"]["view"])
                    )
                    bases[server, site] = base
            nginx_port = free_port()
            nginx_dir = work / "nginx"
            nginx_dir.mkdir()
            user = "user root;" if os.geteuid() == 0 else ""
            (nginx_dir / "nginx.conf").write_text(
                NGINX_CONFIG.format(workers=WORKERS, prefix=nginx_dir, user=user, port=nginx_port, files=files)
            )
            nginx_base = f"http://127.0.0.1:{nginx_port}"
            nginx_binary = shutil.which("nginx") or "/usr/sbin/nginx"
            stack.enter_context(
                running(
                    [nginx_binary, "-p", str(nginx_dir), "-c", str(nginx_dir / "nginx.conf"), "-g", "daemon off;"],
                    environment,
                    nginx_dir / "stderr.log",
                    nginx_base + paths["100 KiB"][NGINX],
                )
            )

            def url(server: str, target: str, file: str) -> str:
                if target == NGINX:
                    return nginx_base + paths[file][NGINX]
                site = SITES.get(target, "site")
                return bases[server, site] + paths[file]["WhiteNoise" if target == "WhiteNoise" else "view"]

            for server in servers:  # warm up: each worker connected and watching, each file read (and copied) once
                for target in TARGETS:
                    for file in FILES:
                        wrk(url(server, target, file), 4, 1)
            for round_number in range(rounds):
                for file, clients in LOADS:
                    for server in servers:
                        turn = [*TARGETS, NGINX] if server == servers[0] else list(TARGETS)
                        shift = round_number % len(turn)
                        for target in turn[shift:] + turn[:shift]:
                            measured = wrk(url(server, target, file), clients, seconds)
                            results[server if target != NGINX else NGINX, target, file, clients].append(measured)
                print(f"round {round_number + 1} of {rounds} done", file=sys.stderr)
    load_after = os.getloadavg()
    print(table(results, servers, rounds, seconds, load_before, load_after))
    return 0


def spread(values: list[float], digits: int = 0) -> str:
    middle = statistics.median(values)
    if len(values) == 1:
        return f"{middle:,.{digits}f}"
    return f"{middle:,.{digits}f} ({min(values):,.{digits}f}–{max(values):,.{digits}f})"


def table(
    results: dict[tuple[str, str, str, int], list[dict[str, float]]],
    servers: list[str],
    rounds: int,
    seconds: float,
    load_before: tuple[float, float, float],
    load_after: tuple[float, float, float],
) -> str:
    lines = [
        f"## Serving: {rounds} rounds of {seconds:g} s per cell, {WORKERS} workers, loopback; median (min–max)",
        "",
        f"Load average before: {load_before[0]:.2f}, after: {load_after[0]:.2f} ({os.cpu_count()} cores).",
        "",
        f"| server | file, clients | measure | {' | '.join(TARGETS)} | nginx | "
        + " | ".join(f"{target} / WhiteNoise" for target in VIEWS)
        + " |",
        "|---|---|---|" + "---:|" * (len(TARGETS) + 1 + len(VIEWS)),
    ]
    errors = 0
    for server in servers:
        for file, clients in LOADS:
            size = FILES[file][1]
            measures = [("requests/s", lambda r: r["rate"], 0)]
            if file == "10 MiB":
                measures = [("MB/s", lambda r, size=size: r["rate"] * size / 1e6, 0)]
            if clients == 1:
                measures.append(("p50 ms", lambda r: r["p50"], 2))
            for measure, value, digits in measures:
                runs = {target: results[server, target, file, clients] for target in TARGETS}
                runs[NGINX] = results[NGINX, NGINX, file, clients]
                cells = [spread([value(r) for r in runs[target]], digits) for target in (*TARGETS, NGINX)]
                ratios = []
                for target in VIEWS:
                    paired = [value(a) / value(b) for a, b in zip(runs[target], runs["WhiteNoise"], strict=True)]
                    ratios.append(spread(paired, 2))
                lines.append(f"| {server} | {file}, {clients} | {measure} | " + " | ".join(cells + ratios) + " |")
            errors += sum(r["errors"] for target in TARGETS for r in results[server, target, file, clients])
            if server == servers[0]:
                errors += sum(r["errors"] for r in results[NGINX, NGINX, file, clients])
    lines += ["", f"Errors (non-2xx responses, socket errors): {errors}." if errors else "No errors."]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
