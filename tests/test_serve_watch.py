"""The view's watch of a bucket (``serve_watch``, on by default): while it runs, a kept copy is served with no
request to the server, and a change by any client drops it as the change arrives; when the watch is lost, every
request asks the server again until a new one runs."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.files.base import ContentFile

from natsstorage import NatsStorage, loop, servecache

from .helpers import as_another_client, body, eventually, random_bytes, steal_a_message, stream_info, with_nats

KiB = 1024


@pytest.fixture
def serve(serve):
    """``serve(**options)``: as conftest's, public unless told otherwise."""
    return lambda **options: serve(**{"public": True, **options})


def watched(storage: NatsStorage) -> servecache.ServeCache:
    """The storage's entries in this process, once its watch is live (what is under test: no timing asserted)."""
    cache = servecache.of(storage.bucket, storage.config.serve_cache)
    eventually(lambda: cache.watched is not None)
    return cache


def sent(storage: NatsStorage) -> int:
    """Messages this process has sent on the storage's connection (nats-py counts them): a lookup is one."""
    return int(loop.run(storage.bucket.connection()).stats["out_msgs"])


def test_a_kept_copy_is_served_with_no_request_to_the_server_while_the_watch_runs(serve, client):
    files = serve()
    data = random_bytes(100 * KiB)
    name = files.save("hot.bin", ContentFile(data))
    url = files.url(name)
    assert body(client.get(url)) == data  # read and kept; the watch starts
    watched(files)
    assert body(client.get(url)) == data  # named again, by a lookup begun under the watch
    before = sent(files)
    for _ in range(20):
        response = client.get(url)
        assert (response.status_code, body(response)) == (200, data)
    assert client.head(url)["Content-Length"] == str(len(data))
    assert client.get(url, headers={"Range": "bytes=0-9"}).content == data[:10]
    assert sent(files) - before <= 1  # no lookup (at most one pull request of the watch renewed meanwhile)


def test_without_the_watch_every_request_asks_the_server(serve, client):
    files = serve(serve_watch=False)
    name = files.save("hot.bin", ContentFile(b"x" * 1000))
    assert body(client.get(files.url(name))) == b"x" * 1000
    before = sent(files)
    for _ in range(5):
        assert body(client.get(files.url(name))) == b"x" * 1000
    assert sent(files) - before >= 5
    assert servecache.of(files.bucket, files.config.serve_cache).watched is None


def test_a_save_by_another_client_is_served_once_the_watch_delivers_it(serve, client):
    files = serve()
    name = files.save("logo.png", ContentFile(b"old" * 1000))
    url = files.url(name)
    assert body(client.get(url)) == b"old" * 1000
    cache = watched(files)
    assert body(client.get(url)) == b"old" * 1000

    async def replace(store: Any) -> None:
        await store.put(name, b"new" * 2000)

    as_another_client(files, replace)
    eventually(lambda: body(client.get(url)) == b"new" * 2000)
    response = client.get(url)
    assert (body(response), response["Content-Length"]) == (b"new" * 2000, "6000")
    assert cache.get(name).data == b"new" * 2000  # kept anew


def test_a_delete_by_another_client_is_404_once_the_watch_delivers_it(serve, client):
    files = serve()
    name = files.save("gone.bin", ContentFile(random_bytes(10 * KiB)))
    assert client.get(files.url(name)).status_code == 200
    cache = watched(files)
    assert client.get(files.url(name)).status_code == 200

    async def delete(store: Any) -> None:
        await store.delete(name)

    as_another_client(files, delete)
    eventually(lambda: client.get(files.url(name)).status_code == 404)
    assert cache.get(name) is None


def test_a_save_or_delete_through_another_storage_of_this_process_is_seen_at_once(serve, client, bucket_name):
    files = serve()
    other = NatsStorage(bucket_name, file_overwrite=True)  # another handle of the bucket: a model's storage, say
    name = files.save("a.txt", ContentFile(b"first"))
    assert body(client.get(files.url(name))) == b"first"
    watched(files)
    assert body(client.get(files.url(name))) == b"first"
    other.save(name, ContentFile(b"second"))
    assert body(client.get(files.url(name))) == b"second"  # read-your-writes in a process: no wait
    other.delete(name)
    assert client.get(files.url(name)).status_code == 404


def test_a_change_that_never_reached_the_watch_is_found_by_its_heartbeat(serve, client):
    files = serve()
    names = [files.save(f"{n}.txt", ContentFile(b"old")) for n in range(2)]
    for name in names:
        assert body(client.get(files.url(name))) == b"old"
    cache = watched(files)
    first = cache.watched
    for name in names:
        assert body(client.get(files.url(name))) == b"old"
    stolen = steal_a_message(files)  # as if the change it sends next got lost in a reconnect

    async def replace(store: Any) -> None:
        for name in names:  # one of the two goes astray
            await store.put(name, b"new")

    as_another_client(files, replace)
    with_nats(files, lambda nc: stolen.next_msg(timeout=5))
    for name in names:
        eventually(lambda name=name: body(client.get(files.url(name))) == b"new")
    eventually(lambda: cache.watched not in (None, first))  # a new watch


def test_a_watch_lost_with_its_server_falls_back_to_lookups_then_resumes(serve, client, own_server):
    server = own_server()
    files = serve(servers=[server.url], connect_timeout=1.0, connect_backoff=0.2, timeout=5.0)
    name = files.save("a.txt", ContentFile(b"kept"))
    url = files.url(name)
    assert body(client.get(url)) == b"kept"
    cache = watched(files)
    first = cache.watched
    assert body(client.get(url)) == b"kept"

    server.stop()
    eventually(lambda: cache.watched is None)
    assert client.get(url).status_code == 503  # the copy is not served unasked: nobody can say it is current
    server.start()
    eventually(lambda: client.get(url).status_code == 200)
    eventually(lambda: cache.watched not in (None, first))  # resumed, with a new watch
    assert body(client.get(url)) == b"kept"

    async def replace(store: Any) -> None:
        await store.put(name, b"changed")

    as_another_client(files, replace)
    eventually(lambda: body(client.get(url)) == b"changed")


def test_a_lookup_begun_before_a_change_keeps_nothing_it_read(serve, client):
    # The view marks where the watch stood when its lookup began; a change that arrives before the lookup keeps
    # what it read (older than the change, maybe) drops it, even once the name has left the recent changes.
    files = serve()
    name = files.save("a.txt", ContentFile(b"old"))
    assert body(client.get(files.url(name))) == b"old"
    cache = watched(files)
    info = loop.run(files.bucket.info(name))
    begun = cache.mark()
    cache.changed(name)  # the watch delivers a change meanwhile
    cache.keep(name, info, [b"old"], begun)
    assert cache.get(name) is None
    cache.keep(name, info, [b"old"], cache.mark())  # a lookup begun after it keeps what it read
    assert cache.get(name).data == b"old"
    begun = cache.mark()
    cache.changed(name)
    for i in range(servecache.RECENT):  # the name's change is no longer remembered by name
        cache.changed(f"other/{i}")
    cache.keep(name, info, [b"old"], begun)
    assert cache.get(name) is None


def test_the_watch_stops_once_nobody_asks_and_the_next_request_starts_it_again(serve, client, monkeypatch):
    from natsstorage import servewatch

    monkeypatch.setattr(servewatch, "IDLE", 1.0)  # seconds with no request before the watch stops
    files = serve()
    name = files.save("a.txt", ContentFile(b"x"))
    assert body(client.get(files.url(name))) == b"x"
    cache = watched(files)
    eventually(lambda: cache.follower is None)  # stopped, within a heartbeat past IDLE
    assert cache.watched is None
    eventually(lambda: stream_info(files)["state"]["consumer_count"] == 0)  # its consumer deleted (not waited for)
    assert body(client.get(files.url(name))) == b"x"
    assert watched(files) is cache and cache.follower is not None
