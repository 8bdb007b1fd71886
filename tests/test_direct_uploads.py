"""Direct uploads: a browser PUTs a file to a signed link, straight into the bucket (docs/direct-uploads.md)."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import http.client
import io
import os
import random
import re
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest
from asgiref.sync import async_to_sync
from django import forms
from django.core.exceptions import SuspiciousFileOperation
from django.core.files.base import ContentFile
from django.core.files.storage import storages
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.test import AsyncClient
from django.urls import reverse

from natsstorage import NatsStorage, direct, loop
from natsstorage.buckettools import BucketTools
from natsstorage.direct import Link, Result
from natsstorage.exceptions import BucketNotFound, ObjectChanged
from natsstorage.forms import DirectUploadField
from natsstorage.testing import free_port

from .helpers import MiB, random_bytes, stream_state, with_nats
from .test_views import peak_rss, worker_pid
from .testapp.models import Document

CHUNK = 128 * 1024  # the bucket's chunks in these tests: a few MiB make many


@pytest.fixture
def files(serve) -> NatsStorage:
    """The test's bucket as a configured storage (``STORAGES['files']``), which the upload view finds."""
    return serve(location="media", chunk_size=CHUNK)


def put(client, url, data: bytes, content_type="text/plain", **headers):
    # As a browser sends it: with a Content-Length, 0 too (Django's test client leaves it out for no data).
    return client.put(url, data=data, content_type=content_type, headers=headers, CONTENT_LENGTH=str(len(data)))


def sha256_digest(data: bytes) -> str:
    return "SHA-256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).decode()


def test_a_put_within_the_limits_stores_the_file_under_the_signed_name(client, files):
    url = files.upload_url("notes/a.txt", max_size=1000, content_types=["text/plain"])
    response = put(client, url + "?name=elsewhere.txt", b"hello, bucket", **{"X-File-Name": "other.txt"})
    assert response.status_code == 201, response.content
    answer = response.json()
    assert answer["name"] == "notes/a.txt"  # from the signature only
    assert answer["size"] == 13
    assert answer["digest"] == sha256_digest(b"hello, bucket")
    with files.open("notes/a.txt") as f:
        assert f.read() == b"hello, bucket"
    assert files.info("notes/a.txt").content_type == "text/plain"
    assert not files.exists("elsewhere.txt") and not files.exists("other.txt")


def test_a_link_signs_a_free_name(client, files):
    files.save("a.txt", ContentFile(b"taken"))
    url = files.upload_url("a.txt", max_size=100)
    answer = put(client, url, b"new").json()
    assert answer["name"] != "a.txt" and answer["name"].startswith("a_")
    assert files.open("a.txt").read() == b"taken"


def test_a_put_over_max_size_is_refused_and_leaves_nothing(client, files):
    url = files.upload_url("big.bin", max_size=CHUNK * 3)
    # The first piece is within the limit and stored; the next says the file is bigger than the link allows.
    first = put(client, url, random_bytes(CHUNK * 2), "application/octet-stream", **{"Upload-Length": str(CHUNK * 3)})
    assert first.status_code == 204 and first["Upload-Offset"] == str(CHUNK * 2)
    assert stream_state(files)["messages"] == 2
    refused = put(
        client,
        url,
        random_bytes(CHUNK * 2),
        "application/octet-stream",
        **{"Upload-Offset": str(CHUNK * 2), "Upload-Length": str(CHUNK * 4)},
    )
    assert refused.status_code == 413
    assert stream_state(files)["messages"] == 0  # the chunks stored before are purged too
    whole = put(client, files.upload_url("big.bin", max_size=CHUNK), random_bytes(CHUNK + 1), "image/png")
    assert whole.status_code == 413
    assert stream_state(files)["messages"] == 0
    assert not files.exists("big.bin")


def test_a_wrong_content_type_is_refused(client, files):
    url = files.upload_url("pic.png", max_size=1000, content_types=["image/*"])
    assert put(client, url, b"<script>", "text/html").status_code == 415
    assert put(client, url, b"<script>", "image/png, text/html").status_code == 415
    assert put(client, url, b"x", "image/" + "x" * 300).status_code == 415
    assert stream_state(files)["messages"] == 0
    assert put(client, url, b"\x89PNG", "image/png").status_code == 201


def test_an_expired_or_tampered_link_is_forbidden(client, files):
    url = files.upload_url("a.txt", max_size=100, expire=-1)
    expired = put(client, url, b"x")
    assert expired.status_code == 403 and b"expired" in expired.content
    url = files.upload_url("a.txt", max_size=100)
    token = url.rstrip("/").rpartition("/")[2]
    for forged in (token[:-2] + "xx", token.replace(":", ";", 1), "x" * 5000, "e30:abc"):
        assert put(client, url.replace(token, forged), b"x").status_code in (403, 404)
    assert client.head(url.replace(token, token[:-1])).status_code == 403
    assert stream_state(files)["messages"] == 0


def test_bad_names_and_headers_are_refused_with_4xx(client, files):
    for name in ("../etc/passwd", "a/../../b", "x\x00y"):
        with pytest.raises(SuspiciousFileOperation):
            files.upload_url(name, max_size=10)
    url = files.upload_url("a.txt", max_size=100)
    assert put(client, url, b"x", **{"Upload-Offset": "abc"}).status_code == 400
    assert put(client, url, b"x", **{"Upload-Offset": "9" * 40}).status_code == 400
    assert put(client, url, b"xyz", **{"Upload-Length": "2"}).status_code == 400
    assert put(client, url, b"x", **{"Upload-Offset": "5"}).status_code == 409  # not where it stands
    assert client.post(url, data=b"x", content_type="text/plain").status_code == 400  # not a form
    assert client.get(url).status_code == 405
    assert stream_state(files)["messages"] == 0


def test_an_upload_in_pieces_resumes_from_where_it_stands(client, files):
    data = random_bytes(5 * CHUNK + 1000)
    url = files.upload_url("video.bin", max_size=10 * MiB)
    assert client.head(url)["Upload-Offset"] == "0"
    # Pieces that end mid-chunk: every byte received is stored (the tail as a short last chunk, taken back
    # by the next piece), so the upload goes on exactly where each piece ended.
    first = put(client, url, data[: 2 * CHUNK + 500], "video/mp4", **{"Upload-Length": str(len(data))})
    assert first.status_code == 204 and first["Upload-Offset"] == str(2 * CHUNK + 500)
    assert client.head(url)["Upload-Offset"] == str(2 * CHUNK + 500)
    assert stream_state(files)["messages"] == 3
    second = put(
        client,
        url,
        data[2 * CHUNK + 500 : 2 * CHUNK + 700],
        "video/mp4",
        **{"Upload-Offset": str(2 * CHUNK + 500), "Upload-Length": str(len(data))},
    )
    assert second.status_code == 204 and second["Upload-Offset"] == str(2 * CHUNK + 700)
    offset = int(client.head(url)["Upload-Offset"])
    assert offset == 2 * CHUNK + 700
    assert stream_state(files)["messages"] == 3  # the short chunk replaced by a longer one
    rest = put(
        client,
        url,
        data[offset:],
        "video/mp4",
        **{"Upload-Offset": str(offset), "Upload-Length": str(len(data))},
    )
    assert rest.status_code == 201, rest.content
    assert rest.json()["digest"] == sha256_digest(data)
    with files.open("video.bin") as f:
        assert f.read() == data
    assert files.info("video.bin").digest == sha256_digest(data)
    # Sent again (its answer lost), the last request gets the same result; a finished upload takes no more.
    again = put(client, url, b"", "video/mp4", **{"Upload-Offset": str(len(data)), "Upload-Length": str(len(data))})
    assert again.status_code == 201 and again.json()["digest"] == sha256_digest(data)
    head = client.head(url)
    assert head["Upload-Offset"] == head["Upload-Length"] == str(len(data))
    assert put(client, url, b"more", "video/mp4").status_code == 409


def test_a_name_taken_since_the_link_was_signed_refuses_the_upload_and_leaves_nothing(client, files):
    url = files.upload_url("a.txt", max_size=10 * CHUNK)
    files.save("a.txt", ContentFile(b"first"))
    response = put(client, url, random_bytes(3 * CHUNK))
    assert response.status_code == 409
    assert files.open("a.txt").read() == b"first"
    assert stream_state(files)["messages"] == 2  # the first file's chunk and metadata


def test_an_empty_file_uploads(client, files):
    response = put(client, files.upload_url("empty.txt", max_size=10), b"")
    assert response.status_code == 201
    assert files.size("empty.txt") == 0


def test_an_upload_the_bucket_has_no_room_for_is_refused_and_leaves_nothing(client, bucket_name, settings):
    settings.STORAGES = {
        **settings.STORAGES,
        "full": {"BACKEND": "natsstorage.NatsStorage", "OPTIONS": {"bucket": bucket_name, "max_bytes": MiB}},
    }
    storage = storages["full"]
    try:
        response = put(client, storage.upload_url("big.bin", max_size=10 * MiB), random_bytes(3 * MiB))
        assert response.status_code == 507
        assert stream_state(storage)["messages"] == 0
    finally:
        BucketTools(storage).destroy()


def test_a_multipart_post_to_the_link_stores_its_file_part(client, files):
    url = files.upload_url("form.txt", max_size=10 * CHUNK, content_types=["text/*"])
    data = random_bytes(3 * CHUNK + 5)
    response = client.post(url, {"note": "ignored", "file": SimpleUploadedFile("x.txt", data, "text/csv")})
    assert response.status_code == 201, response.content
    assert response.json()["name"] == "form.txt" and response.json()["digest"] == sha256_digest(data)
    assert files.open("form.txt").read() == data
    assert files.info("form.txt").content_type == "text/csv"
    again = client.post(url, {"file": SimpleUploadedFile("x.txt", b"more", "text/plain")})
    assert again.status_code == 409


def test_a_multipart_post_over_the_size_or_of_a_wrong_type_leaves_nothing(client, files):
    url = files.upload_url("form.bin", max_size=3 * CHUNK)
    # Within the room a form's boundaries get, so the parts are read: cut off at the piece that goes over.
    over = client.post(url, {"file": SimpleUploadedFile("x.bin", random_bytes(3 * CHUNK + 1000))})
    assert over.status_code == 413
    assert stream_state(files)["messages"] == 0
    far_over = client.post(url, {"file": SimpleUploadedFile("x.bin", random_bytes(4 * CHUNK))})
    assert far_over.status_code == 413
    typed = files.upload_url("form.png", max_size=3 * CHUNK, content_types=["image/png"])
    assert client.post(typed, {"file": SimpleUploadedFile("x.png", b"<svg>", "image/svg+xml")}).status_code == 415
    assert client.post(typed, {"other": SimpleUploadedFile("x.png", b"png", "image/png")}).status_code == 400
    assert client.post(typed, {"file": "not a file"}).status_code == 400
    assert client.post(typed, data=b"--x\r\nnonsense", content_type="multipart/form-data").status_code == 400
    assert stream_state(files)["messages"] == 0


def test_a_resumed_upload_appends_nothing_after_another_writers_chunk(client, files):
    """Looks inside (``direct.resume``): two requests of one upload cannot be interleaved through the test client.
    The first chunk a resumed request publishes expects the last chunk it read back to be the subject's last."""
    url = files.upload_url("a.bin", max_size=10 * CHUNK)
    assert put(client, url, random_bytes(2 * CHUNK), **{"Upload-Length": str(5 * CHUNK)}).status_code == 204
    link = Link.from_token(url.rstrip("/").rpartition("/")[2])
    key = files.key(link.name)
    upload = loop.run(direct.resume(files.bucket, key, link.nuid))
    assert upload.size == 2 * CHUNK
    subject = f"$O.{files.config.bucket}.C.{link.nuid}"
    with_nats(files, lambda nc: nc.request(subject, random_bytes(CHUNK), timeout=5))  # an earlier request's, late
    with pytest.raises(ObjectChanged):
        loop.run(upload.write(random_bytes(CHUNK)))
    loop.run(upload.abort(keep_chunks=True))
    assert client.head(url)["Upload-Offset"] == str(3 * CHUNK)  # the late chunk, and nothing of the refused request


def test_a_link_to_a_bucket_that_does_not_exist_is_a_404(client, bucket_name, settings):
    settings.STORAGES = {
        **settings.STORAGES,
        "absent": {
            "BACKEND": "natsstorage.NatsStorage",
            # file_overwrite: signing asks nothing of the bucket (else it finds it missing, as save() would)
            "OPTIONS": {"bucket": bucket_name, "create_bucket": False, "file_overwrite": True},
        },
    }
    url = storages["absent"].upload_url("a.txt", max_size=10)
    assert put(client, url, b"x").status_code == 404
    assert client.head(url).status_code == 404


def test_natsos_gc_leaves_an_interrupted_upload_for_its_min_age_then_the_upload_starts_again(client, files):
    """``natsos_gc`` counts from an upload's newest chunk: with its default ``--min-age`` (1 h, the default
    ``url_expiry``) it never collects an upload whose link still works; past it, the upload starts from 0."""
    data = random_bytes(3 * CHUNK)
    url = files.upload_url("paused.bin", max_size=len(data))
    assert put(client, url, data[: 2 * CHUNK], **{"Upload-Length": str(len(data))}).status_code == 204
    found = io.StringIO()
    call_command("natsos_gc", files.config.bucket, stdout=found)
    assert "0 orphaned uploads" in found.getvalue()
    assert client.head(url)["Upload-Offset"] == str(2 * CHUNK)
    call_command("natsos_gc", files.config.bucket, "--min-age", "0", "--purge", stdout=io.StringIO())
    assert client.head(url)["Upload-Offset"] == "0"
    rest = {"Upload-Offset": str(2 * CHUNK), "Upload-Length": str(len(data))}
    assert put(client, url, data[2 * CHUNK :], **rest).status_code == 409
    assert put(client, url, data).status_code == 201
    assert files.open("paused.bin").read() == data


# -- real servers: a 100 MiB upload streamed, and one cut in the middle then resumed ---------

BIG = 100 * MiB
MEMORY_BOUND = 40 * MiB  # growth of the server's peak RSS; holding the file would be > 100 MiB
VENV_BIN = Path(sys.executable).parent
SERVERS = {
    "gunicorn": ["gunicorn", "--workers", "1", "--timeout", "120", "django.core.wsgi:get_wsgi_application()"],
    "uvicorn": ["uvicorn", "--factory", "django.core.asgi:get_asgi_application", "--lifespan", "off"],
    "streaming uvicorn": ["uvicorn", "--factory", "natsstorage.asgi:get_asgi_application", "--lifespan", "off"],
}


def piece(index: int) -> bytes:
    """The file's ``index``-th MiB: the same bytes every time they are asked for, never all held at once."""
    return random.Random(index).randbytes(MiB)


def big_sha256() -> str:
    digest = hashlib.sha256()
    for index in range(BIG // MiB):
        digest.update(piece(index))
    return "SHA-256=" + base64.urlsafe_b64encode(digest.digest()).decode()


def body(start: int, end: int) -> Iterator[bytes]:
    """Bytes ``start`` to ``end`` of the file, a MiB at most at a time."""
    while start < end:
        index, skip = divmod(start, MiB)
        data = piece(index)[skip : skip + end - start]
        start += len(data)
        yield data


@contextlib.contextmanager
def http_server(server: str, nats_server, tmp_path) -> Iterator[tuple[str, int]]:
    """The test project under a real server, up and connected: its address and the pid that serves."""
    port = free_port()
    where = ["--bind", f"127.0.0.1:{port}"] if server == "gunicorn" else ["--port", str(port)]
    environment = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings", "NATS_URL": nats_server.url}
    log = tmp_path / "server.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [str(VENV_BIN / SERVERS[server][0]), *SERVERS[server][1:], *where],
            cwd=Path(__file__).parent.parent,
            env=environment,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        storage = NatsStorage("configs")  # the test app's Document.upload: a storage the server knows
        deadline = time.monotonic() + 30
        while True:  # up, connected to NATS, and past its first upload
            try:
                status = send("127.0.0.1", port, "PUT", storage.upload_url("warm-up.txt", max_size=10), [b"warm"], 4)
                assert status == 201, log.read_text()
                break
            except OSError:
                assert process.poll() is None, log.read_text()
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.2)
        storage.delete("warm-up.txt")
        yield f"127.0.0.1:{port}", worker_pid(process.pid)
    finally:
        process.terminate()
        process.wait(10)
    assert "Traceback" not in log.read_text()  # a cut connection is a 4xx, not an error


def send(host: str, port: int, method: str, url: str, data: Iterable[bytes], length: int, **headers: str) -> int:
    """One request with a streamed body; its status."""
    connection = http.client.HTTPConnection(host, port, timeout=60)
    try:
        connection.putrequest(method, url)
        for header, value in {"Content-Type": "application/octet-stream", **headers}.items():
            connection.putheader(header, value)
        connection.putheader("Content-Length", str(length))
        connection.endheaders()
        for part in data:
            connection.send(part)
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()


def offset(address: str, url: str) -> int:
    with urllib.request.urlopen(urllib.request.Request(f"http://{address}{url}", method="HEAD"), timeout=30) as answer:
        return int(answer.headers["Upload-Offset"])


@pytest.fixture
def configs():
    """The test app's ``Document.upload`` storage (bucket ``configs``), emptied afterwards."""
    storage = NatsStorage("configs")
    yield storage
    with contextlib.suppress(BucketNotFound):
        BucketTools(storage).destroy()


@pytest.mark.slow
@pytest.mark.parametrize("server", ["gunicorn", "uvicorn", "streaming uvicorn"])
def test_a_100_mib_put_streams_into_the_bucket_in_bounded_memory(server, configs, nats_server, tmp_path, capsys):
    with http_server(server, nats_server, tmp_path) as (address, pid):
        host, port = address.split(":")
        url = configs.upload_url("big.bin", max_size=BIG)
        before = peak_rss(pid)
        started = time.monotonic()
        assert send(host, int(port), "PUT", url, body(0, BIG), BIG) == 201
        seconds = time.monotonic() - started
        growth = peak_rss(pid) - before
    with capsys.disabled():
        rate = BIG / MiB / seconds
        print(f"\n{server}: a 100 MiB PUT in {seconds:.2f} s ({rate:.0f} MiB/s), peak RSS +{growth / MiB:.1f} MiB")
    assert growth < MEMORY_BOUND, f"{server}'s peak RSS grew by {growth / MiB:.1f} MiB"
    assert configs.info("big.bin").digest == big_sha256()


@pytest.mark.slow
@pytest.mark.parametrize("server", ["gunicorn", "streaming uvicorn"])  # Django's ASGI handler: the cut body is lost
def test_a_100_mib_upload_cut_in_the_middle_resumes_from_where_it_stopped(server, configs, nats_server, tmp_path):
    with http_server(server, nats_server, tmp_path) as (address, pid):
        host, port = address.split(":")
        url = configs.upload_url("big.bin", max_size=BIG)
        before = peak_rss(pid)
        # The client goes away after about half: the server keeps what it stored in whole chunks.
        cut = socket.create_connection((host, int(port)))
        cut.sendall(
            f"PUT {url} HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/octet-stream\r\n"
            f"Content-Length: {BIG}\r\n\r\n".encode()
        )
        for part in body(0, BIG // 2 + 12345):
            cut.sendall(part)
        cut.close()
        deadline = time.monotonic() + 60
        while True:  # the server notices the cut and lets the chunks in flight land: then the rest goes
            stored = offset(address, url)
            if stored > 0:
                status = send(
                    host,
                    int(port),
                    "PUT",
                    url,
                    body(stored, BIG),
                    BIG - stored,
                    **{"Upload-Offset": str(stored), "Upload-Length": str(BIG)},
                )
                if status == 201:
                    break
                assert status == 409, status  # its chunks were still landing: ask again
            assert time.monotonic() < deadline
            time.sleep(0.2)
        assert BIG // 4 < stored <= BIG // 2 + 12345  # resumed, not started again
        growth = peak_rss(pid) - before  # the chunks stored were read back a window at a time
        assert growth < MEMORY_BOUND, f"{server}'s peak RSS grew by {growth / MiB:.1f} MiB"
    info = configs.info("big.bin")
    assert info.size == BIG and info.digest == big_sha256()
    digest = hashlib.sha256()
    with configs.open("big.bin") as f:
        while data := f.read(MiB):
            digest.update(data)
    assert "SHA-256=" + base64.urlsafe_b64encode(digest.digest()).decode() == big_sha256()


# -- the form field: the browser uploads, the form submits only the signed result --------------


class DocumentForm(forms.ModelForm):
    upload = DirectUploadField(
        storage=Document._meta.get_field("upload").storage,
        upload_to="docs",
        max_size=10 * MiB,
        content_types=["text/*"],
    )

    class Meta:
        model = Document
        fields = ["title", "upload"]


def upload_as_the_widget_does(client, form: forms.Form, data: bytes, filename: str, content_type: str) -> dict:
    """What direct-upload.js does: ask for a link with the rendered ticket, PUT the file, get the result."""
    ticket = re.search(r'data-ticket="([^"]+)"', str(form["upload"])).group(1)
    prepare = re.search(r'data-prepare="([^"]+)"', str(form["upload"])).group(1)
    asked = client.post(prepare, data={"ticket": ticket, "filename": filename}, content_type="application/json")
    assert asked.status_code == 200, asked.content
    response = put(client, asked.json()["url"], data, content_type, **{"Upload-Length": str(len(data))})
    assert response.status_code == 201, response.content
    return response.json()


@pytest.mark.django_db
def test_the_field_and_a_model_save_end_to_end_without_the_bytes_passing_again(client, configs):
    uploaded = upload_as_the_widget_does(
        client, DocumentForm(), b"direct to the bucket", "../../My notes.txt", "text/plain"
    )
    assert uploaded["name"] == "docs/My_notes.txt"
    messages = stream_state(configs)["messages"]
    form = DocumentForm(data={"title": "notes", "upload": uploaded["result"]})
    import natsstorage.direct as d

    print(d.Result.from_token(uploaded["result"]))
    assert form.is_valid(), form.errors
    document = form.save()
    assert stream_state(configs)["messages"] == messages  # the save wrote nothing to the bucket
    document.refresh_from_db()
    assert document.upload.name == "docs/My_notes.txt"
    assert document.upload.read() == b"direct to the bucket"
    # Rendered again after another field's error, the form keeps the upload; edited later, it keeps the file.
    again = DocumentForm(data={"title": "", "upload": uploaded["result"]})
    assert not again.is_valid() and "Uploaded: docs/My_notes.txt" in str(again["upload"])
    edited = DocumentForm(data={"title": "renamed", "upload": ""}, instance=document)
    assert edited.is_valid(), edited.errors
    assert edited.save().upload.name == "docs/My_notes.txt"


@pytest.mark.django_db
def test_the_field_rejects_a_forged_or_foreign_result(client, configs, files):
    uploaded = upload_as_the_widget_does(client, DocumentForm(), b"mine", "a.txt", "text/plain")
    token = uploaded["result"]
    # Tampered with, or one the field never signed: a name of the attacker's choice, say.
    forged_name = token.replace(token.split(":")[0], token.split(":")[0][::-1])
    elsewhere = Result(configs.config.bucket, "", "secret/passwords.txt", 4, uploaded["digest"]).token()
    other_storage = put(client, files.upload_url("docs/a.txt", max_size=10), b"mine").json()["result"]
    for value in (forged_name, "x" * 10000, "e30:abc", elsewhere, other_storage):
        form = DocumentForm(data={"title": "t", "upload": value})
        assert not form.is_valid() and "upload" in form.errors, value
    # A genuine result whose object is gone, or was replaced since.
    configs.delete(uploaded["name"])
    form = DocumentForm(data={"title": "t", "upload": token})
    assert not form.is_valid() and form.errors["upload"] == [DirectUploadField.default_error_messages["missing"]]
    # A type the field does not take is refused before a byte is stored.
    ticket = re.search(r'data-ticket="([^"]+)"', str(DocumentForm()["upload"])).group(1)
    url = client.post(
        reverse("natsstorage:prepare_upload"),
        data={"ticket": ticket, "filename": "x.png"},
        content_type="application/json",
    ).json()["url"]
    assert put(client, url, b"\x89PNG", "image/png").status_code == 415
    assert (
        client.post(reverse("natsstorage:prepare_upload"), data=b"{", content_type="application/json").status_code
        == 400
    )
    forged = client.post(
        reverse("natsstorage:prepare_upload"),
        data={"ticket": ticket[:-3], "filename": "x"},
        content_type="application/json",
    )
    assert forged.status_code == 403


@pytest.mark.django_db
def test_the_field_cuts_names_to_its_max_length_and_never_makes_the_file_input_required(client, configs):
    class ShortNames(forms.Form):
        upload = DirectUploadField(storage=configs, upload_to="docs", max_size=100, max_length=20)

    uploaded = upload_as_the_widget_does(client, ShortNames(), b"short", "a-very-long-file-name.txt", "text/plain")
    assert len(uploaded["name"]) <= 20 and uploaded["name"].startswith("docs/") and uploaded["name"].endswith(".txt")
    assert "required" not in str(ShortNames()["upload"])
    form = ShortNames(data={"upload": uploaded["result"]})
    assert form.is_valid() and form.cleaned_data["upload"] == uploaded["name"]
    assert not ShortNames(data={"upload": ""}).is_valid()  # required all the same


@pytest.mark.django_db
def test_the_widget_s_link_request_refuses_file_names_that_cannot_be_stored(client, configs):
    ticket = re.search(r'data-ticket="([^"]+)"', str(DocumentForm()["upload"])).group(1)
    prepare = reverse("natsstorage:prepare_upload")
    for filename in ("..", ".", "", "a\x00b", "x" * 300, 42, None):
        asked = client.post(prepare, data={"ticket": ticket, "filename": filename}, content_type="application/json")
        assert asked.status_code == 400, filename
    assert client.post(prepare, data=b"[]", content_type="application/json").status_code == 400
    assert client.post(prepare, data=b"x" * 20000, content_type="application/json").status_code == 413
    assert client.get(prepare).status_code == 405


def test_under_asgi_the_same_view_takes_the_body_from_django_s_request_stream(files):
    data = random_bytes(3 * CHUNK + 7)
    url = files.upload_url("asgi.bin", max_size=len(data))

    async def go():
        client = AsyncClient()
        response = await client.put(url, data=data, content_type="application/octet-stream")
        return response.status_code, (await client.head(url))["Upload-Offset"]

    assert async_to_sync(go)() == (201, str(len(data)))
    assert files.open("asgi.bin").read() == data


def test_the_widget_s_link_request_for_a_bucket_that_does_not_exist_is_a_503(client, bucket_name, settings):
    settings.STORAGES = {
        **settings.STORAGES,
        "absent": {"BACKEND": "natsstorage.NatsStorage", "OPTIONS": {"bucket": bucket_name, "create_bucket": False}},
    }

    class Absent(forms.Form):
        upload = DirectUploadField(storage=storages["absent"], max_size=10)

    ticket = re.search(r'data-ticket="([^"]+)"', str(Absent()["upload"])).group(1)
    asked = client.post(
        reverse("natsstorage:prepare_upload"),
        data={"ticket": ticket, "filename": "a.txt"},
        content_type="application/json",
    )
    assert asked.status_code == 503


def test_with_nats_down_an_upload_and_its_status_are_a_503_and_it_resumes_once_back(client, own_server, settings):
    server = own_server()
    settings.NATSSTORAGE = {"servers": [server.url], "connect_timeout": 1.0, "connect_backoff": 0.5, "timeout": 5.0}
    storage = NatsStorage("configs")
    data = random_bytes(3 * 512 * 1024)
    url = storage.upload_url("docs/outage.bin", max_size=len(data))
    assert put(client, url, data[: 2 * 512 * 1024], **{"Upload-Length": str(len(data))}).status_code == 204
    server.stop()
    assert client.head(url).status_code == 503
    assert put(client, url, data).status_code == 503
    server.start()
    deadline = time.monotonic() + 30
    while (head := client.head(url)).status_code == 503:  # until the connection is made again
        assert time.monotonic() < deadline
        time.sleep(0.2)
    stored = int(head["Upload-Offset"])
    assert stored == 2 * 512 * 1024  # kept across the outage (a server's store survives its restart)
    rest = {"Upload-Offset": str(stored), "Upload-Length": str(len(data))}
    assert put(client, url, data[stored:], **rest).status_code == 201
    assert storage.open("docs/outage.bin").read() == data
