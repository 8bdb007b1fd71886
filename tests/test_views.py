"""Serving files: ``storage.url()`` and the streaming view, through Django's test clients."""

from __future__ import annotations

import hashlib
import logging
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from asgiref.sync import async_to_sync
from django.core.exceptions import ImproperlyConfigured
from django.core.files.base import ContentFile, File
from django.test import AsyncClient
from django.urls import reverse
from django.utils.http import http_date

from natsstorage import NatsStorage, signing
from natsstorage.exceptions import CorruptObject
from natsstorage.testing import free_port

from .helpers import MiB, body, consumed, corrupt_last_byte, random_bytes


@pytest.fixture
def files(serve) -> NatsStorage:
    return serve()


def test_url_is_signed_and_expiring_by_default(files):
    url = files.url("docs/report.pdf")
    parts = urlsplit(url)
    assert parts.path == f"/files/{files.config.bucket}/docs/report.pdf"
    query = parse_qs(parts.query)
    assert set(query) == {signing.EXPIRES, signing.SIGNATURE}
    assert time.time() + 3500 < int(query[signing.EXPIRES][0]) <= time.time() + 3600


def test_url_does_not_touch_the_network():
    dead = NatsStorage("nowhere", servers=f"nats://127.0.0.1:{free_port()}", base_url="/x/", public=True)
    assert dead.url("a b/ü?.txt") == "/x/a%20b/%C3%BC%3F.txt"


def test_url_quotes_names_and_the_view_finds_them(files, client):
    name = files.save("odd names/ü #1?.txt", ContentFile(b"odd"))
    response = client.get(files.url(name))
    assert response.status_code == 200
    assert body(response) == b"odd"


def test_url_with_base_url_points_at_the_cdn(serve):
    files = serve(base_url="https://cdn.example.com/media/")
    assert files.url("a.txt").startswith("https://cdn.example.com/media/a.txt?expires=")


def test_url_without_the_urlconf_says_what_to_add(files, settings):
    settings.ROOT_URLCONF = "django.contrib.auth.urls"  # a URLconf without natsstorage.urls
    with pytest.raises(ImproperlyConfigured, match=r"include\('natsstorage.urls'\)"):
        files.url("a.txt")


def test_a_signed_link_streams_the_object_with_its_headers(files, client):
    data = random_bytes(3 * MiB + 5)
    name = files.save("data/big.bin", ContentFile(data))
    info = files.info(name)
    response = client.get(files.url(name))
    assert response.status_code == 200
    assert response.streaming
    assert response["Content-Type"] == "application/octet-stream"
    assert response["Content-Length"] == str(len(data))
    assert response["Content-Disposition"] == 'attachment; filename="big.bin"'
    assert response["ETag"] == f'"{info.digest.removeprefix("SHA-256=").rstrip("=")}"'
    assert response["Last-Modified"] == http_date(info.mtime.timestamp())
    assert response["Accept-Ranges"] == "bytes"
    assert response["Cache-Control"] == "private, no-cache"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert hashlib.sha256(body(response)).digest() == info.sha256


def test_content_type_comes_from_the_stored_header(files, client):
    name = files.save("notes.dat", ContentFile(b"hi", name="notes.dat"))
    files.update_meta(name, headers={"Content-Type": "text/plain; charset=utf-8"})
    response = client.get(files.url(name))
    assert response["Content-Type"] == "text/plain; charset=utf-8"
    assert response["Content-Disposition"] == 'inline; filename="notes.dat"'


@pytest.mark.parametrize(
    ("name", "disposition"),
    [
        ("photo.png", 'inline; filename="photo.png"'),
        ("page.html", 'attachment; filename="page.html"'),  # never rendered in the site's origin
        ("drawing.svg", 'attachment; filename="drawing.svg"'),
        ('a "quoted"; name.pdf', 'inline; filename="a \\"quoted\\"; name.pdf"'),
        ("naïve résumé.pdf", "inline; filename*=utf-8''na%C3%AFve%20r%C3%A9sum%C3%A9.pdf"),
    ],
)
def test_content_disposition_is_inline_only_for_safe_types_and_safe_for_any_name(files, client, name, disposition):
    name = files.save(name, ContentFile(b"x"))
    assert client.get(files.url(name))["Content-Disposition"] == disposition


def test_download_parameter_forces_an_attachment(files, client):
    name = files.save("photo.png", ContentFile(b"x"))
    response = client.get(files.url(name) + "&download")
    assert response["Content-Disposition"] == 'attachment; filename="photo.png"'


def test_an_empty_object_is_served(files, client):
    name = files.save("empty.txt", ContentFile(b""))
    response = client.get(files.url(name))
    assert response.status_code == 200
    assert response["Content-Length"] == "0"
    assert body(response) == b""


# -- access ------------------------------------------------------------------------


def link(storage: NatsStorage, name: str, **query: str) -> str:
    return reverse("natsstorage:serve", kwargs={"bucket": storage.config.bucket, "name": name}) + (
        "?" + urlencode(query) if query else ""
    )


def test_an_unsigned_link_is_refused(files, client):
    files.save("secret.txt", ContentFile(b"s"))
    response = client.get(link(files, "secret.txt"))
    assert response.status_code == 403
    assert b"not signed" in response.content


def test_an_expired_link_is_refused(files, client):
    files.save("secret.txt", ContentFile(b"s"))
    query = signing.sign(files.config.bucket, "secret.txt", expiry=60, now=time.time() - 61)
    response = client.get(link(files, "secret.txt", **query))
    assert response.status_code == 403
    assert b"expired" in response.content


@pytest.mark.parametrize("tamper", ["name", "expires", "signature", "bucket"])
def test_a_tampered_link_is_refused(serve, client, tamper, make_storage):
    files = serve()
    files.save("secret.txt", ContentFile(b"s"))
    files.save("other.txt", ContentFile(b"o"))
    query = signing.sign(files.config.bucket, "secret.txt", expiry=60)
    target = files
    name = "other.txt" if tamper == "name" else "secret.txt"
    if tamper == "expires":
        query[signing.EXPIRES] = str(int(query[signing.EXPIRES]) + 3600)
    if tamper == "signature":
        query[signing.SIGNATURE] = query[signing.SIGNATURE][:-2] + "AA"
    if tamper == "bucket":
        # The same signature presented for another served bucket's object of the same name.
        target = NatsStorage("configs")
    response = client.get(link(target, name, **query))
    assert response.status_code == 403
    assert b"tampered" in response.content


def test_a_link_signed_with_an_old_secret_key_still_works_from_fallbacks(files, client, settings):
    name = files.save("a.txt", ContentFile(b"a"))
    url = files.url(name)
    settings.SECRET_KEY, settings.SECRET_KEY_FALLBACKS = "a new key", [settings.SECRET_KEY]
    assert client.get(url).status_code == 200
    settings.SECRET_KEY_FALLBACKS = []
    assert client.get(url).status_code == 403


def test_a_public_bucket_gives_plain_links(serve, client):
    files = serve(public=True)
    name = files.save("logo.png", ContentFile(b"png"))
    url = files.url(name)
    assert "?" not in url
    response = client.get(url)
    assert response.status_code == 200
    assert response["Cache-Control"] == "public, no-cache"
    assert body(response) == b"png"


def test_a_bucket_is_public_only_when_every_storage_using_it_is(serve, client, settings, bucket_name):
    files = serve(public=True)
    settings.STORAGES = {
        **settings.STORAGES,
        "private": {"BACKEND": "natsstorage.NatsStorage", "OPTIONS": {"bucket": bucket_name}},
    }
    name = files.save("logo.png", ContentFile(b"png"))
    assert client.get(files.url(name)).status_code == 403


@pytest.mark.django_db
def test_staff_only_refuses_anonymous_users_and_non_staff(serve, client, django_user_model):
    files = serve(staff_only=True)
    name = files.save("internal.txt", ContentFile(b"i"))
    url = files.url(name)
    response = client.get(url)
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("admin:login") + "?next=")
    client.force_login(django_user_model.objects.create_user("user", password="x"))
    assert client.get(url).status_code == 403
    client.force_login(django_user_model.objects.create_user("staff", password="x", is_staff=True))
    response = client.get(url)
    assert response.status_code == 200
    assert body(response) == b"i"


@pytest.mark.django_db
def test_staff_only_still_needs_a_signature_unless_public(serve, admin_client):
    files = serve(staff_only=True)
    files.save("internal.txt", ContentFile(b"i"))
    assert admin_client.get(link(files, "internal.txt")).status_code == 403
    public = serve(staff_only=True, public=True)
    assert admin_client.get(public.url("internal.txt")).status_code == 200


def test_a_bucket_no_storage_uses_is_not_served(make_storage, client):
    other = make_storage()
    other.save("private.txt", ContentFile(b"p"))
    query = signing.sign(other.config.bucket, "private.txt", expiry=60)
    assert client.get(link(other, "private.txt", **query)).status_code == 404


def test_model_field_storages_are_served(client):
    document_storage = NatsStorage("configs")
    name = document_storage.save("docs/served-by-field.txt", ContentFile(b"f"))
    try:
        from tests.testapp.models import Document

        url = Document._meta.get_field("upload").storage.url(name)
        assert body(client.get(url)) == b"f"
    finally:
        document_storage.delete(name)


# -- errors ------------------------------------------------------------------------


def test_a_missing_object_is_404(files, client):
    assert client.get(files.url("missing.txt")).status_code == 404


@pytest.mark.parametrize("name", ["a/../b.txt", "a//b.txt", "./a.txt", "a/%2e%2e/b"])
def test_a_bad_name_is_400_or_404_never_500(files, client, name):
    query = signing.sign(files.config.bucket, name, expiry=60)
    response = client.get(f"/files/{files.config.bucket}/{name}?{urlencode(query)}")
    assert response.status_code in (400, 404)


def test_post_is_not_allowed(files, client):
    name = files.save("a.txt", ContentFile(b"a"))
    assert client.post(files.url(name)).status_code == 405


def test_an_unreachable_server_is_503(serve, client):
    files = serve(servers=f"nats://127.0.0.1:{free_port()}", connect_timeout=0.2)
    response = client.get(files.url("a.txt"))
    assert response.status_code == 503


def test_a_digest_mismatch_mid_stream_is_logged_and_cuts_the_response(files, client, caplog):
    data = random_bytes(2 * files.config.chunk_size + 1000)
    name = files.save("c.bin", ContentFile(data))
    corrupt_last_byte(files, name)
    response = client.get(files.url(name))
    assert response.status_code == 200
    with caplog.at_level(logging.ERROR, "natsstorage"), pytest.raises(CorruptObject, match="SHA-256"):
        body(response)
    assert "failed mid-stream" in caplog.text


def test_a_digest_mismatch_of_an_object_read_with_its_metadata_cuts_the_response_too(serve, client, caplog):
    files = serve(serve_cache=0)  # a copy kept would be served (checked when read): tests/test_serve_cache.py
    name = files.save("small.bin", ContentFile(random_bytes(1000)))  # one chunk: asked for with its metadata
    assert body(client.get(files.url(name)))  # read once, so the next request asks for both at once
    corrupt_last_byte(files, name)
    response = client.get(files.url(name))
    assert response.status_code == 200
    with caplog.at_level(logging.ERROR, "natsstorage"), pytest.raises(CorruptObject, match="SHA-256"):
        body(response)
    assert "failed mid-stream" in caplog.text


# -- conditional requests, ranges, HEAD -----------------------------------------------


@pytest.fixture
def stored(files):
    data = bytes(range(256)) * 4096 + b"tail"  # 1 MiB + 4 bytes, over several chunks
    name = files.save("r.bin", ContentFile(data))
    return files, name, data


def test_if_none_match_gives_304(stored, client):
    files, name, _ = stored
    url = files.url(name)
    etag = client.head(url)["ETag"]
    response = client.get(url, headers={"If-None-Match": etag})
    assert response.status_code == 304
    assert response["ETag"] == etag
    assert response.content == b""
    assert consumed(client.get(url, headers={"If-None-Match": '"other"'})).status_code == 200


def test_if_modified_since_gives_304(stored, client):
    files, name, _ = stored
    url = files.url(name)
    last_modified = client.head(url)["Last-Modified"]
    assert client.get(url, headers={"If-Modified-Since": last_modified}).status_code == 304
    assert consumed(client.get(url, headers={"If-Modified-Since": http_date(0)})).status_code == 200


@pytest.mark.parametrize(
    ("header", "first", "last"),
    [
        ("bytes=0-9", 0, 9),
        ("bytes=200000-400000", 200_000, 400_000),  # across chunk boundaries
        ("bytes=1048570-", 1_048_570, 1_048_579),
        ("bytes=-4", 1_048_576, 1_048_579),
        ("bytes=1048575-99999999", 1_048_575, 1_048_579),
        ("bytes=-99999999", 0, 1_048_579),
    ],
)
def test_a_single_range_gives_206(stored, client, header, first, last):
    files, name, data = stored
    response = client.get(files.url(name), headers={"Range": header})
    assert response.status_code == 206
    assert response["Content-Range"] == f"bytes {first}-{last}/{len(data)}"
    assert response["Content-Length"] == str(last - first + 1)
    assert body(response) == data[first : last + 1]


@pytest.mark.parametrize("header", ["bytes=1048580-", "bytes=99999999-99999999", "bytes=-0"])
def test_an_unsatisfiable_range_gives_416(stored, client, header):
    files, name, data = stored
    response = client.get(files.url(name), headers={"Range": header})
    assert response.status_code == 416
    assert response["Content-Range"] == f"bytes */{len(data)}"


@pytest.mark.parametrize("header", ["bytes=0-1,5-6", "bytes=9-2", "items=0-1", "bytes=-", "bytes=a-b"])
def test_several_or_invalid_ranges_get_the_whole_object(stored, client, header):
    files, name, data = stored
    response = client.get(files.url(name), headers={"Range": header})
    assert response.status_code == 200
    assert body(response) == data


def test_if_range_sends_the_range_only_while_the_validator_matches(stored, client):
    files, name, data = stored
    url = files.url(name)
    first = client.head(url)
    response = client.get(url, headers={"Range": "bytes=0-1", "If-Range": first["ETag"]})
    assert (response.status_code, body(response)) == (206, data[:2])
    response = consumed(client.get(url, headers={"Range": "bytes=0-1", "If-Range": first["Last-Modified"]}))
    assert response.status_code == 206
    response = client.get(url, headers={"Range": "bytes=0-1", "If-Range": '"stale"'})
    assert (response.status_code, body(response)) == (200, data)


def test_head_gives_the_headers_without_a_body(stored, client):
    files, name, data = stored
    response = client.head(files.url(name))
    assert response.status_code == 200
    assert response["Content-Length"] == str(len(data))
    assert response["ETag"]
    assert response.content == b""
    response = client.head(files.url(name), headers={"Range": "bytes=0-9"})
    assert (response.status_code, response["Content-Length"]) == (206, "10")


def test_head_of_a_missing_object_is_404(files, client):
    assert client.head(files.url("missing")).status_code == 404


# -- ASGI: an async iterator -----------------------------------------------------------


async def abody(response) -> bytes:
    return b"".join([chunk async for chunk in response.streaming_content])


def test_under_asgi_the_body_is_an_async_iterator(stored):
    files, name, data = stored

    async def go():
        client = AsyncClient()
        response = await client.get(files.url(name))
        assert response.status_code == 200
        assert response.is_async
        assert await abody(response) == data
        response = await client.get(files.url(name), headers={"Range": "bytes=131000-131100"})
        assert response.status_code == 206
        assert await abody(response) == data[131_000:131_101]
        response = await client.head(files.url(name))
        assert (response.status_code, response["Content-Length"]) == (200, str(len(data)))
        assert (await client.get(files.url("missing"))).status_code == 404

    async_to_sync(go)()


@pytest.mark.django_db
def test_under_asgi_staff_only_checks_the_user(serve, admin_user):
    files = serve(staff_only=True)
    name = files.save("i.txt", ContentFile(b"i"))

    async def go():
        client = AsyncClient()
        assert (await client.get(files.url(name))).status_code == 302
        await client.aforce_login(admin_user)
        response = await client.get(files.url(name))
        assert await abody(response) == b"i"

    async_to_sync(go)()


# -- real servers: a 100 MiB download in bounded memory ---------------------------------

BIG = 100 * MiB
MEMORY_BOUND = 40 * MiB  # growth of the server's peak RSS; holding the file would be > 100 MiB
VENV_BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def big_object(tmp_path_factory):
    """A 100 MiB object in the bucket the test app's Document.upload serves, and its SHA-256."""
    path = tmp_path_factory.mktemp("big") / "big.bin"
    digest = hashlib.sha256()
    with path.open("wb") as out:
        for _ in range(BIG // MiB):
            piece = random_bytes(MiB)
            digest.update(piece)
            out.write(piece)
    storage = NatsStorage("configs")
    with path.open("rb") as handle:
        name = storage.save("docs/served-big.bin", File(handle))
    path.unlink()
    yield storage, name, digest.hexdigest()
    storage.delete(name)


def peak_rss(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1)) * 1024


def worker_pid(pid: int) -> int:
    """gunicorn serves from a child of its master; uvicorn from the process itself."""
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return int(children[0]) if children else pid


@pytest.mark.parametrize("server", ["gunicorn", "uvicorn"])
def test_a_100_mib_download_streams_in_bounded_memory_under_a_real_server(server, big_object, nats_server, tmp_path):
    storage, name, sha256 = big_object
    port = free_port()
    command = {
        "gunicorn": [
            "gunicorn",
            "--workers",
            "1",
            "--bind",
            f"127.0.0.1:{port}",
            "django.core.wsgi:get_wsgi_application()",
        ],
        "uvicorn": [
            "uvicorn",
            "--factory",
            "django.core.asgi:get_asgi_application",
            "--lifespan",
            "off",
            "--port",
            str(port),
        ],
    }[server]
    environment = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings", "NATS_URL": nats_server.url}
    small = storage.save("docs/warm-up.txt", ContentFile(b"warm"))
    log = tmp_path / "server.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [str(VENV_BIN / command[0]), *command[1:]],
            cwd=Path(__file__).parent.parent,
            env=environment,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:  # up, connected to NATS, and past its first request
            try:
                with urllib.request.urlopen(base + storage.url(small), timeout=10) as response:
                    assert response.read() == b"warm"
                break
            except urllib.error.HTTPError:
                raise
            except OSError:
                assert process.poll() is None, log.read_text()
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.2)
        pid = worker_pid(process.pid)
        before = peak_rss(pid)
        digest = hashlib.sha256()
        with urllib.request.urlopen(base + storage.url(name), timeout=30) as response:
            assert response.headers["Content-Length"] == str(BIG)
            while piece := response.read(MiB):
                digest.update(piece)
        assert digest.hexdigest() == sha256
        growth = peak_rss(pid) - before
        assert growth < MEMORY_BOUND, f"{server}'s peak RSS grew by {growth / MiB:.1f} MiB"
    finally:
        process.terminate()
        process.wait(10)
        storage.delete(small)
    assert "must consume" not in log.read_text()  # Django never had to buffer an iterator
