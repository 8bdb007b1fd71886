"""``manage.py natsos_gc``: chunks no object points to are found, reported and, when asked, purged."""

from __future__ import annotations

import io
import json

import pytest
from django.core.files.base import ContentFile
from django.core.management import call_command
from django.core.management.base import CommandError
from nats.aio.client import Client

from natsstorage import NatsStorage
from natsstorage.objectstore import CHUNK_SUBJECT, META_SUBJECT, encode_key

from .helpers import random_bytes, stream_state, with_nats


def gc(bucket: str, *args: str) -> str:
    out = io.StringIO()
    call_command("natsos_gc", bucket, *args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


def leave_chunks(storage: NatsStorage, nuid: str, *chunks: bytes) -> None:
    """What a writer killed before its metadata leaves behind."""
    subject = CHUNK_SUBJECT.format(bucket=storage.config.bucket, nuid=nuid)

    async def publish(nc: Client) -> None:
        for chunk in chunks:
            await nc.request(subject, chunk, timeout=5)

    with_nats(storage, publish)


@pytest.fixture
def bucket(storage: NatsStorage) -> str:
    storage.save("kept.bin", ContentFile(random_bytes(2 * storage.config.chunk_size + 10)))
    return storage.config.bucket


def test_a_dry_run_reports_orphaned_chunks_and_removes_nothing(storage, bucket):
    leave_chunks(storage, "DEADWRITER1", b"a" * 1000, b"b" * 1000, b"c" * 10)
    leave_chunks(storage, "DEADWRITER2", b"d" * 5)
    before = stream_state(storage)["messages"]
    out = gc(bucket, "--min-age", "0")
    assert f"Found 2 orphaned uploads in bucket {bucket!r}: 4 chunks, 2.0 KiB (2015 bytes); run with --purge" in out
    assert stream_state(storage)["messages"] == before


def test_purge_removes_only_the_orphans(storage, bucket):
    leave_chunks(storage, "DEADWRITER", b"x" * 1000, b"y" * 500)
    out = gc(bucket, "--min-age", "0", "--purge")
    assert f"Purged 1 orphaned upload in bucket {bucket!r}: 2 chunks, 1.5 KiB (1500 bytes); 2 messages removed" in out
    assert stream_state(storage)["messages"] == 3 + 1  # kept.bin's chunks and metadata
    with storage.open("kept.bin") as f:
        assert len(f.read()) == 2 * storage.config.chunk_size + 10  # read() checks the digest
    assert "Found 0 orphaned uploads" in gc(bucket, "--min-age", "0")


def test_verbosity_2_lists_each_orphaned_upload(storage, bucket):
    leave_chunks(storage, "DEADWRITER", b"x" * 100)
    out = gc(bucket, "--min-age", "0", "--verbosity", "2")
    assert f"$O.{bucket}.C.DEADWRITER  1 chunks  100 bytes  idle 0:0" in out


def test_an_upload_in_progress_is_never_touched(storage, bucket):
    size = 3 * storage.config.chunk_size
    with storage.open("late.bin", "wb") as f:
        f.write(random_bytes(size))
        f.flush()  # its chunks are on their way, its metadata not yet
        out = gc(bucket, "--purge")  # the default age: an hour
    assert "Purged 0 orphaned uploads" in out
    assert storage.size("late.bin") == size
    assert len(storage.open("late.bin").read()) == size


def test_chunks_of_a_deleted_object_whose_purge_failed_are_orphans(storage, bucket):
    storage.save("gone.bin", ContentFile(b"z" * 700))
    info = storage.info("gone.bin")
    meta = {**info.raw, "deleted": True, "size": 0, "chunks": 0}
    subject = META_SUBJECT.format(bucket=bucket, key=encode_key("gone.bin"))

    async def delete_without_purge(nc: Client) -> None:
        await nc.request(subject, json.dumps(meta).encode(), timeout=5, headers={"Nats-Rollup": "sub"})

    with_nats(storage, delete_without_purge)
    assert not storage.exists("gone.bin")
    assert "Purged 1 orphaned upload" in gc(bucket, "--min-age", "0", "--purge")
    assert storage.exists("kept.bin")


def test_ages_take_units_and_bad_ones_are_refused(bucket):
    assert "Found 0" in gc(bucket, "--min-age", "90s")
    assert "Found 0" in gc(bucket, "--min-age", "2d")
    with pytest.raises(CommandError, match="'soon' is not an age"):
        gc(bucket, "--min-age", "soon")


def test_an_unknown_bucket_is_a_clear_error(bucket_name):
    with pytest.raises(CommandError, match=f"bucket {bucket_name!r} does not exist"):
        gc(bucket_name)
