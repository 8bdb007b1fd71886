"""A DirectUploadField in a real browser: the file goes to the bucket with its progress shown, the form saves it."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
import urllib.parse

import pytest
from playwright.sync_api import expect

from natsstorage import NatsStorage

from .helpers import MiB, random_bytes
from .test_browser import NEEDS_CHROMIUM, page  # noqa: F401 - the fixture
from .testapp.models import Document

pytestmark = [
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
    NEEDS_CHROMIUM,
]
# Reports every value the widget's <progress> shows, as it shows it.
WATCH_PROGRESS = """() => {
    const bar = document.querySelector('.nats-direct-upload progress');
    new MutationObserver(() => window.reportProgress(bar.value, bar.max))
        .observe(bar, {attributes: true, attributeFilter: ['value', 'max']});
}"""


def test_in_a_browser_the_widget_uploads_with_progress_and_the_form_saves_the_name(live_server, page):  # noqa: F811
    data = random_bytes(24 * MiB)
    address = urllib.parse.urlsplit(live_server.url)
    proxy = UploadProxy((address.hostname, address.port), pace=0.01)  # about a second: loopback is too fast to see
    page.goto(f"http://127.0.0.1:{proxy.port}/direct/")
    page.fill("#id_title", "straight to the bucket")
    progress: list[tuple[float, float]] = []
    page.expose_function("reportProgress", lambda value, maximum: progress.append((value, maximum)))
    page.evaluate(WATCH_PROGRESS)
    page.set_input_files(
        "#id_upload", files=[{"name": "big file.bin", "mimeType": "application/octet-stream", "buffer": data}]
    )
    status = page.locator(".nats-direct-upload .nats-upload-status")
    expect(status).to_have_text("Uploaded: docs/big_file.bin", timeout=60_000)
    assert any(0 < value < maximum for value, maximum in progress), progress  # shown on the way
    assert progress[-1][0] == progress[-1][1]
    with page.expect_navigation():
        page.click("input[type=submit]")
    expect(page.locator("body")).to_have_text("Saved docs/big_file.bin")
    storage = NatsStorage("configs")
    try:
        document = Document.objects.get(title="straight to the bucket")
        assert document.upload.name == "docs/big_file.bin"
        with storage.open("docs/big_file.bin") as f:
            assert f.read() == data
    finally:
        proxy.close()
        storage.delete("docs/big_file.bin")


class UploadProxy:
    """A loopback TCP proxy to the live server, as a network between a browser and the site: it cuts the
    connection carrying the first upload ``PUT`` after ``cut_after`` of its bytes, as a dropped network would, and
    passes an upload's pieces of 256 KiB ``pace`` seconds apart, as a slower one would; every other byte passes."""

    def __init__(self, upstream: tuple[str, int], *, cut_after: float = float("inf"), pace: float = 0.0) -> None:
        self.upstream, self.cut_after, self.pace = upstream, cut_after, pace
        self.cut = threading.Event()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                client, _ = self.listener.accept()
                server = socket.create_connection(self.upstream)
                threading.Thread(target=self._pump, args=(client, server, True), daemon=True).start()
                threading.Thread(target=self._pump, args=(server, client, False), daemon=True).start()

    def _pump(self, source: socket.socket, target: socket.socket, upload: bool) -> None:
        sent = None  # bytes of an upload PUT forwarded on this connection
        with contextlib.suppress(OSError):
            while data := source.recv(256 * 1024):
                if upload and sent is None and not self.cut.is_set() and b"PUT /files/~upload/" in data:
                    sent = 0
                if sent is not None:
                    time.sleep(self.pace)
                    sent += len(data)
                    if sent > self.cut_after:
                        self.cut.set()
                        break
                target.sendall(data)
        for end in (source, target):
            with contextlib.suppress(OSError):
                end.shutdown(socket.SHUT_RDWR)
            end.close()

    def close(self) -> None:
        self.listener.close()


def test_in_a_browser_an_upload_cut_off_resumes_from_the_bytes_stored(live_server, page, tmp_path):  # noqa: F811
    data = random_bytes(64 * MiB)
    path = tmp_path / "cut.bin"  # (Playwright takes no buffer over 50 MB)
    path.write_bytes(data)
    address = urllib.parse.urlsplit(live_server.url)
    proxy = UploadProxy((address.hostname, address.port), cut_after=len(data) // 2)
    offsets: list[int] = []
    page.on(
        "request",
        lambda request: (
            offsets.append(int(request.headers.get("upload-offset", "0"))) if request.method == "PUT" else None
        ),
    )
    page.goto(f"http://127.0.0.1:{proxy.port}/direct/")
    page.fill("#id_title", "resumed")
    page.set_input_files("#id_upload", files=str(path))
    status = page.locator(".nats-direct-upload .nats-upload-status")
    expect(status).to_have_text("Uploaded: docs/cut.bin", timeout=60_000)
    storage = NatsStorage("configs")
    try:
        assert proxy.cut.is_set()
        assert offsets[0] == 0 and 0 < offsets[-1] <= len(data) // 2, offsets  # resumed, not started again
        with storage.open("docs/cut.bin") as f:
            assert f.read() == data
    finally:
        proxy.close()
        storage.delete("docs/cut.bin")


def test_in_a_browser_a_file_over_the_field_s_size_is_refused_before_a_byte_is_sent(live_server, page):  # noqa: F811
    from .testapp.forms import DirectDocumentForm

    field = DirectDocumentForm.base_fields["upload"]
    puts: list[str] = []
    page.on("request", lambda request: puts.append(request.url) if request.method == "PUT" else None)
    original, field.max_size = field.max_size, 1000  # DirectUploadField(max_size=1000), on the test app's page
    try:
        page.goto(live_server.url + "/direct/")
        page.set_input_files("#id_upload", files=[{"name": "a.bin", "mimeType": "text/plain", "buffer": b"x" * 1001}])
        expect(page.locator(".nats-direct-upload .nats-upload-status")).to_have_text(
            "This file is 1001 bytes; at most 1000 are allowed."
        )
    finally:
        field.max_size = original
    assert puts == []
