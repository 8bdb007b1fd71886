"""natsstorage.asgi under uvicorn: the requests that do not stream are answered as Django's ASGI handler answers them.

(What streams, and what that buys, is tested with the uploads: test_uploads.py and test_direct_uploads.py.)
"""

from __future__ import annotations

import contextlib
import http.client
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from natsstorage.testing import free_port

from .helpers import MiB, random_bytes
from .test_uploads import CSRF, _listening, until

APPLICATIONS = {
    "django": "django.core.asgi:get_asgi_application",
    "natsstorage": "natsstorage.asgi:get_asgi_application",
}
BOUNDARY = "natsstorage-asgi"

pytestmark = pytest.mark.slow


@contextlib.contextmanager
def uvicorn(application: str, nats_server, bucket_name: str, tmp_path: Path) -> Iterator[int]:
    """uvicorn serving tests.urls (uploads staged in the test's bucket) with one of the two applications: its port."""
    port = free_port()
    environment = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.staging_settings",
        "STAGING_BUCKET": bucket_name,
        "NATS_URL": nats_server.url,
    }
    log = tmp_path / f"{application}.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [str(Path(sys.executable).parent / "uvicorn"), "--factory", APPLICATIONS[application]]
            + ["--lifespan", "off", "--port", str(port)],
            cwd=Path(__file__).parent.parent,
            env=environment,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        until(lambda: _listening(port), lambda: f"uvicorn never listened: {log.read_text()}", process)
        yield port
    finally:
        process.terminate()
        process.wait(10)


@pytest.fixture
def both(nats_server, bucket_name, tmp_path):
    """Ask both applications the same: a function that returns their two answers (status, type, body)."""
    with (
        uvicorn("django", nats_server, bucket_name, tmp_path) as django_port,
        uvicorn("natsstorage", nats_server, bucket_name, tmp_path) as our_port,
    ):

        def ask(method: str, path: str, body: bytes = b"", **headers: str) -> list[tuple[int, str, bytes]]:
            answers = []
            for port in (django_port, our_port):
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
                try:
                    connection.request(method, path, body=body or None, headers=headers)
                    response = connection.getresponse()
                    answers.append((response.status, response.getheader("Content-Type", ""), response.read()))
                finally:
                    connection.close()
            return answers

        yield ask


def form(title: str, data: bytes | None) -> tuple[bytes, dict[str, str]]:
    """A multipart form as a browser posts it, with the CSRF token: its body and headers."""
    parts = [("csrfmiddlewaretoken", None, CSRF.encode()), ("title", None, title.encode())]
    if data is not None:
        parts.append(("file", "a.bin", data))
    body = b""
    for name, file_name, value in parts:
        disposition = f'form-data; name="{name}"' + (f'; filename="{file_name}"' if file_name else "")
        body += f"--{BOUNDARY}\r\nContent-Disposition: {disposition}\r\n\r\n".encode() + value + b"\r\n"
    body += f"--{BOUNDARY}--\r\n".encode()
    headers = {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}", "Cookie": f"csrftoken={CSRF}"}
    return body, headers


def test_a_get_is_answered_as_by_djangos_handler(both):
    django, ours = both("GET", "/received/?title=x")
    assert ours == django
    assert django[0] == 200 and django[2] == b'{"title": null, "files": {}}'


def test_a_small_form_with_a_file_is_answered_as_by_djangos_handler(both):
    body, headers = form("small", random_bytes(1000))
    django, ours = both("POST", "/received/", body, **headers)
    assert ours == django
    assert django[0] == 200 and django[2] == b'{"title": "small", "files": {"file": 1000}}'


def test_an_async_view_reads_a_large_upload_from_djangos_spooled_body(both):
    body, headers = form("large", random_bytes(4 * MiB))  # over FILE_UPLOAD_MAX_MEMORY_SIZE: a sync view would stream
    django, ours = both("POST", "/received/", body, **headers)
    assert ours == django
    assert django[0] == 200 and django[2] == f'{{"title": "large", "files": {{"file": {4 * MiB}}}}}'.encode()


def test_a_large_urlencoded_body_is_refused_as_by_djangos_handler(both):
    body = f"csrfmiddlewaretoken={CSRF}&title=".encode() + b"x" * (3 * MiB)  # over DATA_UPLOAD_MAX_MEMORY_SIZE
    headers = {"Content-Type": "application/x-www-form-urlencoded", "Cookie": f"csrftoken={CSRF}"}
    django, ours = both("POST", "/keep/", body, **headers)  # a sync view: this body streams to it
    assert django[0] == 400
    assert ours == django
