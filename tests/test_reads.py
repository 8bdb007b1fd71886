"""Reading objects: batched direct gets where the server and the bucket answer them, a consumer where not.

What is read must be right whichever way it came, so these tests also watch the
JetStream API requests the storage makes, to tell the ways apart: a plain
subscription beside the server's own responders sees every request (where the
server has none, as for direct gets on a stream without direct access, such a
subscription would turn the "no responders" answer into silence).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import tracemalloc
from collections.abc import Iterator

import pytest
from django.core.files.base import ContentFile
from nats.aio.client import Client, ServerVersion
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from natsstorage import NatsStorage
from natsstorage.exceptions import CorruptObject
from natsstorage.jetstream import DIRECT_GETS_REFUSED_SINCE
from natsstorage.objectstore import BucketConfig

from .helpers import MiB, corrupt_last_byte, jetstream, put_foreign, random_bytes, steal_a_message, with_nats

CHUNK = 64 * 1024  # small chunks: many chunks without many bytes


@contextlib.contextmanager
def requests(storage: NatsStorage, api: str) -> Iterator[list[Msg]]:
    """The requests made meanwhile to the JetStream ``api`` (``CONSUMER.CREATE``, ``DIRECT.GET``) of the bucket."""
    subject = f"$JS.API.{api}.OBJ_{storage.config.bucket}"
    subs: list[Subscription] = []
    seen: list[Msg] = []

    async def subscribe(nc: Client) -> None:
        subs.extend([await nc.subscribe(subject), await nc.subscribe(f"{subject}.>")])

    async def collect(nc: Client) -> None:
        await nc.flush()  # the server has passed on every request sent before this
        for sub in subs:
            while sub.pending_msgs:
                seen.append(await sub.next_msg())
            await sub.unsubscribe()

    with_nats(storage, subscribe)
    try:
        yield seen
    finally:
        with_nats(storage, collect)


def batches(gets: list[Msg]) -> list[int]:
    """How many messages each batched direct get asked for."""
    return [body["batch"] for body in (json.loads(msg.data) for msg in gets) if "batch" in body]


def turn_off_direct_access(storage: NatsStorage) -> None:
    """What another client can do at any time: after it, the stream's own direct gets answer 503."""
    config = {**BucketConfig().stream_config(storage.config.bucket), "allow_direct": False}
    assert "error" not in jetstream(storage, "STREAM.UPDATE", config)


@pytest.mark.needs_server("2.12", "batched direct gets")
def test_an_object_of_a_few_chunks_is_read_in_one_batch_without_a_consumer(make_storage):
    storage = make_storage(chunk_size=CHUNK)
    data = random_bytes(5 * CHUNK - 100)
    name = storage.save("five.bin", ContentFile(data))
    with requests(storage, "CONSUMER.CREATE") as created, requests(storage, "DIRECT.GET") as gets:
        with storage.open(name) as f:
            assert f.read() == data
        with storage.open(name) as f:
            assert b"".join(f.chunks(chunk_size=10_000)) == data
    assert created == []
    assert batches(gets) == [5, 5]


def test_an_object_larger_than_a_window_is_read_through_a_consumer(make_storage):
    # Past a window a consumer is faster: the server copies a direct get's messages
    # once more, and each batch has to wait for the last one's end.
    storage = make_storage(chunk_size=CHUNK, window=4)
    data = random_bytes(9 * CHUNK)
    name = storage.save("nine.bin", ContentFile(data))
    with requests(storage, "CONSUMER.CREATE") as created:
        assert storage.open(name).read() == data
    assert len(created) == 1


def test_read_of_a_whole_object_holds_it_once_not_its_chunks_beside_it(storage):
    data = random_bytes(32 * MiB)
    name = storage.save("big.bin", ContentFile(data))
    digest = hashlib.sha256(data).digest()
    del data
    with storage.open(name) as f:
        tracemalloc.start()
        try:
            read = f.read()
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert hashlib.sha256(read).digest() == digest
    assert peak < 1.5 * len(read), f"{peak / MiB:.1f} MiB at most, for {len(read) / MiB:.0f} MiB read"


@pytest.mark.needs_server("2.12", "batched direct gets")
def test_chunks_larger_than_the_metadata_says_come_in_batches_of_at_most_a_window_of_bytes(storage):
    """Metadata need not name its chunk size (``options.max_chunk_size``): a read then
    assumes the clients' 128 KiB, and what bounds a batch is its ``max_bytes`` (8 MiB)."""
    data = random_bytes(10 * MiB)  # twenty chunks of 512 KiB
    name = storage.save("big.bin", ContentFile(data))
    raw = {key: value for key, value in storage.info(name).raw.items() if key != "options"}
    meta = f"$O.{storage.config.bucket}.M.{base64.urlsafe_b64encode(name.encode()).decode()}"
    with_nats(storage, lambda nc: nc.request(meta, json.dumps(raw).encode(), headers={"Nats-Rollup": "sub"}))
    assert storage.info(name).chunk_size is None
    with requests(storage, "CONSUMER.CREATE") as created, requests(storage, "DIRECT.GET") as gets:
        assert storage.open(name).read() == data
    assert created == []
    assert batches(gets) == [20, 4]  # the first ended at 16 chunks, 8 MiB


def test_a_chunk_sent_that_never_arrived_is_asked_for_again_not_taken_for_corruption(make_storage):
    storage = make_storage(chunk_size=CHUNK, window=4)
    data = random_bytes(40 * CHUNK)
    name = storage.save("forty.bin", ContentFile(data))
    with storage.open(name) as f:
        head = f.read(CHUNK)  # the read's consumer is made, its first chunks asked for
        stolen = steal_a_message(storage)  # as if one it sends next got lost in a reconnect
        rest = f.read()
    with_nats(storage, lambda nc: stolen.next_msg(timeout=5))
    assert head + rest == data


def test_a_seek_reads_from_the_chunk_it_lands_in(make_storage, server_version):
    storage = make_storage(chunk_size=CHUNK)
    data = random_bytes(6 * CHUNK + 7)
    name = storage.save("seek.bin", ContentFile(data))
    with requests(storage, "CONSUMER.CREATE") as created, storage.open(name) as f:
        f.seek(4 * CHUNK + 3)
        assert f.read() == data[4 * CHUNK + 3 :]
        f.seek(10)
        assert f.read(100) == data[10:110]
    if server_version >= (2, 12):  # batched direct gets: no consumer at all
        assert created == []
    else:  # a consumer from the chunk each seek landed in, not from the first
        starts = [json.loads(msg.data)["config"].get("opt_start_seq") for msg in created]
        seqs = chunk_seqs(storage, name)
        assert starts == [seqs[4], seqs[0]]


def test_a_corrupt_chunk_is_reported(make_storage):
    storage = make_storage(chunk_size=CHUNK)
    name = storage.save("flip.bin", ContentFile(random_bytes(3 * CHUNK + 5)))
    corrupt_last_byte(storage, name)
    with pytest.raises(CorruptObject, match="SHA-256 digest does not match"), storage.open(name) as f:
        f.read()


def test_a_missing_chunk_is_reported(make_storage):
    storage = make_storage(chunk_size=CHUNK)
    name = storage.save("holed.bin", ContentFile(random_bytes(5 * CHUNK)))
    jetstream(storage, "STREAM.MSG.DELETE", {"seq": chunk_seqs(storage, name)[2]})
    with pytest.raises(CorruptObject, match="4 of the 5 chunks"), storage.open(name) as f:
        f.read()


def test_a_bucket_without_direct_access_is_read_through_a_consumer(make_storage, bucket_name):
    storage = make_storage(chunk_size=CHUNK)
    # Made by another client before this storage's first look: a stream that answers no direct gets.
    config = {**BucketConfig().stream_config(bucket_name), "allow_direct": False}
    assert "error" not in jetstream(storage, "STREAM.CREATE", config)
    one = storage.save("one.txt", ContentFile(b"one chunk"))
    data = random_bytes(3 * CHUNK + 1)
    three = storage.save("three.bin", ContentFile(data))
    with requests(storage, "CONSUMER.CREATE") as created, requests(storage, "DIRECT.GET") as gets:
        assert storage.open(one).read() == b"one chunk"
        assert storage.open(three).read() == data
    assert len(created) == 1
    assert gets == []  # none asked: nats-server 2.9 leaves a direct get to such a stream unanswered, not even a 503


def test_direct_access_turned_off_after_the_first_look_is_read_through_a_consumer(make_storage):
    storage = make_storage(chunk_size=CHUNK)
    data = random_bytes(3 * CHUNK + 1)
    name = storage.save("three.bin", ContentFile(data))
    turn_off_direct_access(storage)
    with requests(storage, "CONSUMER.CREATE") as created:
        assert storage.open(name).read() == data
    assert len(created) == 1


def test_an_older_server_is_read_through_a_consumer(make_storage, monkeypatch):
    # No nats-server before 2.11 is at hand: this one says it is 2.10, as an older server's INFO would.
    monkeypatch.setattr(Client, "connected_server_version", property(lambda nc: ServerVersion("2.10.22")))
    storage = make_storage(chunk_size=CHUNK)
    data = random_bytes(3 * CHUNK + 1)
    name = storage.save("three.bin", ContentFile(data))
    with requests(storage, "CONSUMER.CREATE") as created, requests(storage, "DIRECT.GET") as gets:
        assert storage.open(name).read() == data
    assert len(created) == 1
    assert batches(gets) == []


@pytest.mark.needs_server("2.12", "batched direct gets")
def test_a_server_that_takes_a_batch_for_a_plain_direct_get_is_read_through_a_consumer(make_storage):
    storage = make_storage(chunk_size=CHUNK)
    data = random_bytes(3 * CHUNK + 1)
    name = storage.save("three.bin", ContentFile(data))
    with (
        direct_gets_answered_as(storage, name, ["2.10"]),
        requests(storage, "CONSUMER.CREATE") as created,
        requests(storage, "DIRECT.GET") as gets,
    ):
        assert storage.open(name).read() == data
    assert batches(gets) == [4]
    assert len(created) == 1


@pytest.mark.needs_server("2.12", "batched direct gets")
def test_a_later_batch_answered_by_an_older_server_leaves_the_rest_to_a_consumer(make_storage):
    storage = make_storage(chunk_size=CHUNK)
    data = random_bytes(5 * CHUNK)
    name = storage.save("five.bin", ContentFile(data))
    with (
        direct_gets_answered_as(storage, name, ["2.11:2", "2.10"]),
        requests(storage, "CONSUMER.CREATE") as created,
        requests(storage, "DIRECT.GET") as gets,
    ):
        assert storage.open(name).read() == data  # and the digest: no chunk missed or read twice at the seam
    assert batches(gets) == [5, 3]
    assert len(created) == 1


def chunk_seqs(storage: NatsStorage, name: str) -> list[int]:
    """The stream sequences of an object's chunks, in order."""
    subject = f"$O.{storage.config.bucket}.C.{storage.info(name).nuid}"
    seqs: list[int] = []
    while True:
        found = jetstream(storage, "STREAM.MSG.GET", {"seq": seqs[-1] + 1 if seqs else 0, "next_by_subj": subject})
        if "message" not in found:
            return seqs
        seqs.append(found["message"]["seq"])


@contextlib.contextmanager
def direct_gets_answered_as(storage: NatsStorage, name: str, versions: list[str]) -> Iterator[None]:
    """The bucket's direct gets answered as the nats-server ``versions`` would, a batch each, then as 2.10.

    A cluster being upgraded mixes versions, and any of its servers may answer a
    direct get. "2.11:k": a batch answered as 2.11 does when ``max_bytes`` ends it
    after k messages (``name``'s chunks say how many more there are); "2.10": taken
    for a plain direct get, one message without the batch's headers. The stream's
    own direct gets are turned off, so that only these answer.
    """
    stream = f"OBJ_{storage.config.bucket}"
    seqs = chunk_seqs(storage, name)
    turn_off_direct_access(storage)
    answers = iter(versions)

    async def respond(nc: Client) -> Subscription:
        async def answer(msg: Msg) -> None:
            request = json.loads(msg.data)
            version = next(answers, "2.10") if "batch" in request else "2.10"
            get = {key: value for key, value in request.items() if key in {"seq", "next_by_subj", "last_by_subj"}}
            previous = 0
            for _ in range(min(int(version.partition(":")[2] or 1), request.get("batch", 1))):
                reply = await nc.request(f"$JS.API.STREAM.MSG.GET.{stream}", json.dumps(get).encode())
                found = json.loads(reply.data)["message"]
                headers = {"Nats-Stream": stream, "Nats-Subject": found["subject"], "Nats-Sequence": str(found["seq"])}
                headers["Nats-Time-Stamp"] = found["time"]
                if version != "2.10":
                    headers["Nats-Num-Pending"] = str(len([seq for seq in seqs if seq > found["seq"]]))
                    headers["Nats-Last-Sequence"] = str(previous)
                await nc.publish(msg.reply, base64.b64decode(found.get("data", "")), headers=headers)
                previous, get["seq"] = found["seq"], found["seq"] + 1
            if version != "2.10":
                end = {"Status": "204", "Description": "EOB", "Nats-Last-Sequence": str(previous)}
                await nc.publish(msg.reply, b"", headers=end)

        return await nc.subscribe(f"$JS.API.DIRECT.GET.{stream}", cb=answer)

    responder = with_nats(storage, respond)
    try:
        yield
    finally:
        with_nats(storage, lambda nc: responder.unsubscribe())


# -- one-chunk objects written or read here: the chunk asked for beside the metadata ---------------


def test_an_object_written_here_is_read_with_its_chunk_asked_for_beside_its_metadata(storage, server_version):
    name = storage.save("seen.txt", ContentFile(b"mine"))
    put_foreign(storage, name, b"", deleted=True)  # another client deletes it (and leaves the chunk)
    # Asked of the stream leader where a direct get to a stream gone meanwhile would go unanswered.
    api = "DIRECT.GET" if server_version >= DIRECT_GETS_REFUSED_SINCE else "STREAM.MSG.GET"
    with requests(storage, api) as gets, pytest.raises(FileNotFoundError):
        storage.open(name)
    # The chunk was asked for before the metadata had answered that the object is gone.
    subjects = [json.loads(msg.data).get("next_by_subj") or json.loads(msg.data).get("last_by_subj") for msg in gets]
    assert sorted(subject.split(".")[2] for subject in subjects) == ["C", "M"]


def test_an_object_another_client_replaced_is_read_as_it_is_now(make_storage):
    storage = make_storage(chunk_size=CHUNK)
    name = storage.save("doc.txt", ContentFile(b"first"))
    assert storage.open(name).read() == b"first"
    put_foreign(storage, name, b"theirs")  # one chunk, another nuid
    assert storage.open(name).read() == b"theirs"
    bigger = random_bytes(3 * CHUNK + 1)
    make_storage(chunk_size=CHUNK, file_overwrite=True).save(name, ContentFile(bigger))  # another process
    assert storage.open(name).read() == bigger
    put_foreign(storage, name, b"small again")
    assert storage.open(name).read() == b"small again"


def test_a_corrupt_chunk_of_an_object_written_here_is_reported(storage):
    name = storage.save("flip.txt", ContentFile(b"one small chunk"))
    corrupt_last_byte(storage, name)
    with pytest.raises(CorruptObject, match="SHA-256 digest does not match"), storage.open(name) as f:
        f.read()
