"""A DirectUploadField in a real browser: the file goes to the bucket with its progress shown, the form saves it."""

from __future__ import annotations

import os

import pytest
from playwright.sync_api import expect

from natsstorage import NatsStorage

from .helpers import MiB, random_bytes
from .test_browser import CHROMIUM, page  # noqa: F401 - the fixture
from .testapp.models import Document

pytestmark = [
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        not os.path.exists(CHROMIUM), reason=f"no browser: {CHROMIUM} is missing (apt-get install chromium)"
    ),
]
# Reports every value the widget's <progress> shows, as it shows it.
WATCH_PROGRESS = """() => {
    const bar = document.querySelector('.nats-direct-upload progress');
    new MutationObserver(() => window.reportProgress(bar.value, bar.max))
        .observe(bar, {attributes: true, attributeFilter: ['value', 'max']});
}"""


def test_in_a_browser_the_widget_uploads_with_progress_and_the_form_saves_the_name(live_server, page):  # noqa: F811
    data = random_bytes(24 * MiB)
    page.goto(live_server.url + "/direct/")
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
        storage.delete("docs/big_file.bin")
