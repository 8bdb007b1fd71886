"""What the site serves from its buckets: user content is shown but never runs, and no request gets a 500.

The browser tests drive Debian's chromium as tests/test_browser.py does.
"""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
import textwrap
import wave
from urllib.parse import urlencode, urlsplit

import pytest
from django.core.exceptions import SuspiciousFileOperation
from django.core.files.base import ContentFile
from django.core.files.storage import storages
from django.core.files.uploadedfile import SimpleUploadedFile
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from natsstorage import NatsStorage, contenttypes, signing
from natsstorage.testing import NatsServer

from . import test_browser
from .helpers import DOT_PNG, body, put_foreign
from .test_browser import CHROMIUM
from .test_properties import REPEATABLE
from .test_static import collectstatic

page = test_browser.page  # the browser's page fixture, as test_browser.py makes it
SCRIPT = b'<!doctype html><script>document.title = "ran"; window.ran && window.ran()</script><p>hello'


@pytest.fixture
def media(serve) -> NatsStorage:
    return serve()


# -- one Content-Type, stored and sent ------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "data", "stored"),
    [
        ("video/mp4,text/html", SCRIPT, "application/octet-stream"),  # a browser takes the last of a list
        ("audio/mpeg, text/html", SCRIPT, "application/octet-stream"),
        ('image/png; x="a,text/html"', b"x", "application/octet-stream"),  # a comma anywhere
        ("IMAGE/PNG ; Foo=bar", b"x", "image/png"),
        ("text/plain; format=flowed; charset=ISO-8859-1", b"caf\xe9", "text/plain; charset=iso-8859-1"),
        ("text/plain; charset=no-such-charset", b"caf\xc3\xa9", "text/plain; charset=utf-8"),
        ("text/csv", b"a,b\n", "text/csv; charset=utf-8"),
        ("text/html", b"caf\xe9!", "text/html"),  # not UTF-8: no charset
        ("text/html\x00", b"x", "application/octet-stream"),
        ("*/*", b"x", "application/octet-stream"),
        ("text", b"x", "application/octet-stream"),
        ("image/" + "x" * 300, b"x", "application/octet-stream"),
        ("", b"x", "video/mp4"),  # none given: guessed from the name
    ],
)
def test_an_upload_is_stored_with_one_normalised_content_type(media, given, data, stored):
    name = media.save("clip.mp4", SimpleUploadedFile("clip.mp4", data, content_type=given))
    assert media.info(name).content_type == stored


def test_text_is_utf_8_by_its_first_bytes_even_when_a_character_is_cut_there():
    text = "é".encode() * contenttypes.SNIFF_BYTES  # the sample ends inside a character
    assert contenttypes.normalise("text/plain", sample=text) == "text/plain; charset=utf-8"
    assert contenttypes.normalise("text/plain", sample=b"\xff" + text) == "text/plain"
    assert contenttypes.normalise("image/png", sample=text) == "image/png"


def test_an_upload_form_naming_a_list_of_types_gets_an_attachment_that_runs_nothing(admin_client, client):
    """The attack of issue 22: the multipart part says ``video/mp4,text/html``; Chromium rendered it as HTML."""
    upload = SimpleUploadedFile("clip.mp4", SCRIPT, content_type="video/mp4,text/html")
    response = admin_client.post("/admin/testapp/document/add/", {"title": "clip", "upload": upload})
    assert response.status_code == 302
    from tests.testapp.models import Document

    document = Document.objects.get()
    try:
        assert document.upload.storage.info(document.upload.name).content_type == "application/octet-stream"
        served = client.get(document.upload.url)
        assert served.status_code == 200
        assert served["Content-Type"] == "application/octet-stream"
        assert served["Content-Disposition"].startswith("attachment;")
        assert served["X-Content-Type-Options"] == "nosniff"
        assert "sandbox" in served["Content-Security-Policy"]
    finally:
        document.upload.delete()


@pytest.mark.parametrize(
    "headers",
    [
        {"Content-Type": ["video/mp4,text/html"], "Content-Disposition": ["inline"]},
        {"Content-Type": ["image/png", "text/html"]},  # two values: a list too
        {"content-type": ["text/html;;"], "Content-Disposition": ["inline; filename=x.png"]},
    ],
)
def test_a_type_another_nats_client_stored_is_normalised_when_sent(media, client, headers):
    media.save("ours.txt", ContentFile(b"ours"))  # makes the bucket
    put_foreign(media, "theirs.png", SCRIPT, headers=headers)
    response = client.get(media.url("theirs.png"))
    assert response.status_code == 200
    assert response["Content-Type"] in ("application/octet-stream", "text/html")
    assert response["Content-Disposition"].startswith("attachment;")
    assert "sandbox" in response["Content-Security-Policy"]


def test_a_header_editor_stores_one_type(media):
    name = media.save("a.png", ContentFile(DOT_PNG))
    media.update_meta(name, headers={"Content-Type": "image/png,text/html"})
    assert media.info(name).content_type == "application/octet-stream"
    media.update_meta(name, headers={"Content-Type": "Image/PNG; q=1"})
    assert media.info(name).content_type == "image/png"


def test_a_signed_content_type_override_is_normalised_and_html_stays_an_attachment(media, client):
    name = media.save("a.png", ContentFile(DOT_PNG))
    response = client.get(media.url(name, parameters={"ResponseContentType": "image/gif,text/html"}))
    assert response["Content-Type"] == "application/octet-stream"
    assert response["Content-Disposition"].startswith("attachment;")


def test_a_media_object_carries_nosniff_and_a_sandbox_policy_a_static_one_no_sandbox(media_and_static, client):
    media, static = media_and_static
    name = media.save("dot.png", ContentFile(DOT_PNG))
    response = client.get(media.url(name))
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Content-Security-Policy"].startswith("sandbox")
    assert "allow-scripts" not in response["Content-Security-Policy"]
    css = client.get(static.url("css/site.css"))
    assert css.status_code == 200
    assert css["X-Content-Type-Options"] == "nosniff"
    assert "Content-Security-Policy" not in css  # the site's own files: a page may run its scripts


@pytest.fixture
def media_and_static(media, bucket_name, settings, sources):
    """Media and static files in one bucket, under two locations (the quickstart's layout)."""
    settings.STATICFILES_DIRS = [str(sources)]
    settings.STORAGES = {
        **settings.STORAGES,
        "media": {"BACKEND": "natsstorage.NatsStorage", "OPTIONS": {"bucket": bucket_name, "location": "media"}},
        "staticfiles": {
            "BACKEND": "natsstorage.NatsStaticStorage",
            "OPTIONS": {"bucket": bucket_name, "location": "static"},
        },
    }
    collectstatic()
    return storages["media"], storages["staticfiles"]


# -- media on another origin --------------------------------------------------------------------

MEDIA_HOST = "media.testserver"


class MediaHost:
    """The view alone, on its own host: what a site adds so that uploads never share its origin."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if request.get_host() == MEDIA_HOST:
            request.urlconf = "natsstorage.urls"
        return self.get_response(request)


def test_media_served_from_another_origin(serve, client, settings, bucket_name):
    settings.ALLOWED_HOSTS = ["testserver", MEDIA_HOST]
    settings.MIDDLEWARE = [f"{__name__}.MediaHost", *settings.MIDDLEWARE]
    settings.ROOT_URLCONF = "tests.test_user_content"  # the site's own pages: no natsstorage.urls here
    media = serve(base_url=f"http://{MEDIA_HOST}/{bucket_name}/")
    name = media.save("dot.png", ContentFile(DOT_PNG))
    url = urlsplit(media.url(name))
    assert url.netloc == MEDIA_HOST
    response = client.get(f"{url.path}?{url.query}", headers={"Host": MEDIA_HOST})
    assert response.status_code == 200
    assert body(response) == DOT_PNG
    assert client.get(f"{url.path}?{url.query}").status_code == 404  # not on the site's own host


urlpatterns: list[object] = []  # the site's URLconf in test_media_served_from_another_origin


# -- links: signing, names -------------------------------------------------------------------------


def test_an_override_folding_another_into_its_value_is_refused(media, client):
    name = media.save("a.txt", ContentFile(b"a"))
    signed = signing.sign(
        media.config.bucket,
        name,
        expiry=60,
        overrides={"response-cache-control": "no-store", "response-content-type": "text/plain"},
    )
    folded = {
        "response-cache-control": "no-store\nresponse-content-type=text/plain",
        signing.EXPIRES: signed[signing.EXPIRES],
        signing.SIGNATURE: signed[signing.SIGNATURE],
    }
    response = client.get(f"/files/{media.config.bucket}/{name}?{urlencode(folded)}")
    assert response.status_code == 403
    assert client.get(f"/files/{media.config.bucket}/{name}?{urlencode(signed)}").status_code == 200


@pytest.mark.parametrize("value", ["no-store\r\n", "a\x00b", "a\x1bb", "a\x7f", "a\x85b"])
def test_no_part_with_a_control_character_is_signed(media, value):
    with pytest.raises(ValueError, match="control character"):
        media.url("a.txt", parameters={"ResponseCacheControl": value})
    with pytest.raises(ValueError, match="control character"):
        signing.sign(media.config.bucket, "a.txt", expiry=60, overrides={"response-cache-control": value})


@pytest.mark.parametrize("name", ["../x.txt", "a/../../x.txt", "./x.txt", "a\\..\\..\\x.txt"])
def test_url_of_a_public_storage_refuses_names_that_lead_out_of_its_path_as_a_signed_one_does(serve, name):
    public = serve(public=True)
    with pytest.raises(SuspiciousFileOperation):
        public.url(name)
    signed = serve()
    with pytest.raises(SuspiciousFileOperation):
        signed.url(name)


def test_url_of_a_public_storage_quotes_what_leads_nowhere_else_as_file_system_storage_does(serve):
    # Django's own tests: url("ab\0c") is ".../ab%00c", and {% static "path/" %} a directory's URL.
    public = serve(public=True)
    assert public.url("ab\x00c").endswith("/ab%00c") and public.url("path/").endswith("/path/")
    signed = serve()
    for name in ("ab\x00c", "path/", "a//x.txt"):  # a signed link names one object
        with pytest.raises(SuspiciousFileOperation):
            signed.url(name)


# -- no request gets a 500 --------------------------------------------------------------------------


@pytest.fixture
def stored(media) -> tuple[NatsStorage, str]:
    return media, media.save("a.txt", ContentFile(b"0123456789" * 10))


@pytest.mark.parametrize(
    ("query", "headers", "status"),
    [
        ({signing.EXPIRES: "²", signing.SIGNATURE: "x"}, {}, 403),  # isdigit() says yes, int() no
        ({signing.EXPIRES: "٣" * 10, signing.SIGNATURE: "x"}, {}, 403),  # int() takes these: still not ASCII
        ({signing.EXPIRES: "9" * 5000, signing.SIGNATURE: "x"}, {}, 403),  # past int()'s 4,300 digits
        (None, {"Range": "bytes=" + "1" * 5000 + "-"}, 200),  # ignored: the whole
        (None, {"Range": "bytes=-" + "1" * 5000}, 200),
        (None, {"Range": "bytes=²-"}, 200),
        (None, {"Range": "bytes=١-٢"}, 200),
        (None, {"Range": "bytes=" + "9" * 50 + "-"}, 416),  # a long number that still parses: past the end
    ],
)
def test_odd_digits_get_a_4xx_or_are_ignored(stored, client, query, headers, status):
    media, name = stored
    url = f"/files/{media.config.bucket}/{name}?{urlencode(query)}" if query is not None else media.url(name)
    response = client.get(url, headers=headers)
    assert response.status_code == status
    body(response)


ANY_TEXT = st.text(st.characters(exclude_categories=["Cs"]), max_size=30)
LATIN_1 = st.text(st.characters(max_codepoint=255, exclude_characters="\r\n"), max_size=40)
DIGITS = st.one_of(
    st.integers(min_value=0, max_value=200).map(str),
    st.text(st.characters(categories=["Nd", "No"]), min_size=1, max_size=6),
    st.integers(min_value=1, max_value=6000).map(lambda n: "9" * n),
)
RANGES = st.one_of(
    LATIN_1,
    st.builds(lambda a, b: f"bytes={a}-{b}", st.one_of(st.just(""), DIGITS), st.one_of(st.just(""), DIGITS)),
)
VALIDATORS = st.one_of(
    LATIN_1, st.just('"x"'), st.just('W/"x"'), st.just("*"), st.just("Thu, 01 Jan 2099 00:00:00 GMT")
)
OVERRIDES = st.dictionaries(st.sampled_from(sorted(signing.OVERRIDES.values())), ANY_TEXT, max_size=3)


@hypothesis_settings(REPEATABLE, max_examples=300)
@given(
    signed=st.booleans(),
    expires=st.one_of(st.none(), DIGITS, ANY_TEXT),
    signature=st.one_of(st.none(), ANY_TEXT),
    overrides=OVERRIDES,
    extra=st.dictionaries(ANY_TEXT, ANY_TEXT, max_size=2),
    range_=st.one_of(st.none(), RANGES),
    if_none_match=st.one_of(st.none(), VALIDATORS),
    if_range=st.one_of(st.none(), VALIDATORS),
    if_modified_since=st.one_of(st.none(), VALIDATORS),
)
def test_the_view_answers_any_query_and_headers_without_a_500(
    stored, client, signed, expires, signature, overrides, extra, range_, if_none_match, if_range, if_modified_since
):
    media, name = stored
    query = {**extra, **overrides}
    if signed:
        with contextlib.suppress(ValueError):  # a control character: no link is signed with it
            query.update(signing.sign(media.config.bucket, name, expiry=60, overrides=overrides))
    if expires is not None:
        query[signing.EXPIRES] = expires
    if signature is not None:
        query[signing.SIGNATURE] = signature
    headers = {
        header: value
        for header, value in [
            ("Range", range_),
            ("If-None-Match", if_none_match),
            ("If-Range", if_range),
            ("If-Modified-Since", if_modified_since),
        ]
        if value is not None
    }
    response = client.get(f"/files/{media.config.bucket}/{name}?{urlencode(query)}", headers=headers)
    assert response.status_code in (200, 206, 304, 400, 403, 404, 416)
    body(response)  # the body streams too


# -- a site without django.contrib.auth ---------------------------------------------------------------

SITE_WITHOUT_AUTH = """
SECRET_KEY = "not-secret"
INSTALLED_APPS = ["natsstorage"]
ROOT_URLCONF = "site_urls"
ALLOWED_HOSTS = ["testserver"]
USE_TZ = True
NATSSTORAGE = {{"servers": {servers!r}, "timeout": 5.0}}
STORAGES = {{"default": {{"BACKEND": "natsstorage.NatsStorage", "OPTIONS": {{"bucket": {bucket!r}}}}}}}
"""
REQUEST = """
import django
django.setup()
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.core.management import call_command
from django.test import Client

call_command("check")
name = default_storage.save("hello.txt", ContentFile(b"hello"))
response = Client().get(default_storage.url(name))
print(response.status_code, b"".join(response.streaming_content).decode())
from natsstorage.buckettools import BucketTools
BucketTools(default_storage).destroy()
"""


def test_a_site_without_django_contrib_auth_serves_its_files(tmp_path, nats_server: NatsServer, bucket_name):
    (tmp_path / "site_settings.py").write_text(SITE_WITHOUT_AUTH.format(servers=nats_server.url, bucket=bucket_name))
    (tmp_path / "site_urls.py").write_text(
        'from django.urls import include, path\nurlpatterns = [path("files/", include("natsstorage.urls"))]\n'
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "site_settings", "PYTHONPATH": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(REQUEST)], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "200 hello"


# -- in a real browser ----------------------------------------------------------------------------

in_a_browser = pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"no browser: {CHROMIUM} is missing")


def wav() -> bytes:
    """A fifth of a second of sound."""
    out = io.BytesIO()
    with wave.open(out, "wb") as sound:
        sound.setnchannels(1)
        sound.setsampwidth(1)
        sound.setframerate(8000)
        sound.writeframes(bytes(range(256)) * 6)
    return out.getvalue()


PDF = b"""%PDF-1.1
1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj
2 0 obj<</Type/Pages/Kids[3 0 R]/Count 1>>endobj
3 0 obj<</Type/Page/Parent 2 0 R/MediaBox[0 0 200 200]>>endobj
trailer<</Root 1 0 R>>
%%EOF
"""


@pytest.mark.django_db(transaction=True)
@in_a_browser
def test_in_a_browser_an_html_upload_runs_no_script(live_server, page, media):
    name = media.save("clip.mp4", SimpleUploadedFile("clip.mp4", SCRIPT, content_type="video/mp4,text/html"))
    url = live_server.url + media.url(name)
    ran: list[bool] = []
    page.expose_function("ran", lambda: ran.append(True))
    # "Download is starting": the page never navigates.
    with page.expect_download() as download, contextlib.suppress(Exception):
        page.goto(url)
    assert download.value.suggested_filename == "clip.mp4"

    # Were a browser to render it as HTML in place anyway, the view's policy still runs nothing.
    def as_inline_html(route):
        response = route.fetch()
        headers = {**response.headers, "content-type": "text/html", "content-disposition": "inline"}
        route.fulfill(response=response, headers=headers)

    page.route("**/clip.mp4*", as_inline_html)
    page.goto(url)
    assert page.locator("p").inner_text() == "hello"  # rendered
    assert page.title() != "ran" and not ran


def pdf_viewer(page):
    """The frame of Chromium's PDF viewer (its own extension) once the page has made it."""
    for _ in range(300):
        for frame in page.frames:
            if frame.url.startswith("chrome-extension://"):
                return frame
        page.wait_for_timeout(100)
    raise AssertionError(f"no PDF viewer in {[frame.url for frame in page.frames]}")


@pytest.mark.django_db(transaction=True)
@in_a_browser
def test_in_a_browser_images_audio_and_pdf_still_display_inline(live_server, page, media):
    image = media.save("dot.png", ContentFile(DOT_PNG))
    sound = media.save("sound.wav", ContentFile(wav()))
    document = media.save("doc.pdf", ContentFile(PDF))

    response = page.goto(live_server.url + media.url(image))
    assert "sandbox" in response.headers["content-security-policy"]
    assert page.evaluate("document.images[0].naturalWidth") > 0

    response = page.goto(live_server.url + media.url(sound))
    assert "sandbox" in response.headers["content-security-policy"]
    # Chromium's media document (the same for video): a <video> that loaded the sound's metadata.
    page.wait_for_function("() => document.querySelector('video')?.duration > 0")

    assert "sandbox" in page.request.get(live_server.url + media.url(document)).headers["content-security-policy"]
    page.goto(live_server.url + media.url(document))
    viewer = pdf_viewer(page)
    # Chromium's PDF viewer (its own extension) counted the document's one page.
    viewer.wait_for_function(
        "() => document.querySelector('pdf-viewer')?.shadowRoot?.querySelector('viewer-toolbar')?.docLength === 1"
    )
