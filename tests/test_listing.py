"""Listings always current, cheap, and safe with any name another client wrote; the per-process index's own ways."""

from __future__ import annotations

import asyncio
import contextlib
import time

import pytest
from django.contrib.staticfiles.utils import get_files
from django.core.files.base import ContentFile
from nats.js.api import ObjectMeta

from natsstorage import NatsStorage
from natsstorage.buckettools import BucketTools
from natsstorage.index import Index
from natsstorage.jetstream import Stream

from .helpers import put_foreign, save_once_back, steal_a_message, stream_state, with_nats

FOREIGN_NAMES = ["a//b", "a/", "../x", "dir/./y", "new\nline.txt", "back\\slash.txt", "/abs.txt", "dir/../z"]


def test_listdir_has_what_another_client_wrote_or_deleted_just_before(storage):
    storage.save("dir/ours.txt", ContentFile(b"ours"))
    assert storage.listdir("dir") == ([], ["ours.txt"])  # the index is made here

    async def put(nc):
        store = await nc.jetstream().object_store(storage.config.bucket)
        await store.put("dir/theirs.txt", b"theirs", meta=ObjectMeta(name="dir/theirs.txt"))

    async def delete(nc):
        store = await nc.jetstream().object_store(storage.config.bucket)
        await store.delete("dir/ours.txt")

    for _ in range(20):  # no time for the watch to deliver: the answer must wait for it
        with_nats(storage, put)
        assert storage.listdir("dir") == ([], ["ours.txt", "theirs.txt"])
        with_nats(storage, delete)
        assert storage.listdir("dir") == ([], ["theirs.txt"])
        storage.save("dir/ours.txt", ContentFile(b"ours"))


def test_an_index_nobody_looks_at_is_dropped_with_its_watch_and_made_again_when_asked(make_storage):
    storage = make_storage(listing_idle=0.5, listing="process")
    storage.save("a", ContentFile(b"a"))
    assert storage.listdir("") == ([], ["a"])
    assert stream_state(storage)["consumer_count"] == 1  # the index's watch
    for _ in range(6):  # looked at more often than IDLE: kept
        time.sleep(0.2)
        assert storage.listdir("") == ([], ["a"])
    assert stream_state(storage)["consumer_count"] == 1
    deadline = time.monotonic() + 5
    while stream_state(storage)["consumer_count"] and time.monotonic() < deadline:
        time.sleep(0.1)
    assert stream_state(storage)["consumer_count"] == 0  # nobody looked: no consumer on the server, no names here
    storage.save("b", ContentFile(b"b"))
    assert storage.listdir("") == ([], ["a", "b"])


def test_an_index_is_never_dropped_while_a_look_at_it_is_under_way(make_storage, monkeypatch):
    storage = make_storage(listing_idle=0.1, listing="process")
    storage.save("a", ContentFile(b"a"))
    ask = Stream.api

    async def slowly(self, nc, subject, *args, **kwargs):  # a busy leader: the look outlasts listing_idle
        if subject.startswith("STREAM.INFO"):
            await asyncio.sleep(0.3)
        return await ask(self, nc, subject, *args, **kwargs)

    monkeypatch.setattr(Stream, "api", slowly)
    assert storage.listdir("") == ([], ["a"])
    monkeypatch.setattr(Stream, "api", ask)
    deadline = time.monotonic() + 5
    while stream_state(storage)["consumer_count"] and time.monotonic() < deadline:
        time.sleep(0.1)
    assert stream_state(storage)["consumer_count"] == 0  # dropped once idle, its watch with it: none left behind


def test_an_index_some_storage_keeps_for_good_is_kept(make_storage, bucket_name):
    briefly = make_storage(listing_idle=0.3, listing="process")
    briefly.save("a", ContentFile(b"a"))
    assert briefly.listdir("") == ([], ["a"])
    assert NatsStorage(bucket_name, listing_idle=None, listing="process").listdir("") == ([], ["a"])
    time.sleep(1)
    assert stream_state(make_storage())["consumer_count"] == 1  # the longest time asked wins: for good


def test_listdir_keeps_directories_apart_whatever_sorts_between_them(storage):
    names = ["a-b/x", "a/y", "a/sub/deep/z", "a/sub0", "a/sub/w", "a0", "a.txt", "b/c"]
    for name in names:
        storage.save(name, ContentFile(name.encode()))
    assert storage.listdir("") == (["a", "a-b", "b"], ["a.txt", "a0"])
    assert storage.listdir("a") == (["sub"], ["sub0", "y"])
    assert storage.listdir("a/sub") == (["deep"], ["w"])
    assert storage.exists("a/sub/deep") and not storage.exists("a/su")
    storage.delete("a/sub/deep/z")
    assert storage.listdir("a/sub") == ([], ["w"])


def test_names_other_clients_wrote_never_list_as_empty_dot_or_dotdot_and_a_walk_ends(storage):
    storage.save("ok/fine.txt", ContentFile(b"fine"))
    for name in FOREIGN_NAMES:
        put_foreign(storage, name, name.encode())
    top = storage.listdir("")
    for directories, files in (top, storage.listdir("a"), storage.listdir("dir")):
        assert not {"", ".", ".."} & {*directories, *files}
    # Staticfiles' own walker ends, and meets only names Django code may open.
    assert sorted(get_files(storage)) == ["back\\slash.txt", "ok/fine.txt"]


def test_a_listed_name_addresses_that_very_object(storage):
    storage.save("back/slash.txt", ContentFile(b"the directory one"))
    put_foreign(storage, "back\\slash.txt", b"the backslash one")
    (directories, files) = storage.listdir("")
    assert directories == ["back"] and files == ["back\\slash.txt"]
    assert storage.open(files[0]).read() == b"the backslash one"
    storage.delete(files[0])
    assert storage.open("back/slash.txt").read() == b"the directory one"


def test_the_count_comes_from_the_index_and_follows_deletes(storage):
    for i in range(5):
        storage.save(f"n/{i}", ContentFile(b"x"))
    storage.delete("n/0")
    assert BucketTools(storage).status().objects == 4


def test_the_index_resumes_after_a_server_restart_without_a_stale_answer(own_server, bucket_name):
    server = own_server()
    storage = NatsStorage(bucket_name, servers=server.url, timeout=3.0)
    storage.save("before.txt", ContentFile(b"1"))
    assert storage.listdir("") == ([], ["before.txt"])
    server.restart()  # the index's consumer is gone with it
    save_once_back(storage, "after.txt", b"2")
    assert storage.listdir("") == ([], ["after.txt", "before.txt"])
    storage.delete("before.txt")
    assert storage.listdir("") == ([], ["after.txt"])


def test_a_bucket_destroyed_and_made_again_lists_only_its_new_objects(make_storage):
    storage = make_storage()
    storage.save("old.txt", ContentFile(b"old"))
    assert storage.listdir("") == ([], ["old.txt"])
    other = make_storage()  # another process's view: it destroys and writes anew
    BucketTools(other).destroy()
    other.save("new.txt", ContentFile(b"new"))
    assert storage.listdir("") == ([], ["new.txt"])


@pytest.mark.slow
def test_a_bucket_destroyed_and_made_again_at_once_on_a_server_holding_nothing_else_is_made(own_server):
    # nats-server removes an account's empty stream directory in the background once its last stream is deleted;
    # a stream created meanwhile failed to make its store (10049): 1 time in 60 here, before creates tried again.
    server = own_server()
    for round_ in range(200):
        storage = NatsStorage(f"again{round_}", servers=server.url)
        storage.save("old.txt", ContentFile(b"old"))
        BucketTools(storage).destroy()
        other = NatsStorage(f"again{round_}", servers=server.url)  # another process's view: it writes anew
        other.save("new.txt", ContentFile(b"new"))
        assert other.listdir("") == ([], ["new.txt"])
        BucketTools(other).destroy()  # the server holds nothing again


def test_a_page_of_the_listing_by_name_size_or_time_and_the_count_of_all(storage):
    for i, size in enumerate([5, 1, 9, 3, 7]):
        storage.save(f"p/{i}.bin", ContentFile(b"x" * size))
    storage.save("q/other.bin", ContentFile(b"x" * 100))

    def page(**kwargs):
        entries, total, _ = BucketTools(storage).listing_page("p/", **kwargs)
        return [entry.name for entry in entries], total

    assert page(limit=2) == (["p/0.bin", "p/1.bin"], 5)
    assert page(limit=2, offset=4) == (["p/4.bin"], 5)
    assert page(limit=2, descending=True) == (["p/4.bin", "p/3.bin"], 5)
    assert page(order="size", descending=True, limit=3) == (["p/2.bin", "p/4.bin", "p/0.bin"], 5)
    assert page(order="size", limit=2, offset=1) == (["p/3.bin", "p/0.bin"], 5)
    assert page(order="mtime", descending=True, limit=1) == (["p/4.bin"], 5)
    with pytest.raises(ValueError, match="order by"):
        BucketTools(storage).listing_page(order="colour")


def test_a_walk_of_a_bucket_other_clients_wrote_serves_every_file_through_the_view(storage, client, settings):
    served = {"BACKEND": "natsstorage.NatsStorage", "OPTIONS": {"bucket": storage.config.bucket, "public": True}}
    settings.STORAGES = {**settings.STORAGES, "theirs": served}
    theirs = ["reports/2026 q1.pdf", "ünïcode/naïve café.txt", "plus+and&amp.txt", "deep/a/b/c/d.bin"]

    async def put(nc):
        store = await nc.jetstream().object_store(storage.config.bucket)
        for name in theirs:
            await store.put(name, name.encode(), meta=ObjectMeta(name=name))

    storage.save("ours.txt", ContentFile(b"ours.txt"))
    with_nats(storage, put)
    for name in FOREIGN_NAMES:  # names nats-py refuses, and Django code may not use
        put_foreign(storage, name, name.encode())
    walked = sorted(get_files(storage))
    assert walked == sorted(["back\\slash.txt", "ours.txt", *theirs])
    for name in walked:
        if "\\" in name:
            continue  # url() writes it as "back/slash.txt", as Django's filepath_to_uri does (docs/differences.md)
        response = client.get(storage.url(name))
        assert response.status_code == 200, name
        assert b"".join(response.streaming_content) == name.encode()
    # What Django code may not use stays out of the view's reach: not found, or refused as suspicious.
    for path in ("new%0Aline.txt", "..%2Fx", "dir/../z"):
        assert client.get(f"/files/{storage.config.bucket}/{path}").status_code in (400, 404), path


def test_the_signed_link_of_a_name_with_a_backslash_is_valid_for_the_name_it_carries(storage, client, settings):
    served = {"BACKEND": "natsstorage.NatsStorage", "OPTIONS": {"bucket": storage.config.bucket}}  # signed links
    settings.STORAGES = {**settings.STORAGES, "theirs": served}
    storage.save("back/slash.txt", ContentFile(b"the directory one"))
    put_foreign(storage, "back\\slash.txt", b"the backslash one")
    response = client.get(storage.url("back\\slash.txt"))  # "back/slash.txt", as Django's filepath_to_uri writes it
    assert response.status_code == 200
    assert b"".join(response.streaming_content) == b"the directory one"


def test_a_change_the_listing_never_received_is_fetched_again_not_skipped(make_storage):
    storage = make_storage(listing="process")  # the per-process index's watch
    storage.save("a.txt", ContentFile(b"a"))
    assert storage.listdir("") == ([], ["a.txt"])
    stolen = steal_a_message(storage)
    storage.save("b.txt", ContentFile(b"b"))  # one of these two goes astray
    storage.save("c.txt", ContentFile(b"c"))
    with_nats(storage, lambda nc: stolen.next_msg(timeout=5))
    storage.save("d.txt", ContentFile(b"d"))
    assert storage.listdir("") == ([], ["a.txt", "b.txt", "c.txt", "d.txt"])


def test_a_watch_gets_the_last_change_again_when_it_went_astray(storage):
    with BucketTools(storage).watch() as changes:
        changes.start()
        stolen = steal_a_message(storage)
        storage.save("b.txt", ContentFile(b"b"))  # to the watch
        storage.save("c.txt", ContentFile(b"c"))  # astray: only the next heartbeat tells
        with_nats(storage, lambda nc: stolen.next_msg(timeout=5))
        assert [changes.next().name, changes.next().name] == ["b.txt", "c.txt"]


def test_closing_a_listing_index_ends_a_watch_task_that_swallowed_its_cancellation(storage):
    # nats-py swallows a cancellation that lands while a task waits for its flusher (a forced flush, when its
    # buffer is over its limit): the index's task then went on following the bucket, and closing waited for ever.
    storage.save("docs/a.txt", ContentFile(b"a"))
    assert storage.listdir("docs") == ([], ["a.txt"])

    async def close_with_a_task_that_swallows_one_cancellation(nc: object) -> float:
        index = await Index.of(storage.bucket)
        assert index._task is not None and index._watch is not None
        watch, following = index._watch, index._task
        following.cancel()

        async def as_in_a_forced_flush() -> None:
            with contextlib.suppress(asyncio.CancelledError):  # as nats-py's _flush_pending does
                await asyncio.sleep(60)
            await index._follow(watch)  # goes on following: heartbeats keep it waiting

        index._task = asyncio.get_running_loop().create_task(as_in_a_forced_flush())
        await asyncio.sleep(0)
        started = time.monotonic()
        await asyncio.wait_for(index.close(), 20)  # (which returns at 20 s when close swallows its cancellation)
        return time.monotonic() - started

    took = with_nats(storage, close_with_a_task_that_swallows_one_cancellation)
    assert took < 10, f"closing the index took {took:.1f} s"  # the task is stopped within 2 s: no hang
