"""The Storage API, used the way Django code uses it."""

from __future__ import annotations

import base64
import errno
import hashlib
import json
from datetime import UTC, datetime

import pytest
from django.core.files.base import ContentFile, File
from django.core.files.uploadedfile import SimpleUploadedFile

from natsstorage import NatsStorage
from natsstorage.exceptions import CorruptObject
from natsstorage.transfer import HASH_BESIDE_BYTES

from .helpers import MiB, corrupt_last_byte, random_bytes, stream_state, with_nats
from .test_interop import link_to


def test_save_returns_the_name_and_open_reads_it_back(storage):
    name = storage.save("configs/app.yaml", ContentFile(b"debug: false\n"))
    assert name == "configs/app.yaml"
    with storage.open(name) as f:
        assert f.read() == b"debug: false\n"


def test_a_ten_mib_file_round_trips_through_read_chunks_and_read_n(storage):
    data = random_bytes(10 * MiB + 123)
    name = storage.save("big.bin", ContentFile(data))
    with storage.open(name) as f:
        assert f.size == len(data)
        assert f.read() == data
    with storage.open(name) as f:
        assert b"".join(f.chunks(chunk_size=300_000)) == data
    with storage.open(name) as f:
        parts = []
        while part := f.read(1_000_000):
            parts.append(part)
        assert b"".join(parts) == data


def test_an_object_larger_than_a_chunk_is_stored_as_many_chunk_messages(storage):
    storage.save("two-and-a-bit.bin", ContentFile(random_bytes(2 * storage.config.chunk_size + 1)))
    assert stream_state(storage)["messages"] == 3 + 1  # three chunks and one metadata message


def test_an_empty_file_round_trips(storage):
    name = storage.save("empty.txt", ContentFile(b""))
    assert storage.exists(name)
    assert storage.size(name) == 0
    with storage.open(name) as f:
        assert f.read() == b""
        assert list(f.chunks()) == []


def test_text_content_is_stored_as_utf8(storage):
    name = storage.save("hello.txt", ContentFile("héllo"))
    assert storage.open(name).read() == "héllo".encode()


def test_a_taken_name_gets_an_alternative_name(storage):
    first = storage.save("report.pdf", ContentFile(b"one"))
    second = storage.save("report.pdf", ContentFile(b"two"))
    assert first == "report.pdf"
    assert second != first and second.startswith("report_") and second.endswith(".pdf")
    assert storage.open(first).read() == b"one"
    assert storage.open(second).read() == b"two"


def test_save_asks_a_subclass_that_overrides_exists(storage):
    """As Django's get_available_name does: a name the override says is taken gets an alternative."""

    class Reserving(NatsStorage):
        def exists(self, name: str) -> bool:
            return name == "reserved.txt" or super().exists(name)

    reserving = Reserving(storage.config.bucket)
    name = reserving.save("reserved.txt", ContentFile(b"x"))
    assert name != "reserved.txt" and name.startswith("reserved_")
    assert not storage.exists("reserved.txt")
    assert reserving.save("free.txt", ContentFile(b"1")) == "free.txt"
    assert reserving.save("free.txt", ContentFile(b"2")).startswith("free_")


def test_file_overwrite_replaces_the_object_and_purges_the_old_chunks(make_storage):
    storage = make_storage(file_overwrite=True)
    storage.save("a.bin", ContentFile(random_bytes(300_000)))
    assert storage.save("a.bin", ContentFile(b"new")) == "a.bin"
    assert storage.open("a.bin").read() == b"new"
    assert stream_state(storage)["messages"] == 2  # one chunk, one metadata message


def test_exists_size_and_delete(storage):
    assert not storage.exists("a.txt")
    storage.save("a.txt", ContentFile(b"abc"))
    assert storage.exists("a.txt")
    assert storage.size("a.txt") == 3
    storage.delete("a.txt")
    assert not storage.exists("a.txt")
    assert stream_state(storage)["messages"] == 1  # only the delete marker is left


def test_deleting_a_missing_name_is_not_an_error(storage):
    storage.delete("never-saved.txt")


def test_a_deleted_name_can_be_saved_again(storage):
    storage.save("again.txt", ContentFile(b"1"))
    storage.delete("again.txt")
    assert storage.save("again.txt", ContentFile(b"2")) == "again.txt"
    assert storage.open("again.txt").read() == b"2"


@pytest.mark.parametrize("method", ["open", "size", "get_modified_time", "get_created_time", "info"])
def test_missing_names_raise_file_not_found_with_errno_naming_the_file_and_bucket(storage, method):
    """As FileSystemStorage and InMemoryStorage raise it: ENOENT, the name as ``filename``."""
    with pytest.raises(FileNotFoundError) as raised:
        getattr(storage, method)("dir/nope.txt")
    assert (raised.value.errno, raised.value.filename) == (errno.ENOENT, "dir/nope.txt")
    assert str(raised.value) == (
        f"[Errno 2] No such file or directory in the NATS bucket '{storage.config.bucket}': 'dir/nope.txt'"
    )


def test_a_link_to_a_missing_object_raises_file_not_found_with_errno(storage):
    storage.save("here.txt", ContentFile(b"x"))
    link_to(storage, "gone.txt", storage.config.bucket, "nothing-here.txt")
    with pytest.raises(FileNotFoundError, match="links to 'nothing-here.txt'") as raised:
        storage.open("gone.txt")
    assert (raised.value.errno, raised.value.filename) == (errno.ENOENT, "gone.txt")


def test_listdir_splits_directories_and_files_on_slashes(storage):
    for name in ["top.txt", "docs/a.txt", "docs/b.txt", "docs/sub/c.txt", "img/x.png"]:
        storage.save(name, ContentFile(b"x"))
    assert storage.listdir("") == (["docs", "img"], ["top.txt"])
    assert storage.listdir("docs") == (["sub"], ["a.txt", "b.txt"])
    assert storage.listdir("docs/") == (["sub"], ["a.txt", "b.txt"])
    assert storage.listdir("docs/sub") == ([], ["c.txt"])
    assert storage.listdir("nothing-here") == ([], [])


def test_listdir_of_an_empty_bucket_is_empty(storage):
    assert storage.listdir("") == ([], [])


def test_listdir_leaves_out_deleted_objects(storage):
    storage.save("keep.txt", ContentFile(b"x"))
    storage.save("gone.txt", ContentFile(b"x"))
    storage.delete("gone.txt")
    assert storage.listdir("") == ([], ["keep.txt"])


def test_modified_and_created_times_are_aware_and_recent(storage):
    before = datetime.now(UTC)
    storage.save("t.txt", ContentFile(b"x"))
    modified = storage.get_modified_time("t.txt")
    assert modified.tzinfo is not None
    assert abs((modified - before).total_seconds()) < 5
    assert storage.get_created_time("t.txt") == modified


def test_times_are_naive_local_without_use_tz(storage, settings):
    storage.save("t.txt", ContentFile(b"x"))
    settings.USE_TZ = False
    modified = storage.get_modified_time("t.txt")
    assert modified.tzinfo is None
    assert abs((modified - datetime.now()).total_seconds()) < 5


def test_path_is_not_available(storage):
    with pytest.raises(NotImplementedError):
        storage.path("a.txt")


@pytest.mark.parametrize("mode", ["x+b", "rw", "rbt", "q", "r++"])
def test_modes_that_are_not_open_modes_are_refused_clearly(storage, mode):
    storage.save("a.txt", ContentFile(b"x"))
    with pytest.raises(ValueError, match=r"Use 'rb', 'r', 'wb', 'w', 'xb' and 'x' \(streamed\), or 'r\+b', 'w\+b'"):
        storage.open("a.txt", mode)


def test_content_type_comes_from_the_upload_then_from_the_name(storage):
    upload = SimpleUploadedFile("photo.bin", b"\x89PNG", content_type="image/png")
    storage.save("photo.bin", upload)
    storage.save("notes.txt", ContentFile(b"x"))
    storage.save("mystery", ContentFile(b"x"))
    assert storage.info("photo.bin").content_type == "image/png"
    assert storage.info("notes.txt").content_type == "text/plain; charset=utf-8"  # its bytes are UTF-8
    assert storage.info("mystery").content_type == "application/octet-stream"
    assert storage.open("photo.bin").content_type == "image/png"


def test_info_carries_the_sha256_digest_of_the_data(storage):
    data = random_bytes(storage.config.chunk_size + 1000)
    storage.save("d.bin", ContentFile(data))
    info = storage.info("d.bin")
    assert info.sha256 == hashlib.sha256(data).digest()
    assert info.digest.startswith("SHA-256=")
    assert (info.size, info.chunks, info.chunk_size) == (len(data), 2, storage.config.chunk_size)


def test_update_meta_changes_description_and_headers_without_rewriting_data(storage):
    data = random_bytes(300_000)
    storage.save("m.bin", ContentFile(data))
    before = stream_state(storage)
    info = storage.update_meta("m.bin", description="nightly export", headers={"X-Team": "data"})
    assert info.description == "nightly export"
    assert info.headers["X-Team"] == ["data"]
    after = stream_state(storage)
    assert after["messages"] == before["messages"]  # the metadata message was rolled up, no chunk added
    assert storage.info("m.bin").description == "nightly export"
    assert storage.open("m.bin").read() == data


def test_update_meta_of_a_missing_name_raises_file_not_found(storage):
    with pytest.raises(FileNotFoundError):
        storage.update_meta("nope", description="x")


def test_seeking_then_reading(storage):
    data = random_bytes(700_000)
    storage.save("s.bin", ContentFile(data))
    with storage.open("s.bin") as f:
        f.seek(500_000)
        assert f.read(10) == data[500_000:500_010]
        f.seek(5)
        assert f.read(10) == data[5:15]
        f.seek(-3, 2)
        assert f.read() == data[-3:]


def test_a_closed_file_can_be_reopened(storage):
    storage.save("r.txt", ContentFile(b"again"))
    f = storage.open("r.txt")
    assert f.read() == b"again"
    f.close()
    with f.open():
        assert f.read() == b"again"


def test_a_corrupted_chunk_is_detected_by_its_digest(storage):
    storage.save("c.bin", ContentFile(random_bytes(2 * storage.config.chunk_size + 1000)))
    corrupt_last_byte(storage, "c.bin")
    with storage.open("c.bin") as f, pytest.raises(CorruptObject, match="SHA-256 digest does not match"):
        f.read()


def test_chunks_hashed_beside_the_loop_are_checked_too(make_storage):
    # Chunks this big are hashed on a thread of their own while the next arrives.
    storage = make_storage(chunk_size=HASH_BESIDE_BYTES)
    data = random_bytes(5 * HASH_BESIDE_BYTES + 1000)
    storage.save("good.bin", ContentFile(data))
    storage.save("bad.bin", ContentFile(data))
    corrupt_last_byte(storage, "bad.bin")
    with storage.open("good.bin") as f:
        assert f.read() == data
    with storage.open("bad.bin") as f, pytest.raises(CorruptObject, match="SHA-256 digest does not match"):
        f.read()


def test_a_corrupted_one_chunk_object_is_detected_too(storage):
    storage.save("small.bin", ContentFile(random_bytes(1000)))
    corrupt_last_byte(storage, "small.bin")
    with storage.open("small.bin") as f, pytest.raises(CorruptObject, match="SHA-256 digest does not match"):
        f.read()


@pytest.mark.parametrize("chunks", [1, 3])
def test_missing_chunks_are_reported_not_waited_for(storage, chunks):
    storage.save("m.bin", ContentFile(random_bytes((chunks - 1) * storage.config.chunk_size + 1000)))
    info = storage.info("m.bin")
    subject = f"$O.{storage.config.bucket}.C.{info.nuid}"

    async def purge(nc):
        await nc.request(
            f"$JS.API.STREAM.PURGE.OBJ_{storage.config.bucket}", f'{{"filter": "{subject}"}}'.encode(), timeout=5
        )

    with_nats(storage, purge)
    with storage.open("m.bin") as f, pytest.raises(CorruptObject, match=f"0 of the {chunks} chunks to read"):
        f.read()


def test_saving_from_a_plain_file_object(storage, tmp_path):
    path = tmp_path / "local.bin"
    data = random_bytes(400_000)
    path.write_bytes(data)
    with path.open("rb") as handle:
        name = storage.save("from-disk.bin", File(handle))
    assert storage.open(name).read() == data


def test_seeking_near_the_end_of_a_large_object_starts_at_its_chunk(storage):
    data = random_bytes(5 * MiB)
    storage.save("big.bin", ContentFile(data))
    chunks = storage.info("big.bin").chunks
    with storage.open("big.bin") as f:
        f.seek(len(data) - 1000)
        assert f.read() == data[-1000:]
        assert f.file.raw.download.first_chunk == chunks - 1  # one chunk fetched, not 40
        f.seek(1_000_000)
        assert f.read(5) == data[1_000_000:1_000_005]
        assert f.file.raw.download.first_chunk == 1_000_000 // storage.config.chunk_size


def test_seeking_in_an_object_with_uneven_chunks_starts_at_the_right_chunk(storage):
    data = random_bytes(400_000)
    storage.save("placeholder", ContentFile(b""))

    async def put_uneven(nc):
        # Chunks of 100, 150 and 150 kB, interleaved with another subject's messages.
        subject = f"$O.{storage.config.bucket}.C.uneven"
        for start, end in [(0, 100_000), (100_000, 250_000), (250_000, 400_000)]:
            await nc.request(subject, data[start:end], timeout=5)
            await nc.request(f"$O.{storage.config.bucket}.C.other", b"noise", timeout=5)
        meta = {
            "name": "uneven.bin",
            "bucket": storage.config.bucket,
            "nuid": "uneven",
            "size": len(data),
            "chunks": 3,
            "mtime": "2026-01-01T00:00:00Z",
            "digest": "SHA-256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).decode(),
        }
        key = base64.urlsafe_b64encode(b"uneven.bin").decode()
        await nc.request(
            f"$O.{storage.config.bucket}.M.{key}", json.dumps(meta).encode(), headers={"Nats-Rollup": "sub"}, timeout=5
        )

    with_nats(storage, put_uneven)
    assert storage.open("uneven.bin").read() == data
    with storage.open("uneven.bin") as f:
        f.seek(260_000)
        assert f.read(1000) == data[260_000:261_000]
        assert f.file.raw.download.first_chunk == 2
        f.seek(120_000)
        assert f.read() == data[120_000:]
        assert f.file.raw.download.first_chunk == 1
