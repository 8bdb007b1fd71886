"""The view's copies of small objects (``serve_cache``): served from memory only while the server's metadata
names them. Without the watch (``serve_watch=False``) each request asks for it, so a save or a delete by any
client is seen by the very next request; with it, once the watch delivers the change (tests/test_serve_watch.py)."""

from __future__ import annotations

import logging
import time
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.core.files.base import ContentFile
from django.test import AsyncClient

from natsstorage import NatsStorage, servecache
from natsstorage.exceptions import CorruptObject

from .helpers import MiB, as_another_client, body, corrupt_last_byte, random_bytes

KiB = 1024


@pytest.fixture
def serve(serve):
    """``serve(**options)``: as conftest's, public unless told otherwise."""
    return lambda **options: serve(**{"public": True, **options})


def kept(storage: NatsStorage) -> servecache.ServeCache:
    """This process's copies for the storage: what is kept is the behaviour under test (no timing is asserted)."""
    return servecache.of(storage.bucket, storage.config.serve_cache)


def test_a_served_object_is_kept_checked_and_served_again_from_its_copy(serve, client):
    files = serve()
    data = random_bytes(100 * KiB)
    name = files.save("hot.bin", ContentFile(data))
    assert body(client.get(files.url(name))) == data
    assert kept(files).get(name).data == data
    again = client.get(files.url(name))
    assert (again.status_code, body(again), again["Content-Length"]) == (200, data, str(len(data)))
    assert again["ETag"] == client.get(files.url(name))["ETag"]


def test_an_object_over_several_chunks_is_kept_too(serve, client):
    files = serve(chunk_size=64 * KiB)
    data = random_bytes(300 * KiB)
    name = files.save("five.bin", ContentFile(data))
    assert body(client.get(files.url(name))) == data
    assert kept(files).get(name).data == data
    assert body(client.get(files.url(name))) == data


def test_an_object_replaced_by_another_client_is_served_new_at_once_without_the_watch(serve, client):
    files = serve(serve_watch=False)
    name = files.save("logo.png", ContentFile(b"old" * 1000))
    assert body(client.get(files.url(name))) == b"old" * 1000
    assert kept(files).get(name) is not None

    async def replace(store: Any) -> None:
        await store.put(name, b"new" * 2000)

    as_another_client(files, replace)
    response = client.get(files.url(name))
    assert body(response) == b"new" * 2000
    assert response["Content-Length"] == "6000"
    assert body(client.get(files.url(name))) == b"new" * 2000  # kept anew
    assert kept(files).get(name).data == b"new" * 2000


def test_an_object_saved_again_in_this_process_is_served_new_at_once(serve, client):
    files = serve(file_overwrite=True)
    name = files.save("a.txt", ContentFile(b"first"))
    assert body(client.get(files.url(name))) == b"first"
    files.save(name, ContentFile(b"second"))
    assert body(client.get(files.url(name))) == b"second"


def test_an_object_deleted_by_another_client_is_404_at_once_without_the_watch(serve, client):
    files = serve(serve_watch=False)
    name = files.save("gone.bin", ContentFile(random_bytes(10 * KiB)))
    assert client.get(files.url(name)).status_code == 200
    assert kept(files).get(name) is not None

    async def delete(store: Any) -> None:
        await store.delete(name)

    as_another_client(files, delete)
    assert client.get(files.url(name)).status_code == 404
    assert kept(files).get(name) is None


@pytest.mark.parametrize(("size", "chunk_size"), [(1000, 512 * KiB), (300 * KiB, 64 * KiB)])
def test_a_corrupt_object_is_never_kept_nor_served(serve, client, caplog, size, chunk_size):
    files = serve(chunk_size=chunk_size)
    name = files.save("bad.bin", ContentFile(random_bytes(size)))
    corrupt_last_byte(files, name)
    for _ in range(2):  # the second request finds no copy either
        response = client.get(files.url(name))
        assert response.status_code == 200  # the status line is sent before the last chunk is checked
        with caplog.at_level(logging.ERROR, "natsstorage"), pytest.raises(CorruptObject, match="SHA-256"):
            body(response)
        assert kept(files).get(name) is None


def test_ranges_conditional_requests_and_head_of_a_kept_object(serve, client):
    files = serve()
    data = bytes(range(256)) * 400
    name = files.save("r.bin", ContentFile(data))
    url = files.url(name)
    etag = client.get(url)["ETag"]
    assert kept(files).get(name) is not None
    ranged = client.get(url, headers={"Range": "bytes=10-19"})
    assert (ranged.status_code, body(ranged), ranged["Content-Range"]) == (206, data[10:20], f"bytes 10-19/{len(data)}")
    assert body(client.get(url, headers={"Range": "bytes=-5"})) == data[-5:]
    assert client.get(url, headers={"Range": f"bytes={len(data)}-"}).status_code == 416
    assert client.get(url, headers={"If-None-Match": etag}).status_code == 304
    head = client.head(url)
    assert (head.status_code, head.content, head["Content-Length"]) == (200, b"", str(len(data)))


def test_a_kept_object_is_served_under_asgi(serve):
    files = serve()
    data = random_bytes(20 * KiB)
    name = files.save("a.bin", ContentFile(data))

    async def go() -> list[bytes]:
        client = AsyncClient()
        bodies = []
        for _ in range(2):  # read, then from the copy
            response = await client.get(files.url(name))
            streamed = response.streaming and [piece async for piece in response.streaming_content]
            bodies.append(b"".join(streamed) if streamed else response.content)
        return bodies

    assert async_to_sync(go)() == [data, data]
    assert kept(files).get(name) is not None


def test_the_copies_never_hold_more_than_serve_cache(serve, client):
    files = serve(serve_cache=250 * KiB)
    names = [files.save(f"{n}.bin", ContentFile(random_bytes(100 * KiB))) for n in range(5)]
    too_big = files.save("big.bin", ContentFile(random_bytes(300 * KiB)))
    for name in [*names, too_big, names[-1]]:
        assert client.get(files.url(name)).status_code == 200
        assert kept(files).held <= 250 * KiB
    assert list(kept(files).copies) == names[-2:]  # the least recently served went first
    assert kept(files).held == sum(len(copy.data) for copy in kept(files).copies.values()) == 200 * KiB


def test_objects_over_a_mebibyte_are_not_kept(serve, client):
    files = serve()
    name = files.save("large.bin", ContentFile(random_bytes(MiB + 1)))
    assert client.get(files.url(name)).status_code == 200
    assert kept(files).held == 0


def test_serve_cache_0_keeps_nothing(serve, client):
    files = serve(serve_cache=0)
    name = files.save("a.bin", ContentFile(b"x" * 100))
    assert body(client.get(files.url(name))) == b"x" * 100
    assert not servecache.of(files.bucket, files.config.serve_cache).copies
    assert servecache.of(files.bucket, files.config.serve_cache).watched is None  # nothing to watch for


# -- serve_cache_trust: opt-in, eventual, for when no watch runs ------------------------


def replace_as_another_client(files: NatsStorage, name: str, data: bytes) -> None:
    async def replace(store: Any) -> None:
        await store.put(name, data)

    as_another_client(files, replace)


def test_a_trusted_copy_is_served_without_asking_the_server(serve, client):
    files = serve(serve_cache_trust=3600, serve_watch=False)
    name = files.save("a.txt", ContentFile(b"old"))
    assert body(client.get(files.url(name))) == b"old"
    replace_as_another_client(files, name, b"newer")
    assert body(client.get(files.url(name))) == b"old"  # eventual: what serve_cache_trust says it is


def test_a_trusted_copy_is_asked_about_again_once_its_seconds_are_up(serve, client):
    files = serve(serve_cache_trust=0.05, serve_watch=False)
    name = files.save("a.txt", ContentFile(b"old"))
    assert body(client.get(files.url(name))) == b"old"
    replace_as_another_client(files, name, b"new")
    time.sleep(0.1)  # past the trust: not a timing assertion, the bound under test
    assert body(client.get(files.url(name))) == b"new"


def test_a_trusted_copy_still_needs_a_signed_link(serve, client):
    files = serve(public=False, serve_cache_trust=3600, serve_watch=False)
    name = files.save("private.txt", ContentFile(b"secret"))
    assert body(client.get(files.url(name))) == b"secret"
    assert client.get(files.url(name).partition("?")[0]).status_code == 403
