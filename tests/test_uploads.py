"""NatsUploadHandler: uploads stream into the bucket as the request arrives, and a save only names them."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import http.client
import io
import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from asgiref.testing import ApplicationCommunicator
from django.core.checks import run_checks
from django.core.exceptions import SynchronousOnlyOperation
from django.core.files.base import ContentFile
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.test import AsyncClient
from PIL import Image

from natsstorage import NatsStorage
from natsstorage.asgi import StreamingBody, get_asgi_application
from natsstorage.buckettools import BucketTools
from natsstorage.exceptions import NatsUnavailable
from natsstorage.testing import free_port

from .helpers import MiB, random_bytes, stream_info, stream_state
from .test_views import peak_rss

CHUNK = 16 * 1024  # small chunks: a few hundred KiB make many
HANDLERS = [
    "natsstorage.uploads.NatsUploadHandler",
    "django.core.files.uploadhandler.MemoryFileUploadHandler",
    "django.core.files.uploadhandler.TemporaryFileUploadHandler",
]
LIMIT = 100 * 1024  # FILE_UPLOAD_MAX_MEMORY_SIZE in these tests: Django keeps smaller files in memory

pytestmark = pytest.mark.django_db


@pytest.fixture
def temp_dir(tmp_path, settings):
    """An empty FILE_UPLOAD_TEMP_DIR, where Django's handlers would write files larger than LIMIT."""
    path = tmp_path / "uploads-temp"
    path.mkdir()
    settings.FILE_UPLOAD_TEMP_DIR = str(path)
    settings.FILE_UPLOAD_MAX_MEMORY_SIZE = LIMIT
    return path


@pytest.fixture
def media(settings, make_storage, bucket_name, temp_dir):
    """Django's default storage on this test's bucket, and the handler first in FILE_UPLOAD_HANDLERS."""
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {"BACKEND": "natsstorage.NatsStorage", "OPTIONS": {"bucket": bucket_name, "chunk_size": CHUNK}},
    }
    settings.FILE_UPLOAD_HANDLERS = HANDLERS
    return make_storage(chunk_size=CHUNK)


def chunks_of(size: int) -> int:
    return -(-size // CHUNK)


def png(width: int, height: int) -> bytes:
    """A PNG of noise (so that it spans many chunks)."""
    image = Image.frombytes("RGB", (width, height), random_bytes(width * height * 3))
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


@pytest.mark.parametrize("size", [LIMIT // 10, LIMIT * 3], ids=["under-the-memory-limit", "over-it"])
def test_a_form_upload_is_staged_as_it_arrives_and_the_save_only_names_it(client, media, temp_dir, size):
    data = random_bytes(size)
    response = client.post("/attach/", {"title": "report", "file": SimpleUploadedFile("report.bin", data)})
    assert response.status_code == 200, response.content
    name = response.json()["file"]
    assert name == "attachments/report.bin"
    assert media.open(name).read() == data
    info = media.info(name)
    assert info.sha256 == hashlib.sha256(data).digest()
    assert info.chunks == chunks_of(size)
    # Every message the stream ever took: the chunks once, the metadata once. Nothing purged, nothing sent twice.
    state = stream_state(media)
    assert (state["messages"], state["last_seq"]) == (info.chunks + 1, info.chunks + 1)
    assert response.json()["temporary"] == []  # nothing under the temp dir while the view ran
    assert list(temp_dir.iterdir()) == []


def test_several_files_of_one_request_are_each_staged_and_committed(client, media):
    sizes = {"a": 1, "b": CHUNK, "c": 5 * CHUNK + 7}
    data = {field: random_bytes(size) for field, size in sizes.items()}
    files = {field: SimpleUploadedFile(f"{field}.bin", content) for field, content in data.items()}
    response = client.post("/keep/", files)
    assert response.status_code == 200, response.content
    names = response.json()
    for field, content in data.items():
        assert media.open(names[field][0]).read() == content
    chunks = sum(chunks_of(size) for size in sizes.values())
    assert stream_state(media)["last_seq"] == chunks + len(sizes)


def test_a_file_staged_once_and_saved_twice_is_committed_once_then_copied(client, media):
    data = random_bytes(3 * CHUNK + 1)
    response = client.post("/keep/?copies=2", {"file": SimpleUploadedFile("twice.bin", data)})
    first, second = response.json()["file"]
    assert first == "kept/twice.bin" and second.startswith("kept/twice_")
    assert media.info(first).nuid != media.info(second).nuid  # two names never share chunks
    assert stream_state(media)["last_seq"] == 2 * (chunks_of(len(data)) + 1)  # staged and committed, then copied
    media.delete(first)  # purges the first one's chunks: the second keeps its own
    assert media.open(second).read() == data


@pytest.mark.parametrize("size", [4 * CHUNK, 2 * LIMIT], ids=["streamed", "moved-from-a-copy-on-disk"])
def test_a_save_into_another_storage_copies_the_staged_file_back_out_of_the_bucket(
    client, media, settings, tmp_path, temp_dir, size
):
    settings.STORAGES = {
        **settings.STORAGES,
        "other": {"BACKEND": "django.core.files.storage.FileSystemStorage", "OPTIONS": {"location": tmp_path / "fs"}},
    }
    data = random_bytes(size)
    response = client.post("/keep/", {"file": SimpleUploadedFile("both.bin", data)})
    in_bucket, on_disk = response.json()["file"]
    assert media.open(in_bucket).read() == data
    assert (tmp_path / "fs" / on_disk).read_bytes() == data
    assert list(temp_dir.iterdir()) == []


def test_a_save_into_another_bucket_copies_the_staged_file_chunk_by_chunk(client, media, settings, bucket_name):
    other = NatsStorage(f"{bucket_name}o", chunk_size=CHUNK)
    settings.STORAGES = {
        **settings.STORAGES,
        "other": {"BACKEND": "natsstorage.NatsStorage", "OPTIONS": {"bucket": f"{bucket_name}o"}},
    }
    data = random_bytes(3 * MiB)  # more than a piece: streamed, as any file bigger than one
    try:
        response = client.post("/keep/", {"file": SimpleUploadedFile("both.bin", data)})
        in_bucket, elsewhere = response.json()["file"]
        assert media.open(in_bucket).read() == data
        assert other.open(elsewhere).read() == data
        assert other.info(elsewhere).sha256 == media.info(in_bucket).sha256
        assert stream_state(media)["last_seq"] == chunks_of(len(data)) + 1  # the copy reads, never writes, here
    finally:
        BucketTools(other).destroy()


def test_an_invalid_form_leaves_no_chunk_behind_once_the_request_ends(client, media, temp_dir):
    data = random_bytes(LIMIT * 2)
    response = client.post("/attach/", {"file": SimpleUploadedFile("orphan.bin", data)})  # no title
    assert response.status_code == 400
    assert "title" in response.json()["errors"]
    state = stream_state(media)
    assert state["last_seq"] >= chunks_of(len(data))  # it was staged while the body arrived
    assert state["messages"] == 0  # and purged when the request ended
    assert response.json()["temporary"] == []


def test_an_image_field_reads_the_staged_image_back_for_its_checks_and_dimensions(client, media):
    image = png(120, 80)
    assert len(image) > CHUNK  # read back over several chunks
    response = client.post("/attach/", {"title": "photo", "picture": SimpleUploadedFile("photo.png", image)})
    assert response.status_code == 200, response.content
    assert response.json()["width"] == 120
    name = response.json()["picture"]
    assert media.open(name).read() == image
    assert media.info(name).content_type == "image/png"
    assert stream_state(media)["last_seq"] == chunks_of(len(image)) + 1


def test_a_file_that_is_not_an_image_is_refused_by_the_image_field_and_purged(client, media):
    response = client.post("/attach/", {"title": "photo", "picture": SimpleUploadedFile("fake.png", b"not a png")})
    assert response.status_code == 400
    assert "picture" in response.json()["errors"]
    assert stream_state(media)["messages"] == 0


def test_content_types_are_stored_in_their_one_spelling(client, media):
    html_as_video = SimpleUploadedFile("clip.mp4", b"<script>alert(1)</script>", content_type="text/html,video/mp4")
    text = SimpleUploadedFile("notes.txt", "naïve\n".encode(), content_type="TEXT/Plain")
    response = client.post("/keep/", {"clip": html_as_video, "notes": text})
    names = response.json()
    assert media.info(names["clip"][0]).content_type == "application/octet-stream"
    assert media.info(names["notes"][0]).content_type == "text/plain; charset=utf-8"


@pytest.mark.django_db(transaction=True)  # the view runs in another thread
def test_under_asgi_an_upload_is_staged_and_committed_too(media, temp_dir):
    data = random_bytes(LIMIT * 2)

    async def post():
        return await AsyncClient().post("/attach/", {"title": "asgi", "file": SimpleUploadedFile("a.bin", data)})

    response = asyncio.run(post())
    assert response.status_code == 200, response.content
    name = response.json()["file"]
    assert media.open(name).read() == data
    assert stream_state(media)["last_seq"] == chunks_of(len(data)) + 1
    assert response.json()["temporary"] == []


def asgi_form(size: int) -> tuple[list[tuple[bytes, bytes]], bytes, bytes]:
    """A multipart form with a file of ``size`` bytes, as a browser posts it: headers, the body and its file."""
    boundary = "natsstorage-asgi"
    data = random_bytes(size)
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="csrfmiddlewaretoken"\r\n\r\n{CSRF}\r\n'
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.bin"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        + data
        + f"\r\n--{boundary}--\r\n".encode()
    )
    headers = [
        (b"content-type", f"multipart/form-data; boundary={boundary}".encode()),
        (b"content-length", str(len(body)).encode()),
        (b"cookie", f"csrftoken={CSRF}".encode()),
    ]
    return headers, body, data


def asgi_scope(path: str, headers: list[tuple[bytes, bytes]]) -> dict[str, object]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 80),
    }


async def eventually(done, within: float = 30.0) -> None:
    """Wait for ``done()`` (called in a thread): a bound on how long, not a timing assertion."""
    deadline = time.monotonic() + within
    while not await asyncio.to_thread(done):
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)


async def answered(server: ApplicationCommunicator) -> tuple[dict, dict]:
    """The response's start and its body, once the application has ended."""
    start = await server.receive_output(30)
    answer = await server.receive_output(30)
    await server.wait(30)
    return start, answer


def test_under_natsstorage_asgi_a_sync_view_reads_the_upload_while_it_arrives(media, temp_dir):
    headers, body, data = asgi_form(3 * MiB)  # the handler hands the NATS loop a MiB at a time
    half = len(body) // 2

    async def post():
        server = ApplicationCommunicator(get_asgi_application(), asgi_scope("/keep/", headers))
        await server.send_input({"type": "http.request", "body": body[:half], "more_body": True})
        await eventually(lambda: staged(media) > 0)  # chunks in the bucket before the body's end
        await server.send_input({"type": "http.request", "body": body[half:], "more_body": False})
        return await answered(server)

    start, answer = asyncio.run(post())
    assert start["status"] == 200, answer
    assert media.open(json.loads(answer["body"])["file"][0]).read() == data
    assert list(temp_dir.iterdir()) == []


def test_under_natsstorage_asgi_an_upload_the_client_cuts_off_is_purged(media, temp_dir):
    headers, body, _ = asgi_form(3 * MiB)

    async def cut():
        server = ApplicationCommunicator(get_asgi_application(), asgi_scope("/keep/", headers))
        await server.send_input({"type": "http.request", "body": body[: len(body) // 2], "more_body": True})
        await eventually(lambda: staged(media) > 0)
        await server.send_input({"type": "http.disconnect"})
        await eventually(lambda: staged(media) == 0)  # the view was told, and its request closed
        await server.wait(30)

    asyncio.run(cut())
    assert stream_state(media)["last_seq"] > 0


def test_under_natsstorage_asgi_an_async_view_gets_djangos_spooled_body(media, temp_dir):
    headers, body, data = asgi_form(LIMIT * 4)  # over FILE_UPLOAD_MAX_MEMORY_SIZE: a sync view would stream it

    async def post():
        server = ApplicationCommunicator(get_asgi_application(), asgi_scope("/received/", headers))
        await server.send_input({"type": "http.request", "body": body[:1000], "more_body": True})
        await server.send_input({"type": "http.request", "body": body[1000:], "more_body": False})
        return await answered(server)

    start, answer = asyncio.run(post())
    assert start["status"] == 200, answer
    assert json.loads(answer["body"]) == {"title": None, "files": {"file": len(data)}}


def test_a_streaming_body_read_in_the_event_loops_thread_says_how_to_read_it():
    async def read_in_the_loop():
        async def receive():
            return {"type": "http.request", "body": b"never read", "more_body": False}

        return StreamingBody(receive, timeout=1).read()

    with pytest.raises(SynchronousOnlyOperation, match="sync_to_async"):
        asyncio.run(read_in_the_loop())


def test_without_the_handler_django_writes_a_large_upload_under_the_temp_dir(client, media, settings):
    """What the tests above check against: the view sees Django's temporary file while it runs."""
    settings.FILE_UPLOAD_HANDLERS = HANDLERS[1:]
    response = client.post("/attach/", {"title": "t", "file": SimpleUploadedFile("big.bin", random_bytes(LIMIT * 2))})
    assert response.status_code == 200
    assert len(response.json()["temporary"]) == 1


def test_the_handler_steps_aside_when_the_default_storage_is_not_a_nats_storage(client, settings, temp_dir, tmp_path):
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {"BACKEND": "django.core.files.storage.FileSystemStorage", "OPTIONS": {"location": tmp_path}},
    }
    settings.FILE_UPLOAD_HANDLERS = HANDLERS
    data = random_bytes(LIMIT * 2)
    response = client.post("/attach/", {"title": "t", "file": SimpleUploadedFile("disk.bin", data)})
    assert response.status_code == 200
    assert (tmp_path / response.json()["file"]).read_bytes() == data
    assert len(response.json()["temporary"]) == 1  # Django's own handlers took it


def test_checks_name_a_staging_alias_that_is_missing_or_not_a_nats_storage_and_a_handler_not_first(settings):
    settings.FILE_UPLOAD_HANDLERS = HANDLERS
    settings.NATSSTORAGE_UPLOAD_STORAGE = "uploads"
    assert [message.id for message in run_checks() if message.id.startswith("natsstorage.")] == ["natsstorage.E004"]
    settings.STORAGES = {**settings.STORAGES, "uploads": {"BACKEND": "django.core.files.storage.InMemoryStorage"}}
    settings.FILE_UPLOAD_HANDLERS = [*HANDLERS[1:], HANDLERS[0]]
    found = {message.id: message.msg for message in run_checks() if message.id.startswith("natsstorage.")}
    assert set(found) == {"natsstorage.W103", "natsstorage.W104"}
    assert "STORAGES['uploads']" in found["natsstorage.W103"]


def test_checks_are_quiet_for_a_handler_first_that_stages_in_a_nats_storage(media):
    assert not [message for message in run_checks() if message.id.startswith("natsstorage.")]


# -- uploads cut off: by the client (the server purges at once), with the server (natsos_gc collects) -------------

CSRF = "c" * 32  # a CSRF cookie and the same token in the form: the check reads the body, as a browser's would


SERVERS = {  # the test project under a real server; uvicorn with natsstorage's ASGI application, which streams
    "gunicorn": ["gunicorn", "--workers", "1", "django.core.wsgi:get_wsgi_application()"],
    "uvicorn": ["uvicorn", "--factory", "natsstorage.asgi:get_asgi_application", "--lifespan", "off"],
}


@contextlib.contextmanager
def serving(nats_server, bucket_name, tmp_path, server="gunicorn", temp_dir=None):
    """A server process serving tests.urls with uploads staged in the test's bucket: (process, port, log)."""
    port = free_port()
    environment = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.staging_settings",
        "STAGING_BUCKET": bucket_name,
        "NATS_URL": nats_server.url,
    }
    if temp_dir is not None:  # where Django's upload handlers and ASGI handler, and Python's tempfile, would write
        environment.update(TMPDIR=str(temp_dir), STAGING_TEMP_DIR=str(temp_dir))
    where = ["--bind", f"127.0.0.1:{port}"] if server == "gunicorn" else ["--port", str(port)]
    log = tmp_path / "server.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [str(Path(sys.executable).parent / SERVERS[server][0]), *SERVERS[server][1:], *where],
            cwd=Path(__file__).parent.parent,
            env=environment,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        until(lambda: _listening(port), lambda: f"{server} never listened: {log.read_text()}", process)
        yield process, port, log
    finally:
        process.kill()
        process.wait(10)


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


def natsstorage_connections(server) -> int:
    connz = server.monitor("connz?limit=1024")
    return sum(1 for conn in connz.get("connections", []) if conn.get("name") == "natsstorage")


def until(done, why, process=None, within: float = 30.0) -> None:
    """Wait for ``done()``: a bound on how long, not a timing assertion."""
    deadline = time.monotonic() + within
    while not done():
        assert process is None or process.poll() is None, why()
        assert time.monotonic() < deadline, why()
        time.sleep(0.1)


def staged(storage: NatsStorage) -> int:
    """Messages in the bucket's stream; 0 before the server's first upload makes the bucket."""
    return stream_info(storage).get("state", {}).get("messages", 0)


def half_an_upload(port: int, size: int) -> socket.socket:
    """A multipart POST that announces ``size`` bytes of file and sends half of them."""
    boundary = "natsstorage-cut"
    token = f'--{boundary}\r\nContent-Disposition: form-data; name="csrfmiddlewaretoken"\r\n\r\n{CSRF}\r\n'
    head = (
        token + f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="cut.bin"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    length = len(head) + size + len(f"\r\n--{boundary}--\r\n")
    connection = socket.create_connection(("127.0.0.1", port), timeout=10)
    connection.sendall(
        f"POST /keep/ HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: csrftoken={CSRF}\r\n"
        f"Content-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: {length}\r\n\r\n".encode()
        + head
        + random_bytes(size // 2)
    )
    return connection


@pytest.mark.slow
@pytest.mark.parametrize("server", ["gunicorn", "uvicorn"])
def test_an_upload_the_client_cuts_off_is_purged_by_the_server_at_once(
    server, nats_server, storage, bucket_name, tmp_path
):
    with serving(nats_server, bucket_name, tmp_path, server) as (process, port, log):
        connection = half_an_upload(port, 8 * MiB)
        until(lambda: staged(storage) > 0, log.read_text, process)  # staged as it arrives
        connection.close()
        until(lambda: stream_state(storage)["messages"] == 0, log.read_text, process)
    assert stream_state(storage)["last_seq"] > 0


def multipart(port: int, name: str, block: bytes, count: int) -> http.client.HTTPResponse:
    """A form posted to /keep/ as a browser posts it, its file ``block`` ``count`` times, streamed."""
    boundary = "natsstorage-big"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="csrfmiddlewaretoken"\r\n\r\n{CSRF}\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    headers = {
        "Content-Type": f"multipart/form-data; boundary={boundary}",
        "Content-Length": str(len(head) + len(block) * count + len(tail)),
        "Cookie": f"csrftoken={CSRF}",
    }
    connection.request(
        "POST", "/keep/", body=itertools.chain([head], itertools.repeat(block, count), [tail]), headers=headers
    )
    response = connection.getresponse()
    response.read()
    connection.close()
    return response


class FilesOpenUnder(threading.Thread):
    """Every file a process holds open under a directory, sampled until stopped: a temporary file that was
    never named (``tempfile.TemporaryFile``, a spooled body rolled over to disk) is seen here too."""

    def __init__(self, pid: int, directory: Path) -> None:
        super().__init__(daemon=True)
        self.pid, self.directory, self.seen = pid, str(directory), set[str]()
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(0.01):
            for fd in Path(f"/proc/{self.pid}/fd").iterdir():
                with contextlib.suppress(OSError):
                    if (target := os.readlink(fd)).startswith(self.directory):
                        self.seen.add(target)


@pytest.mark.slow
def test_under_uvicorn_a_200_mib_upload_streams_into_the_bucket_without_a_temporary_file(
    nats_server, storage, bucket_name, tmp_path
):
    temp_dir = tmp_path / "temp"
    temp_dir.mkdir()
    block, count = random_bytes(MiB), 200
    with serving(nats_server, bucket_name, tmp_path, "uvicorn", temp_dir) as (process, port, log):
        assert multipart(port, "warm-up.bin", b"w", 1).status == 200, log.read_text()  # imports, NATS connection
        before = peak_rss(process.pid)
        watch = FilesOpenUnder(process.pid, temp_dir)
        watch.start()
        try:
            response = multipart(port, "big.bin", block, count)
        finally:
            watch.stop.set()
            watch.join()
        growth = peak_rss(process.pid) - before
        assert response.status == 200, log.read_text()
        assert "Traceback" not in log.read_text()
    assert watch.seen == set() and list(temp_dir.iterdir()) == []
    assert growth < 64 * MiB, f"uvicorn's peak RSS grew by {growth / MiB:.1f} MiB for a {count} MiB upload"
    digest = hashlib.sha256()
    for _ in range(count):
        digest.update(block)
    info = storage.info("kept/big.bin")
    assert info.size == count * MiB
    assert info.digest == "SHA-256=" + base64.urlsafe_b64encode(digest.digest()).decode()


@pytest.mark.slow
def test_an_upload_whose_server_dies_leaves_chunks_that_natsos_gc_collects(nats_server, storage, bucket_name, tmp_path):
    with serving(nats_server, bucket_name, tmp_path) as (process, port, log):
        connection = half_an_upload(port, 8 * MiB)
        until(lambda: stream_state(storage)["messages"] > 0, log.read_text, process)
        connected = natsstorage_connections(nats_server)  # this process's and the server process's
        worker = int(Path(f"/proc/{process.pid}/task/{process.pid}/children").read_text().split()[0])
        os.kill(worker, signal.SIGKILL)  # the process handling the upload dies: nobody purges
        os.kill(process.pid, signal.SIGKILL)
        process.wait(10)
        connection.close()
    # What the dead process had sent is in once the server closed its connection (its socket may still hold
    # a chunk when it dies).
    until(lambda: natsstorage_connections(nats_server) < connected, lambda: "its connection outlived it")
    left = stream_state(storage)["messages"]
    assert left > 0
    out = io.StringIO()
    call_command("natsos_gc", bucket_name, "--min-age", "0", "--purge", stdout=out)
    assert f"{left} messages removed" in out.getvalue()
    assert stream_state(storage)["messages"] == 0


def test_an_image_over_the_memory_limit_is_checked_from_a_copy_on_disk_removed_with_the_request(
    client, media, temp_dir
):
    image = png(400, 300)
    assert len(image) > LIMIT  # a forms.ImageField would read it whole into memory without a path
    response = client.post("/attach/", {"title": "big", "picture": SimpleUploadedFile("big.png", image)})
    assert response.status_code == 200, response.content
    assert response.json()["width"] == 400
    assert len(response.json()["temporary"]) == 1  # the copy Pillow read, while the view ran
    assert list(temp_dir.iterdir()) == []  # and gone with the request
    assert media.open(response.json()["picture"]).read() == image
    assert stream_state(media)["last_seq"] == chunks_of(len(image)) + 1


def test_a_staged_file_whose_name_is_taken_is_committed_under_djangos_alternative_name(client, media):
    media.save("kept/taken.bin", ContentFile(b"old"))
    before = stream_state(media)["last_seq"]
    data = random_bytes(2 * CHUNK)
    (name,) = client.post("/keep/", {"file": SimpleUploadedFile("taken.bin", data)}).json()["file"]
    assert name.startswith("kept/taken_") and name.endswith(".bin")
    assert media.open(name).read() == data
    assert media.open("kept/taken.bin").read() == b"old"
    assert stream_state(media)["last_seq"] - before == chunks_of(len(data)) + 1


def test_with_nats_away_before_a_file_starts_the_handler_steps_aside_for_it(client, settings, own_server, caplog):
    server = own_server()
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {"BACKEND": "natsstorage.NatsStorage", "OPTIONS": {"bucket": "away", "servers": [server.url]}},
    }
    settings.FILE_UPLOAD_HANDLERS = HANDLERS
    server.stop()
    with pytest.raises(NatsUnavailable):  # the view's save, of a file Django's handlers took
        client.post("/keep/", {"file": SimpleUploadedFile("a.bin", b"a")})
    assert "uploads are not staged in bucket 'away'" in caplog.text


@pytest.mark.slow
def test_the_upload_benchmark_prints_its_table():
    bench = Path(__file__).resolve().parent.parent / "bench" / "upload.py"
    result = subprocess.run(
        [sys.executable, str(bench), "--mib", "4", "--runs", "1"], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    rows = [line for line in result.stdout.splitlines() if line.startswith("| ") and "→" in line]
    assert len(rows) == 5
    assert rows[0].startswith("| NatsUploadHandler → NatsStorage (gunicorn) |")
    assert "| 0.0 MiB | 0.0 MiB |" in rows[0]  # nothing written to disk, nothing under the temp dir
