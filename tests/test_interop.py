"""Wire compatibility: nats-py's own ObjectStore reads what we write, and we read what it writes."""

from __future__ import annotations

import base64
import hashlib
import json

import pytest
from django.core.files.base import ContentFile
from nats.js.api import ObjectMeta

from natsstorage import NatsStorage
from natsstorage.buckettools import BucketTools
from natsstorage.links import LinkRefused

from .helpers import jetstream, put_foreign, random_bytes, with_nats


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


def test_the_bucket_we_create_has_the_object_store_stream_layout(make_storage, server_version):
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
    assert config.compression == ("s2" if server_version >= (2, 10) else None)  # 2.9 has no compression


def link_to(storage, name, bucket, target):
    """A link as nats.go's AddLink and the NATS CLI store it: no data, options.link naming the target."""
    put_foreign(storage, name, b"", options={"link": {"bucket": bucket, "name": target}})


def test_a_link_is_followed_by_open_size_info_and_the_view(storage, client, settings):
    settings.STORAGES = {
        **settings.STORAGES,
        "links": {"BACKEND": "natsstorage.NatsStorage", "OPTIONS": {"bucket": storage.config.bucket, "public": True}},
    }
    storage.save("target.txt", ContentFile(b"data"))
    storage.update_meta("target.txt", metadata={"owner": "ops"})
    link_to(storage, "alias.txt", storage.config.bucket, "target.txt")
    assert storage.exists("alias.txt")
    assert storage.open("alias.txt").read() == b"data"
    assert storage.size("alias.txt") == 4
    assert storage.info("alias.txt").name == "target.txt" and storage.info("alias.txt").metadata == {"owner": "ops"}
    listed = {entry.name: entry for entry in BucketTools(storage).listing()}
    assert listed["alias.txt"].is_link and not listed["target.txt"].is_link  # listings show links as links
    response = client.get(storage.url("alias.txt"))
    assert response.status_code == 200 and b"".join(response.streaming_content) == b"data"


def test_links_to_missing_objects_links_and_unserved_buckets_are_refused(storage):
    storage.save("target.txt", ContentFile(b"data"))
    bucket = storage.config.bucket
    link_to(storage, "first.txt", bucket, "target.txt")
    link_to(storage, "gone.txt", bucket, "nothing-here.txt")
    link_to(storage, "second.txt", bucket, "first.txt")
    link_to(storage, "elsewhere.txt", "nobody-serves-this", "x.txt")
    link_to(storage, "whole.txt", "nobody-serves-this", "")
    with pytest.raises(FileNotFoundError, match="links to 'nothing-here.txt'"):
        storage.open("gone.txt")
    with pytest.raises(LinkRefused, match="a link is followed once"):
        storage.open("second.txt")
    with pytest.raises(LinkRefused, match="which no storage of this project serves"):
        storage.size("elsewhere.txt")
    with pytest.raises(LinkRefused, match="the whole bucket"):
        storage.info("whole.txt")


def test_a_link_across_buckets_follows_only_into_a_served_bucket_under_its_rules(
    make_storage, bucket_name, client, settings
):
    private = NatsStorage(f"{bucket_name}p")
    settings.STORAGES = {
        **settings.STORAGES,
        "public": {"BACKEND": "natsstorage.NatsStorage", "OPTIONS": {"bucket": bucket_name, "public": True}},
        "private": {"BACKEND": "natsstorage.NatsStorage", "OPTIONS": {"bucket": f"{bucket_name}p"}},
    }
    public = make_storage(public=True)
    try:
        private.save("secret.txt", ContentFile(b"secret"))
        public.save("plain.txt", ContentFile(b"plain"))
        link_to(public, "to-secret.txt", f"{bucket_name}p", "secret.txt")
        assert public.open("to-secret.txt").read() == b"secret"  # the Storage API: code the project runs
        assert client.get(public.url("to-secret.txt")).status_code == 404  # a public link to a signed bucket
        link_to(private, "to-plain.txt", bucket_name, "plain.txt")
        response = client.get(private.url("to-plain.txt"))  # signed: asks more than the public target does
        assert response.status_code == 200 and b"".join(response.streaming_content) == b"plain"
    finally:
        BucketTools(private).destroy()


def test_the_metadata_map_is_stored_as_every_client_writes_it(make_storage):
    # ADR-20's top-level "metadata" map (nats.go, nats.js, the NATS CLI; nats-py 2.16 does not know it yet).
    storage = make_storage(object_parameters={"Metadata": {"team": "web"}})
    storage.save("m.txt", ContentFile(b"m"))
    assert storage.info("m.txt").metadata == {"team": "web"}
    assert raw_metadata(storage, "m.txt")["metadata"] == {"team": "web"}
    put_foreign(storage, "theirs.txt", b"t", metadata={"by": "nats.go"})
    assert storage.info("theirs.txt").metadata == {"by": "nats.go"}
    storage.update_meta("theirs.txt", description="kept")  # another field changed: the map stays
    assert raw_metadata(storage, "theirs.txt")["metadata"] == {"by": "nats.go"}
    storage.update_meta("theirs.txt", metadata={"by": "natsstorage"})
    assert storage.info("theirs.txt").metadata == {"by": "natsstorage"}
    assert storage.open("theirs.txt").read() == b"t"


def raw_metadata(storage, name):
    """The object's metadata message as stored, read as any client would."""
    key = base64.urlsafe_b64encode(name.encode()).decode()
    found = jetstream(storage, "STREAM.MSG.GET", {"last_by_subj": f"$O.{storage.config.bucket}.M.{key}"})
    return json.loads(base64.b64decode(found["message"]["data"]))
