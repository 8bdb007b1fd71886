"""The view's disk copies of large objects (``serve_files``): made once, checked against the digest before they
are seen, sent with ``FileResponse`` (so a WSGI server uses ``sendfile()``) while the metadata names them."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
from pathlib import Path
from typing import Any

import nats
import pytest
from asgiref.sync import async_to_sync
from django.core import signals
from django.core.files.base import ContentFile
from django.core.handlers.wsgi import WSGIHandler
from django.db import close_old_connections
from django.http import FileResponse
from django.test import AsyncClient, RequestFactory

from natsstorage import NatsStorage, servefiles
from natsstorage.exceptions import CorruptObject

from .helpers import MiB, body, consumed, corrupt_last_byte, eventually, random_bytes


@pytest.fixture
def copies(tmp_path) -> Path:
    return tmp_path / "copies"


@pytest.fixture
def serve(serve, copies):
    """``serve(**options)``: as conftest's, public, its disk copies in this test's own directory."""
    return lambda **options: serve(**{"public": True, "serve_files_dir": str(copies), **options})


def copied(files: NatsStorage, data: bytes) -> Path:
    """The disk copy of ``data``, once made (a background thread makes it: waited for within the bound)."""
    path = Path(files.config.serve_files_dir or "") / hashlib.sha256(data).hexdigest()
    eventually(path.exists)
    return path


def settled(files: NatsStorage) -> None:
    """Wait until this process makes no copy."""
    disk = servefiles.of(files.config.serve_files_dir, files.config.serve_files)
    assert disk is not None
    eventually(lambda: not disk.filling)


def sent_as_gunicorn_does(url: str, ranged: str) -> tuple[str, bytes]:
    """The response to ``url`` from Django's WSGI handler under a server with ``wsgi.file_wrapper``, sent the way
    gunicorn sends such a file: ``os.sendfile()`` of Content-Length bytes from the descriptor's position."""
    said: dict[str, Any] = {}
    environ = RequestFactory().get(url, headers={"Range": ranged}).environ
    environ["wsgi.file_wrapper"] = lambda filelike, block_size: filelike
    # As Django's test client does: the database's connections are the test's, not the request's to close.
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    try:
        filelike = WSGIHandler()(environ, lambda status, headers: said.update(status=status, headers=dict(headers)))
    finally:
        signals.request_started.connect(close_old_connections)
    try:
        length = int(said["headers"]["Content-Length"])
        reading, writing = os.pipe()
        try:
            offset = os.lseek(filelike.fileno(), 0, os.SEEK_CUR)
            assert os.sendfile(writing, filelike.fileno(), offset, length) == length
            return said["status"], os.read(reading, length)
        finally:
            os.close(reading)
            os.close(writing)
    finally:
        filelike.close()
        signals.request_finished.connect(close_old_connections)


def test_a_large_object_is_copied_once_checked_and_then_sent_from_disk(serve, client, copies):
    files = serve()
    data = random_bytes(3 * MiB)
    name = files.save("video.bin", ContentFile(data))
    url = files.url(name)
    first = client.get(url)
    assert not isinstance(first, FileResponse)  # from the bucket, while the copy is made
    assert body(first) == data
    path = copied(files, data)
    assert path.read_bytes() == data
    assert os.stat(copies).st_mode & 0o777 == 0o700
    again = client.get(url)
    assert isinstance(again, FileResponse)  # what a WSGI server hands to sendfile() (wsgi.file_wrapper)
    assert (again.status_code, again["Content-Length"], body(again)) == (200, str(len(data)), data)
    assert again["ETag"] == first["ETag"] and again["Content-Type"] == first["Content-Type"]
    assert sorted(os.listdir(copies)) == [path.name]  # nothing else: no file of a fill left behind


def test_ranges_and_conditional_requests_of_a_disk_copy(serve, client):
    files = serve()
    data = random_bytes(2 * MiB + 5)
    name = files.save("r.bin", ContentFile(data))
    url = files.url(name)
    etag = consumed(client.get(url))["ETag"]
    copied(files, data)
    ranged = client.get(url, headers={"Range": "bytes=1048576-1048675"})
    assert isinstance(ranged, FileResponse)
    assert (ranged.status_code, ranged["Content-Length"]) == (206, "100")
    assert ranged["Content-Range"] == f"bytes 1048576-1048675/{len(data)}"
    assert body(ranged) == data[1048576:1048676]
    assert sent_as_gunicorn_does(url, "bytes=1048576-1048675") == ("206 Partial Content", data[1048576:1048676])
    assert body(client.get(url, headers={"Range": "bytes=-7"})) == data[-7:]
    assert client.get(url, headers={"If-None-Match": etag}).status_code == 304
    head = client.head(url)
    assert (head.status_code, head.content, head["Content-Length"]) == (200, b"", str(len(data)))


def test_a_disk_copy_is_streamed_under_asgi(serve):
    files = serve()
    data = random_bytes(2 * MiB)
    name = files.save("a.bin", ContentFile(data))

    async def get(headers: dict[str, str] | None = None) -> tuple[int, bytes]:
        response = await AsyncClient().get(files.url(name), headers=headers or {})
        assert response.streaming and not isinstance(response, FileResponse)  # an async iterator: no thread held
        return response.status_code, b"".join([piece async for piece in response.streaming_content])

    assert async_to_sync(get)() == (200, data)
    copied(files, data)
    assert async_to_sync(get)() == (200, data)
    assert async_to_sync(get)({"Range": "bytes=10-19"}) == (206, data[10:20])


def test_a_disk_copy_serves_only_while_the_metadata_names_it(serve, client):
    files = serve()
    old, new = random_bytes(2 * MiB), random_bytes(2 * MiB)
    name = files.save("v.bin", ContentFile(old))
    url = files.url(name)
    assert body(client.get(url)) == old
    copied(files, old)
    assert body(client.get(url)) == old

    async def replace(store: Any) -> None:
        await store.put(name, new)

    async def go() -> None:
        nc = await nats.connect(files.config.servers[0])
        try:
            await replace(await nc.jetstream().object_store(files.config.bucket))
        finally:
            await nc.close()

    asyncio.run(go())  # another client: seen once the watch delivers it
    eventually(lambda: body(client.get(url)) == new)
    copied(files, new)
    assert isinstance(consumed(client.get(url)), FileResponse)
    assert body(client.get(url)) == new
    files.delete(name)
    assert client.get(url).status_code == 404  # the copy is there, the object is not


def test_a_corrupt_object_is_never_copied(serve, client, copies, caplog):
    files = serve()
    name = files.save("bad.bin", ContentFile(random_bytes(2 * MiB)))
    corrupt_last_byte(files, name)
    with caplog.at_level(logging.WARNING, "natsstorage"):
        response = client.get(files.url(name))
        with pytest.raises(CorruptObject):
            body(response)
        settled(files)
    assert os.listdir(copies) == []  # neither a copy nor the file it was written to
    assert "no disk copy of 'bad.bin'" in caplog.text
    assert not isinstance(client.get(files.url(name)), FileResponse)


def test_the_copies_never_hold_more_than_serve_files(serve, client, copies):
    files = serve(serve_files=12 * MiB)  # objects up to an eighth of it: 1.5 MiB
    blobs = [random_bytes(3 * MiB // 2) for _ in range(10)]
    names = [files.save(f"{n}.bin", ContentFile(blob)) for n, blob in enumerate(blobs)]
    for name, blob in zip(names, blobs, strict=True):
        assert body(client.get(files.url(name))) == blob
        settled(files)
        assert sum(path.stat().st_size for path in copies.iterdir()) <= 12 * MiB
    assert hashlib.sha256(blobs[-1]).hexdigest() in os.listdir(copies)
    assert hashlib.sha256(blobs[0]).hexdigest() not in os.listdir(copies)  # the least recently used went first
    too_big = files.save("big.bin", ContentFile(random_bytes(2 * MiB)))
    assert consumed(client.get(files.url(too_big))).status_code == 200
    settled(files)
    assert len(os.listdir(copies)) == 8


def test_a_head_or_a_304_makes_no_copy_and_a_get_does(serve, client, copies):
    files = serve()
    data = random_bytes(2 * MiB)
    name = files.save("a.bin", ContentFile(data))
    url = files.url(name)
    for _ in range(2):  # a crawler's HEADs read no byte: they fill no space
        response = client.head(url)
        assert (response.status_code, response["Content-Length"]) == (200, str(len(data)))
    # Nor does a cache revalidating what it holds.
    assert client.get(url, headers={"If-None-Match": response["ETag"]}).status_code == 304
    settled(files)
    assert not (copies / hashlib.sha256(data).hexdigest()).exists()
    assert body(client.get(url)) == data
    copied(files, data)
    assert isinstance(consumed(client.get(url)), FileResponse) and client.head(url)["Content-Length"] == str(len(data))


def test_serve_files_0_keeps_no_copy(serve, client, copies):
    files = serve(serve_files=0)
    data = random_bytes(2 * MiB)
    name = files.save("a.bin", ContentFile(data))
    for _ in range(2):
        response = client.get(files.url(name))
        assert body(response) == data and not isinstance(response, FileResponse)
    assert not copies.exists()


def test_a_directory_another_user_could_write_to_is_not_used(serve, client, copies, caplog):
    copies.mkdir(mode=0o777)
    copies.chmod(0o777)
    files = serve()
    data = random_bytes(2 * MiB)
    name = files.save("a.bin", ContentFile(data))
    with caplog.at_level(logging.WARNING, "natsstorage"):
        assert body(client.get(files.url(name))) == data
    assert "no other can write to" in caplog.text
    assert body(client.get(files.url(name))) == data
    assert os.listdir(copies) == []


def test_a_copy_evicted_once_its_response_began_is_still_sent_whole(serve, client, copies):
    files = serve()
    data = random_bytes(2 * MiB)
    name = files.save("a.bin", ContentFile(data))
    assert body(client.get(files.url(name))) == data
    path = copied(files, data)
    response = client.get(files.url(name))
    assert isinstance(response, FileResponse)
    path.unlink()  # another process made room meanwhile, before the server read a byte
    assert body(response) == data
