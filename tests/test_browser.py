"""End to end in a real browser: Playwright drives Debian's chromium against a live server.

Playwright's own browser download cannot work here (no network), so the test
uses /usr/bin/chromium; .ci/run installs it with apt-get when it is missing.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from django.urls import reverse
from playwright.sync_api import expect, sync_playwright

from natsstorage import NatsStorage

from .helpers import MiB, random_bytes
from .test_static import collectstatic

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        not os.path.exists(CHROMIUM), reason=f"no browser: {CHROMIUM} is missing (apt-get install chromium)"
    ),
]


@pytest.fixture
def page(monkeypatch):
    # Playwright's sync API keeps an event loop in this thread; the test's own ORM calls are still plain sync.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(accept_downloads=True)
            context.set_default_timeout(30_000)
            yield context.new_page()
        finally:
            browser.close()


def test_upload_in_the_admin_download_the_link_and_see_the_bucket(live_server, page, admin_user):
    data = random_bytes(6 * MiB)
    page.goto(live_server.url + reverse("admin:login"))
    page.fill("#id_username", admin_user.username)
    page.fill("#id_password", "password")  # pytest-django's admin_user
    page.click("input[type=submit]")
    page.get_by_text("NATS object store").wait_for()

    page.goto(live_server.url + reverse("admin:testapp_document_add"))
    page.fill("#id_title", "from the browser")
    page.set_input_files(
        "#id_upload", files=[{"name": "browser.bin", "mimeType": "application/octet-stream", "buffer": data}]
    )
    page.click("input[name=_continue]")
    currently = page.locator("p.file-upload a")
    name = currently.inner_text()
    try:
        assert re.fullmatch(r"docs/browser\w*\.bin", name)
        assert "expires=" in currently.get_attribute("href")
        with page.expect_download() as download:
            currently.click()
        assert Path(download.value.path()).read_bytes() == data

        page.goto(live_server.url + reverse("admin:natsstorage_bucket_changelist"))
        page.get_by_role("link", name="configs", exact=True).click()
        page.fill("#searchbar", name)
        page.click("#changelist-search input[type=submit]")
        row = page.locator("#result_list tbody tr", has_text=name)
        expect(row).to_have_count(1)  # waits for the search's page to load
        expect(row).to_contain_text("6.0 MiB")
    finally:
        NatsStorage("configs").delete(name)


def test_a_page_styled_from_the_bucket_loads_its_css_and_the_image_the_css_names(live_server, page, media):
    collectstatic()
    image = re.compile(r"/static/img/dot\.[0-9a-f]{12}\.png$")
    with page.expect_response(image) as response:
        page.goto(live_server.url + "/styled/")
    assert response.value.status == 200
    assert response.value.headers["content-type"] == "image/png"
    background = page.eval_on_selector("#dot", "e => getComputedStyle(e).backgroundImage")
    assert image.search(background.removeprefix('url("').removesuffix('")'))
