"""Wire compatibility: nats-py's own ObjectStore reads what we write, and we read what it writes."""

from __future__ import annotations

import base64
import hashlib
import json

import pytest
from django.core.files.base import ContentFile
from nats.js.api import ObjectMeta

from natsstorage.exceptions import NatsStorageError

from .helpers import random_bytes, with_nats


def test_nats_py_reads_what_natsstorage_writes(storage):
    data = random_bytes(1_000_000)
    storage.save("dir/ours.bin", ContentFile(data))
    storage.update_meta("dir/ours.bin", description="written by natsstorage")

    async def read(nc):
        store = await nc.jetstream().object_store(storage.config.bucket)
        return await store.get("dir/ours.bin")

    result = with_nats(storage, read)
    assert result.data == data  # nats-py checks the digest too
    assert result.info.size == len(data)
    assert result.info.description == "written by natsstorage"
    assert result.info.headers == {"Content-Type": ["application/octet-stream"]}


def test_natsstorage_reads_what_nats_py_writes(storage):
    data = random_bytes(700_000)
    storage.save("placeholder", ContentFile(b""))  # creates the bucket

    async def write(nc):
        store = await nc.jetstream().object_store(storage.config.bucket)
        await store.put("theirs/file.bin", data, meta=ObjectMeta(name="theirs/file.bin", description="from nats-py"))

    with_nats(storage, write)
    assert storage.exists("theirs/file.bin")
    assert storage.size("theirs/file.bin") == len(data)
    assert storage.open("theirs/file.bin").read() == data
    assert storage.info("theirs/file.bin").sha256 == hashlib.sha256(data).digest()
    assert storage.info("theirs/file.bin").description == "from nats-py"
    assert storage.listdir("theirs") == ([], ["file.bin"])


def test_deletes_are_seen_both_ways(storage):
    storage.save("a.txt", ContentFile(b"a"))
    storage.save("b.txt", ContentFile(b"b"))

    async def delete_and_list(nc):
        store = await nc.jetstream().object_store(storage.config.bucket)
        await store.delete("a.txt")
        return sorted(info.name for info in await store.list(ignore_deletes=True))

    assert with_nats(storage, delete_and_list) == ["b.txt"]
    assert not storage.exists("a.txt")
    storage.delete("b.txt")

    async def get_info(nc):
        store = await nc.jetstream().object_store(storage.config.bucket)
        return await store.get_info("b.txt", show_deleted=True)

    assert with_nats(storage, get_info).deleted


def test_the_bucket_we_create_has_the_object_store_stream_layout(make_storage):
    storage = make_storage(description="media files", max_bytes=10_000_000, ttl=3600.0, compression=True)
    storage.save("x", ContentFile(b"x"))

    async def status(nc):
        return await (await nc.jetstream().object_store(storage.config.bucket)).status()

    status = with_nats(storage, status)
    config = status.stream_info.config
    assert config.name == f"OBJ_{storage.config.bucket}"
    assert config.subjects == [f"$O.{storage.config.bucket}.C.>", f"$O.{storage.config.bucket}.M.>"]
    assert config.allow_rollup_hdrs and config.allow_direct and config.discard == "new"
    assert (config.description, config.max_bytes, config.max_age) == ("media files", 10_000_000, 3600.0)
    assert config.compression == "s2"


def test_links_made_by_other_clients_are_refused_clearly_not_read_as_empty(storage):
    storage.save("target.txt", ContentFile(b"data"))

    async def link(nc):
        store = await nc.jetstream().object_store(storage.config.bucket)
        info = await store.get_info("target.txt")
        meta = {
            "name": "alias.txt",
            "bucket": storage.config.bucket,
            "nuid": "linknuid",
            "size": 0,
            "chunks": 0,
            "mtime": "2026-01-01T00:00:00Z",
            "options": {"link": {"bucket": info.bucket, "name": info.name}},
        }
        key = base64.urlsafe_b64encode(b"alias.txt").decode()
        subject = f"$O.{storage.config.bucket}.M.{key}"
        await nc.request(subject, json.dumps(meta).encode(), headers={"Nats-Rollup": "sub"}, timeout=5)

    with_nats(storage, link)
    assert storage.exists("alias.txt")
    with pytest.raises(NatsStorageError, match="is an Object Store link"):
        storage.open("alias.txt")
