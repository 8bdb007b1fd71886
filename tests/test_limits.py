"""Buckets that refuse writes: full, sealed, missing; and buckets we create versus ones that exist."""

from __future__ import annotations

import asyncio
import io
import time
from typing import Any

import pytest
from django.core.files.base import ContentFile
from django.core.management import call_command

from natsstorage import NatsStorage
from natsstorage.buckettools import BucketTools
from natsstorage.exceptions import BucketFull, BucketNotFound, BucketSealed, JetStreamError
from natsstorage.jetstream import Stream

from .helpers import jetstream, random_bytes, stream_state, with_nats


def seal(storage: NatsStorage) -> None:
    async def update(nc):
        store = await nc.jetstream().object_store(storage.config.bucket)
        await store.seal()

    with_nats(storage, update)


def test_a_save_that_would_overflow_max_bytes_fails_clearly_and_leaves_nothing(make_storage):
    storage = make_storage(max_bytes=1_000_000)
    storage.save("small.bin", ContentFile(random_bytes(100_000)))
    before = stream_state(storage)
    with pytest.raises(
        BucketFull, match=r"bucket '\w+' is full: writing 'big.bin' would exceed max_bytes 1000000"
    ) as error:
        storage.save("big.bin", ContentFile(random_bytes(2_000_000)))
    assert isinstance(error.value, JetStreamError) and error.value.code == 10077  # the server's own error code
    assert not storage.exists("big.bin")
    assert stream_state(storage)["messages"] == before["messages"]  # the chunks already sent were purged
    assert storage.open("small.bin").read()  # the bucket still works


def test_overwrites_back_to_back_never_count_the_versions_they_replaced(make_storage, monkeypatch):
    # Room for two versions, not three. Replaced versions are purged in the background, slowly
    # here (the only way to make the race certain is to slow the purge itself), and two storages
    # take turns: each save must wait for the purge either one started.
    purge = Stream.purge

    async def slow_purge(self: Stream, nc: Any, subject: str) -> int:
        await asyncio.sleep(0.2)
        return await purge(self, nc, subject)

    monkeypatch.setattr(Stream, "purge", slow_purge)
    storages = [make_storage(max_bytes=2_500_000, file_overwrite=True) for _ in range(2)]
    for turn in range(6):
        storages[turn % 2].save("big.bin", ContentFile(random_bytes(1_000_000)))
    assert BucketTools(storages[0]).status().bytes < 1_100_000  # once the purges under way are done


def test_a_sealed_bucket_reads_but_refuses_writes_and_deletes(storage):
    storage.save("kept.txt", ContentFile(b"kept"))
    seal(storage)
    assert storage.open("kept.txt").read() == b"kept"
    assert storage.listdir("") == ([], ["kept.txt"])
    with pytest.raises(BucketSealed, match="is sealed"):
        storage.save("new.txt", ContentFile(b"x"))
    with pytest.raises(BucketSealed, match="is sealed"):
        storage.delete("kept.txt")
    with pytest.raises(BucketSealed):
        storage.update_meta("kept.txt", description="x")
    assert storage.open("kept.txt").read() == b"kept"


def test_a_missing_bucket_is_created_with_the_storage_options(make_storage):
    storage = make_storage(description="uploads", storage="memory", max_bytes=5_000_000)
    storage.save("a", ContentFile(b"a"))
    status = BucketTools(storage).status()
    assert (status.description, status.storage, status.max_bytes, status.objects) == ("uploads", "memory", 5_000_000, 1)


def test_an_existing_bucket_is_never_reconfigured(make_storage, bucket_name):
    make_storage(description="original").save("a", ContentFile(b"a"))
    other = NatsStorage(bucket_name, description="changed", max_bytes=10)
    other.save("b", ContentFile(b"b"))
    status = BucketTools(other).status()
    assert (status.description, status.max_bytes, status.objects) == ("original", -1, 2)


def test_without_create_bucket_a_missing_bucket_is_an_error(bucket_name):
    storage = NatsStorage(bucket_name, create_bucket=False)
    with pytest.raises(BucketNotFound, match=f"bucket '{bucket_name}' does not exist"):
        storage.exists("a")
    with pytest.raises(BucketNotFound):
        storage.save("a", ContentFile(b"a"))


def test_a_destroyed_bucket_is_created_again_on_next_use(storage):
    storage.save("a", ContentFile(b"a"))
    BucketTools(storage).destroy()
    assert not storage.exists("a")
    storage.save("b", ContentFile(b"b"))
    assert storage.listdir("") == ([], ["b"])


def destroyed_elsewhere(bucket_name: str) -> None:
    """The bucket destroyed as another process would: with a storage of its own, so this one's knowledge is stale."""
    call_command("natsos_destroy", bucket_name, "--noinput", stdout=io.StringIO())


def used(storage: NatsStorage) -> None:
    storage.save("old.txt", ContentFile(b"old"))
    assert storage.listdir("") == ([], ["old.txt"])


def test_a_bucket_destroyed_by_another_process_is_created_again_by_listdir(storage, bucket_name):
    used(storage)
    destroyed_elsewhere(bucket_name)
    assert storage.listdir("") == ([], [])
    assert BucketTools(NatsStorage(bucket_name, create_bucket=False)).bucket_exists()


@pytest.mark.parametrize("size", [0, 10, 3 * 1024 * 1024], ids=["empty", "one-chunk", "many-chunks"])
def test_a_bucket_destroyed_by_another_process_is_created_again_by_save(storage, bucket_name, size):
    used(storage)
    destroyed_elsewhere(bucket_name)
    data = random_bytes(size)
    assert storage.save("new.bin", ContentFile(data)) == "new.bin"
    with storage.open("new.bin") as file:
        assert file.read() == data
    assert storage.listdir("") == ([], ["new.bin"])


@pytest.mark.parametrize("size", [10, 3 * 1024 * 1024], ids=["one-chunk", "many-chunks"])
def test_a_bucket_destroyed_by_another_process_is_created_again_by_open_for_writing(storage, bucket_name, size):
    used(storage)
    destroyed_elsewhere(bucket_name)
    data = random_bytes(size)
    with storage.open("new.bin", "wb") as file:
        file.write(data)
    assert storage.open("new.bin").read() == data


def test_reading_from_a_bucket_destroyed_by_another_process_finds_no_file(storage, bucket_name):
    used(storage)
    destroyed_elsewhere(bucket_name)
    assert not storage.exists("old.txt")
    with pytest.raises(FileNotFoundError):
        storage.open("old.txt")


def test_an_object_saved_anew_in_a_bucket_made_again_elsewhere_is_read_as_it_is_now(storage, bucket_name):
    # Its metadata comes back at the stream sequence this process knew the old one by; the time tells them apart.
    storage.save("same.txt", ContentFile(b"old"))
    assert storage.open("same.txt").read() == b"old"
    destroyed_elsewhere(bucket_name)
    NatsStorage(bucket_name).save("same.txt", ContentFile(b"new, and longer"))  # as another process would
    assert storage.size("same.txt") == len(b"new, and longer")
    assert storage.open("same.txt").read() == b"new, and longer"


def test_a_bucket_deleted_by_another_client_is_created_again(storage):
    used(storage)
    jetstream(storage, "STREAM.DELETE")  # a nats-py client, as nats.go or the NATS CLI would
    storage.save("new.txt", ContentFile(b"new"))
    assert storage.listdir("") == ([], ["new.txt"])


def test_without_create_bucket_a_bucket_destroyed_by_another_process_stays_an_error(make_storage, bucket_name):
    storage = make_storage()
    used(storage)
    fixed = NatsStorage(bucket_name, create_bucket=False)
    assert fixed.listdir("") == ([], ["old.txt"])
    destroyed_elsewhere(bucket_name)
    with pytest.raises(BucketNotFound):
        fixed.listdir("")
    with pytest.raises(BucketNotFound):
        fixed.save("new.txt", ContentFile(b"new"))
    assert not BucketTools(fixed).bucket_exists()


def test_objects_past_the_bucket_ttl_are_gone(make_storage):
    storage = make_storage(ttl=1.0)
    storage.save("short-lived.txt", ContentFile(b"soon gone"))
    assert storage.exists("short-lived.txt")
    time.sleep(1.3)
    assert not storage.exists("short-lived.txt")
    with pytest.raises(FileNotFoundError):
        storage.open("short-lived.txt")
    assert storage.listdir("") == ([], [])


def test_chunks_shrink_to_a_server_with_a_small_max_payload(own_server, bucket_name):
    data = random_bytes(300_000)
    server = own_server("max_payload: 65536")
    storage = NatsStorage(bucket_name, servers=server.url)
    storage.save("a.bin", ContentFile(data))
    info = storage.info("a.bin")
    assert (info.chunk_size, info.chunks) == (65536, 5)
    assert storage.open("a.bin").read() == data
