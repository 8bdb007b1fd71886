"""What a save costs on the wire: no question before it, one round trip for an object of one chunk; nor before
a delete, a metadata update or a replacement of what this process wrote or read."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import pytest
from django.core.files.base import ContentFile, File

from natsstorage import NatsStorage
from natsstorage.buckettools import BucketTools
from natsstorage.exceptions import BucketFull

from .helpers import MiB, random_bytes, stream_state, with_nats


@contextmanager
def bucket_requests(storage) -> Iterator[list[str]]:
    """What the storage sends about its bucket, as the server sees it, in order: "chunk" and "metadata"
    (publishes), "lookup" (a get of one message, direct or from the stream's leader), else the API request's
    name ("STREAM.PURGE"). Filled in when the block ends."""
    seen: list[str] = []
    bucket, stream = storage.config.bucket, f"OBJ_{storage.config.bucket}"

    def kind(subject: str) -> str:
        if subject.startswith(f"$O.{bucket}."):
            return {"C": "chunk", "M": "metadata"}[subject.split(".")[2]]
        if subject.startswith(f"$JS.API.DIRECT.GET.{stream}"):  # the subject asked for in the request, or after it
            return "lookup"
        request = subject.removeprefix("$JS.API.").removesuffix(f".{stream}")
        return "lookup" if request == "STREAM.MSG.GET" else request

    async def subscribe(nc):
        async def note(msg):
            seen.append(kind(msg.subject))

        api = [f"$JS.API.{tokens}.{stream}" for tokens in ("*", "*.*", "*.*.*")]  # STREAM.INFO, STREAM.MSG.GET...
        subjects = [f"$O.{bucket}.>", *api, f"$JS.API.DIRECT.GET.{stream}.>"]
        return [await nc.subscribe(subject, cb=note) for subject in subjects]

    storage.exists("warm-up")  # the bucket made, before counting
    subscriptions = with_nats(storage, subscribe)
    requests: list[str] = []
    try:
        yield requests
    finally:

        async def unsubscribe(nc):
            await nc.flush()  # what was sent before this is delivered before its answer
            for subscription in subscriptions:
                await subscription.unsubscribe()

        with_nats(storage, unsubscribe)
        requests.extend(seen)


@contextmanager
def metadata_lookups(storage) -> Iterator[list[str]]:
    """Every request for a message of the storage's stream (direct or from its leader), as the server sees it."""
    lookups: list[str] = []
    with bucket_requests(storage) as requests:
        yield lookups
    lookups.extend(request for request in requests if request == "lookup")


def test_a_save_under_a_free_name_asks_nothing_first(storage):
    with metadata_lookups(storage) as lookups:
        storage.save("new.txt", ContentFile(b"fresh"))
        storage.save("big/new.bin", ContentFile(random_bytes(3 * storage.config.chunk_size)))
    assert lookups == []
    assert storage.open("new.txt").read() == b"fresh"


def test_a_taken_name_still_gets_djangos_alternative_within_max_length(storage):
    storage.save("report.pdf", ContentFile(b"one"))
    second = storage.save("report.pdf", ContentFile(b"two"), max_length=20)
    assert second != "report.pdf" and second.startswith("report_") and len(second) <= 20
    assert storage.open("report.pdf").read() == b"one"
    assert storage.open(second).read() == b"two"


def test_a_deleted_name_is_reused_as_it_is(storage):
    storage.save("again.txt", ContentFile(b"1"))
    storage.delete("again.txt")
    assert storage.save("again.txt", ContentFile(b"2")) == "again.txt"  # its deletion marker is replaced
    assert storage.open("again.txt").read() == b"2"


def test_a_name_deleted_here_is_written_again_asking_nothing_first(storage):
    # The idiom of projects that overwrite: delete, then save under the same name.
    storage.save("avatar.png", ContentFile(b"old"))
    with metadata_lookups(storage) as lookups:
        storage.delete("avatar.png")
        assert storage.save("avatar.png", ContentFile(b"new")) == "avatar.png"
    assert lookups == []
    assert storage.open("avatar.png").read() == b"new"


def test_a_metadata_update_or_a_delete_of_what_was_written_here_asks_nothing_first(storage):
    storage.save("notes.txt", ContentFile(b"notes"))
    with metadata_lookups(storage) as lookups:
        updated = storage.update_meta("notes.txt", description="kept", metadata={"by": "us"})
        assert storage.delete("notes.txt") is None
    assert lookups == []
    assert (updated.description, dict(updated.metadata)) == ("kept", {"by": "us"})
    assert not storage.exists("notes.txt")


def test_a_metadata_update_lands_on_what_another_writer_changed_meanwhile(make_storage):
    here, there = make_storage(), make_storage()
    here.save("shared.txt", ContentFile(b"data"))
    there.update_meta("shared.txt", metadata={"by": "them"})
    updated = here.update_meta("shared.txt", description="ours")  # not over the version here remembers
    assert (updated.description, dict(updated.metadata)) == ("ours", {"by": "them"})
    info = BucketTools(there).object_info("shared.txt")
    assert (info.description, dict(info.metadata)) == ("ours", {"by": "them"})


def test_a_replacement_of_a_version_written_here_asks_nothing_first(make_storage):
    storage = make_storage(file_overwrite=True)
    storage.save("config.json", ContentFile(b"{}"))
    with metadata_lookups(storage) as lookups:
        storage.save("config.json", ContentFile(b'{"a": 1}'))
    assert lookups == []
    assert storage.open("config.json").read() == b'{"a": 1}'
    assert BucketTools(storage).status().objects == 1  # (once the purges under way are done)
    assert stream_state(storage)["messages"] == 2  # the old version's chunk purged: one chunk, one metadata


def test_what_another_writer_changed_meanwhile_is_what_a_delete_or_a_save_here_finds(make_storage):
    here, there = make_storage(), make_storage(file_overwrite=True)  # two processes, each remembering its own
    here.save("shared.txt", ContentFile(b"mine"))
    there.save("shared.txt", ContentFile(b"theirs"))
    here.delete("shared.txt")  # the version there wrote, not the one here remembers
    assert not here.exists("shared.txt") and not there.exists("shared.txt")
    there.save("shared.txt", ContentFile(b"again"))  # over the deletion, not the version there remembers
    assert here.open("shared.txt").read() == b"again"

    here.save("reused.txt", ContentFile(b"1"))
    here.delete("reused.txt")
    there.save("reused.txt", ContentFile(b"theirs"))
    mine = here.save("reused.txt", ContentFile(b"mine"))
    assert mine != "reused.txt"  # taken again since the delete here: Django's alternative name
    assert there.open("reused.txt").read() == b"theirs" and here.open(mine).read() == b"mine"


def test_a_name_another_process_holds_costs_one_lookup_and_its_alternative_none(make_storage):
    here, there = make_storage(), make_storage()  # two processes, each remembering its own
    there.save("report.pdf", ContentFile(b"theirs"))
    with bucket_requests(here) as requests:
        mine = here.save("report.pdf", ContentFile(b"mine"))
    assert mine != "report.pdf"
    # The metadata refused (the name is taken), the lookup that says by what, the alternative's metadata:
    # Django's checks of the names it tries ask nothing, the commit's compare-and-set answers.
    assert requests == ["chunk", "metadata", "lookup", "metadata"]
    assert here.open(mine).read() == b"mine" and there.open("report.pdf").read() == b"theirs"


def test_a_replacement_of_a_version_another_process_wrote_asks_once(make_storage):
    here, there = make_storage(file_overwrite=True), make_storage()
    there.save("config.json", ContentFile(b"{}"))
    with bucket_requests(here) as requests:
        here.save("config.json", ContentFile(b'{"a": 1}'))
    # The version there is asked for, then the metadata goes over it by compare-and-set; its chunk's purge
    # follows in the background.
    assert sorted(request for request in requests if request != "STREAM.PURGE") == ["chunk", "lookup", "metadata"]
    assert there.open("config.json").read() == b'{"a": 1}'
    assert BucketTools(here).status().objects == 1  # (once the purges under way are done)
    assert stream_state(here)["messages"] == 2  # the old version's chunk purged: one chunk, one metadata


class Numbered(NatsStorage):
    """A subclass whose alternative names are numbered in turn, as some projects name them."""

    def get_alternative_name(self, file_root, file_ext):
        self.alternatives = getattr(self, "alternatives", 0) + 1
        return f"{file_root}_{self.alternatives}{file_ext}"


def test_an_alternative_name_another_process_holds_is_found_taken_by_its_commit(make_storage, bucket_name):
    there = make_storage()
    there.save("report.pdf", ContentFile(b"first"))
    there.save("report_1.pdf", ContentFile(b"second"))
    storage = Numbered(bucket_name)
    try:
        with bucket_requests(storage) as requests:
            assert storage.save("report.pdf", ContentFile(b"third")) == "report_2.pdf"
        assert requests == ["chunk", "metadata", "lookup", "metadata", "lookup", "metadata"]
        assert [there.open(name).read() for name in ("report.pdf", "report_1.pdf", "report_2.pdf")] == [
            b"first",
            b"second",
            b"third",
        ]
    finally:
        BucketTools(storage).destroy()


class Dated(NatsStorage):
    """A subclass that names files its own way, as projects do."""

    def get_available_name(self, name, max_length=None):
        root, dot, ext = name.rpartition(".")
        return super().get_available_name(f"{root}-2026{dot}{ext}", max_length)


def test_a_subclass_override_of_get_available_name_still_runs(bucket_name):
    storage = Dated(bucket_name)
    try:
        assert storage.save("photo.jpg", ContentFile(b"a")) == "photo-2026.jpg"
        taken = storage.save("photo.jpg", ContentFile(b"b"))
        assert taken.startswith("photo-2026_") and taken.endswith(".jpg")
        assert storage.open(taken).read() == b"b"
    finally:
        BucketTools(storage).destroy()


def test_a_chunk_the_bucket_refuses_never_gets_metadata(make_storage):
    # The metadata of a one-chunk object is sent before the chunk's acknowledgement, on the
    # condition that the stream's last message is that chunk: here the chunk does not fit, the
    # (smaller) metadata would, and must not land naming a chunk that is not there.
    storage = make_storage(max_bytes=4096)
    storage.save("small.txt", ContentFile(b"fits"))
    before = stream_state(storage)["messages"]
    with pytest.raises(BucketFull):
        storage.save("big.bin", ContentFile(random_bytes(6000)))
    assert not storage.exists("big.bin")
    assert stream_state(storage)["messages"] == before
    assert storage.open("small.txt").read() == b"fits"


def test_threads_saving_side_by_side_each_land_whole(storage):
    # Their chunks and metadata interleave on the stream: a metadata message whose chunk is no longer
    # the stream's last is sent again, never lost and never doubled.
    def save(i: int) -> str:
        return storage.save(f"t/{i}.txt", ContentFile(f"object {i}".encode() * (i + 1)))

    with ThreadPoolExecutor(16) as pool:
        names = list(pool.map(save, range(160)))
    assert names == [f"t/{i}.txt" for i in range(160)]
    for i, name in enumerate(names):
        assert storage.open(name).read() == f"object {i}".encode() * (i + 1)
    assert stream_state(storage)["messages"] == 2 * 160  # a chunk and a metadata message each


@pytest.mark.parametrize("size", [300 * 1024, 1024 * 1024])
def test_a_piece_hashed_by_the_callers_thread_carries_its_digest_and_reads_back(storage, size):
    data = random_bytes(size)  # one piece, big enough to be hashed beside its upload
    name = storage.save("hashed.bin", ContentFile(data))
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).decode()
    assert storage.info(name).digest == f"SHA-256={digest}"
    assert storage.open(name).read() == data
    taken = storage.save("hashed.bin", ContentFile(data))  # a taken name: the digest goes to the alternative
    assert taken != name and storage.info(taken).digest == f"SHA-256={digest}"


def test_text_is_saved_in_pieces_of_its_encoding(storage):
    text = "ünïcödé " * 200_000  # more than a piece once encoded
    name = storage.save("text.txt", ContentFile(text))
    assert storage.open(name).read() == text.encode()


def test_a_file_whose_chunks_takes_no_size_is_saved_through_its_own_chunks(storage):
    class Generated(File):
        def chunks(self):  # as some File subclasses (and Django's own tests) write it
            yield from (b"a" * 700_000, b"b" * 700_000)

    name = storage.save("generated.bin", Generated(None, name="generated.bin"))
    assert storage.open(name).read() == b"a" * 700_000 + b"b" * 700_000
    patched = ContentFile(b"ignored")
    patched.chunks = lambda: iter([b"what chunks() gives"])  # replaced on the instance, as Django's tests do
    assert storage.open(storage.save("patched.bin", patched)).read() == b"what chunks() gives"


def test_content_giving_strided_views_leaves_the_shared_connection_working(storage):
    """A view that is not one contiguous run of bytes is copied before it is sent: the connection stays well."""

    class Strided(File):
        def chunks(self, chunk_size=None):
            yield memoryview(random_bytes(2 * MiB))[::2]

    try:
        name = storage.save("strided.bin", Strided(None, name="strided.bin"))
    except BufferError:  # hashlib takes only contiguous buffers: the save may refuse it, cleanly
        name = None
    if name is not None:
        assert storage.size(name) == MiB
    assert storage.open(storage.save("after.bin", ContentFile(b"after"))).read() == b"after"
