"""End to end in a real browser: Playwright drives Debian's chromium against a live server.

Playwright's own browser download cannot work here (no network), so the test
uses /usr/bin/chromium; .ci/run installs it with apt-get when it is missing.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import pytest
from django.core.files.base import ContentFile
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

# .ci/run installs Chromium; elsewhere these tests say why they cannot run.
NEEDS_CHROMIUM = pytest.mark.skipif(
    not os.path.exists(CHROMIUM), reason=f"no browser: {CHROMIUM} is missing (apt-get install chromium)"
)
pytestmark = [pytest.mark.django_db(transaction=True), NEEDS_CHROMIUM]


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


WINDOW = {"width": 1024, "height": 768}
# Reports every value the upload form's <progress> shows, as it shows it.
WATCH_PROGRESS = """() => {
    const bar = document.querySelector('#nats-upload progress');
    new MutationObserver(() => window.reportProgress(bar.value, bar.max))
        .observe(bar, {attributes: true, attributeFilter: ['value', 'max']});
}"""


def log_in(page, live_server, user) -> None:
    page.goto(live_server.url + reverse("admin:login"))
    page.fill("#id_username", user.username)
    page.fill("#id_password", "password")  # pytest-django's admin_user
    page.click("input[type=submit]")
    page.get_by_text("NATS object store").wait_for()


# The elements reaching past the window's right edge, widest first: what a failure names.
PAST_THE_EDGE = """(edge) => [...document.querySelectorAll('body *')]
    .map(e => [Math.round(e.getBoundingClientRect().right), e.tagName, e.id, e.className])
    .filter(([right]) => right > edge).sort((a, b) => b[0] - a[0]).slice(0, 8)"""


def assert_fits_the_window(page) -> None:
    """Like Playwright's own assertions, retried for a while: a page still laying itself out may be wider."""
    deadline = time.monotonic() + 3
    while (width := page.evaluate("document.documentElement.scrollWidth")) > WINDOW["width"]:
        if time.monotonic() > deadline:
            past = page.evaluate(PAST_THE_EDGE, WINDOW["width"])
            raise AssertionError(f"{page.url} is {width - WINDOW['width']} px wider than the window: {past}")
        time.sleep(0.1)


# Words of the Description and Used-by columns that the layout broke across lines, as "megabyte s" was.
BROKEN_WORDS = """() => {
    const broken = [];
    for (const cell of document.querySelectorAll('td.nats-description, td.nats-used-by')) {
        const walker = document.createTreeWalker(cell, NodeFilter.SHOW_TEXT);
        for (let node = walker.nextNode(); node; node = walker.nextNode()) {
            for (const word of node.data.matchAll(/\\S+/g)) {
                const range = document.createRange();
                range.setStart(node, word.index);
                range.setEnd(node, word.index + word[0].length);
                const lines = new Set([...range.getClientRects()].map(rect => Math.round(rect.top)));
                if (lines.size > 1) broken.push(word[0]);
            }
        }
    }
    return broken;
}"""
# Download icons that wrapped onto a line of their own, below the end of the name they belong to.
WRAPPED_ICONS = """() => [...document.querySelectorAll('#result_list a.nats-download')].filter(icon => {
    const lines = icon.previousElementSibling.getClientRects();
    const last = lines[lines.length - 1];
    return Math.abs(icon.getBoundingClientRect().top - last.top) > last.height / 2;
}).map(icon => icon.title)"""


def assert_words_and_icons_are_whole(page) -> None:
    assert page.locator("td.nats-description, td.nats-used-by").count(), "no column to measure"
    assert page.evaluate(BROKEN_WORDS) == []
    assert page.evaluate(WRAPPED_ICONS) == []


def test_upload_in_the_admin_download_the_link_and_see_the_bucket(live_server, page, admin_user):
    data = random_bytes(6 * MiB)
    log_in(page, live_server, admin_user)

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
        with page.expect_navigation():
            page.get_by_role("link", name="configs", exact=True).click()
        page.fill("#searchbar", name)
        page.click("#changelist-search input[type=submit]")
        row = page.locator("#result_list tbody tr", has_text=name)
        expect(row).to_have_count(1)  # waits for the search's page to load
        expect(row).to_contain_text("6.0 MiB")
    finally:
        NatsStorage("configs").delete(name)


def test_in_a_1024_px_window_upload_edit_and_delete_objects_of_a_bucket(
    live_server, page, admin_user, make_storage, settings
):
    storage = make_storage(
        description="Configuration files of the fleet, kept for a day",
        ttl=86400.0,
        max_bytes=64 * MiB,
        compression=True,
    )
    bucket = storage.config.bucket
    settings.STORAGES = {  # long labels in the Used-by column
        **settings.STORAGES,
        "staticfiles_of_the_fleet": {"BACKEND": "natsstorage.NatsStorage", "OPTIONS": {"bucket": bucket}},
        "media_of_the_fleet": {"BACKEND": "natsstorage.NatsStorage", "OPTIONS": {"bucket": bucket}},
    }
    storage.save("docs/existing-configuration-file-with-a-long-name.yaml", ContentFile(b"a: 1\n"))
    storage.update_meta(
        "docs/existing-configuration-file-with-a-long-name.yaml",
        description="Sizes in megabytes of every volume, written by manage.py demo for STORAGES['staticfiles']",
    )
    page.set_viewport_size(WINDOW)
    log_in(page, live_server, admin_user)
    page.goto(live_server.url + reverse("admin:natsstorage_bucket_changelist"))
    expect(page.get_by_role("link", name=bucket, exact=True)).to_be_visible()
    assert_fits_the_window(page)
    assert_words_and_icons_are_whole(page)

    # Upload two files at once, one of them large enough for the progress to be seen.
    with page.expect_navigation():  # the page measured is the one the link leads to, loaded
        page.get_by_role("link", name=bucket, exact=True).click()
    assert_fits_the_window(page)
    assert_words_and_icons_are_whole(page)
    big, small = random_bytes(8 * MiB), b"x,y\n1,2\n"
    page.set_input_files(
        "#nats-upload input[type=file]",
        files=[
            {"name": "big.bin", "mimeType": "application/octet-stream", "buffer": big},
            {"name": "small.csv", "mimeType": "text/csv", "buffer": small},
        ],
    )
    page.fill("#id_folder", "uploads")
    progress: list[tuple[float, float]] = []
    page.expose_function("reportProgress", lambda value, maximum: progress.append((value, maximum)))
    page.evaluate(WATCH_PROGRESS)
    with page.expect_navigation():
        page.click("#nats-upload input[type=submit]")
    expect(page.locator(".messagelist")).to_contain_text(f"Uploaded 2 objects to “uploads/” in bucket “{bucket}”.")
    expect(page.locator(".messagelist details")).not_to_have_attribute("open", "")  # the names, behind "Show names"
    assert any(value == maximum > len(big) for value, maximum in progress), progress  # the whole request, sent
    assert storage.open("uploads/big.bin").read() == big
    assert storage.info("uploads/small.csv").content_type == "text/csv; charset=utf-8"

    # Edit one on its page.
    with page.expect_navigation():
        page.get_by_role("link", name="uploads/small.csv", exact=True).click()
    assert_fits_the_window(page)
    expect(page.locator(".nats-metadata")).to_contain_text(storage.info("uploads/small.csv").digest)
    page.fill("#id_description", "two rows")
    page.fill("#id_headers", "Content-Type: text/csv\nCache-Control: max-age=60")
    page.click("input[name=_save]")
    expect(page.locator(".messagelist")).to_contain_text("Changed the description and the headers")
    info = storage.info("uploads/small.csv")
    assert info.description == "two rows" and info.headers["Cache-Control"] == ["max-age=60"]

    # Delete both uploads at once.
    page.get_by_role("link", name=bucket, exact=True).click()
    page.get_by_role("checkbox", name="Select uploads/big.bin").check()
    page.get_by_role("checkbox", name="Select uploads/small.csv").check()
    expect(page.locator(".action-counter")).to_have_text("2 of 3 selected")  # Django's own actions.js
    page.select_option("select[name=action]", "delete_selected")
    page.click("button[name=index]")
    expect(page.locator("#content")).to_contain_text("Are you sure you want to delete these 2 objects")
    page.click("input[type=submit]")
    expect(page.locator(".messagelist")).to_contain_text(f"Deleted 2 objects from bucket “{bucket}”")
    assert storage.listdir("") == (["docs"], [])


def test_250_files_at_once_go_in_batches_under_djangos_limit_and_the_progress_completes(
    live_server, page, admin_user, storage
):
    storage.save("first.txt", ContentFile(b"the bucket exists"))
    bucket = storage.config.bucket
    log_in(page, live_server, admin_user)
    page.goto(live_server.url + reverse("admin:natsstorage_bucket_objects", kwargs={"bucket": bucket}))
    assert page.get_attribute("#nats-upload", "data-max-files") == "100"  # Django's DATA_UPLOAD_MAX_NUMBER_FILES
    files = [{"name": f"{number:03}.txt", "mimeType": "text/plain", "buffer": b"x" * 1000} for number in range(250)]
    page.set_input_files("#nats-upload input[type=file]", files=files)
    page.fill("#id_folder", "many")
    progress: list[tuple[float, float]] = []
    page.expose_function("reportProgress", lambda value, maximum: progress.append((value, maximum)))
    page.evaluate(WATCH_PROGRESS)
    with page.expect_navigation(timeout=120_000):
        page.click("#nats-upload input[type=submit]")
    expect(page.locator(".messagelist")).to_have_text(
        re.compile(f"Uploaded 250 objects to “many/” in bucket “{bucket}”")
    )
    assert (250_000, 250_000) in progress, progress[-5:]  # every batch sent: the bar reached its end
    assert storage.listdir("many") == ([], [file["name"] for file in files])


def test_select_all_across_pages_deletes_a_prefix_of_225_objects_in_one_action(live_server, page, admin_user, storage):
    for number in range(225):
        storage.save(f"logs/{number:03}.txt", ContentFile(b"x"))
    storage.save("keep.txt", ContentFile(b"x"))
    log_in(page, live_server, admin_user)
    url = reverse("admin:natsstorage_bucket_objects", kwargs={"bucket": storage.config.bucket})
    page.goto(f"{live_server.url}{url}?q=logs/")
    page.check("#action-toggle")  # the page's 100
    page.get_by_role("button", name="Select all 225 objects whose name starts with “logs/”").click()
    expect(page.locator(".actions .all")).to_have_text("All 225 selected")  # Django's own actions.js
    page.select_option("select[name=action]", "delete_selected")
    page.click("button[name=index]")
    expect(page.locator("#content")).to_contain_text("Are you sure you want to delete these 225 objects")
    page.click("input[type=submit]")
    expect(page.locator(".messagelist")).to_contain_text("Deleted 225 objects from bucket")
    assert storage.listdir("") == ([], ["keep.txt"])


def test_a_page_styled_from_the_bucket_loads_its_css_and_the_image_the_css_names(live_server, page, media):
    collectstatic()
    image = re.compile(r"/static/img/dot\.[0-9a-f]{12}\.png$")
    with page.expect_response(image) as response:
        page.goto(live_server.url + "/styled/")
    assert response.value.status == 200
    assert response.value.headers["content-type"] == "image/png"
    background = page.eval_on_selector("#dot", "e => getComputedStyle(e).backgroundImage")
    assert image.search(background.removeprefix('url("').removesuffix('")'))
