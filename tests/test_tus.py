"""tus 1.0.0 on upload links: a real tus client (tuspy) uploads, is cut off, resumes (docs/direct-uploads.md)."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import socket
import time
from urllib.parse import urlsplit

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import storages
from tusclient.client import TusClient
from tusclient.storage.filestorage import FileStorage

from natsstorage import NatsStorage, direct, loop
from natsstorage.delivery import Pull
from natsstorage.direct import Link, Result
from natsstorage.exceptions import ObjectChanged

from .helpers import MiB, jetstream, random_bytes, stream_state
from .test_direct_uploads import BIG, MEMORY_BOUND, big_sha256, body, configs, http_server  # noqa: F401 - fixture
from .test_views import peak_rss

CHUNK = 128 * 1024  # the bucket's chunks: tus clients' pieces never line up with them
TUS = {"Tus-Resumable": "1.0.0"}


@pytest.fixture
def files(serve) -> NatsStorage:
    """The test's bucket as a configured storage (``STORAGES['files']``), which the upload view finds."""
    return serve(location="media", chunk_size=CHUNK)


def metadata(**values: str) -> str:
    return ",".join(f"{key} {base64.b64encode(value.encode()).decode()}" for key, value in values.items())


def create(client, url: str, length: int, **headers: str):
    """A tus creation, as tus clients send it: no body."""
    return client.generic("POST", url, headers={**TUS, "Upload-Length": str(length), **headers})


def patch(client, url: str, data: bytes, offset: int, content_type="application/offset+octet-stream", **headers):
    # As a client sends it: with a Content-Length and a Content-Type, for no data too (the test client would not).
    headers = {**TUS, "Upload-Offset": str(offset), **headers}
    return client.patch(url, data=data, headers=headers, CONTENT_TYPE=content_type, CONTENT_LENGTH=str(len(data)))


def sha256_digest(data: bytes) -> str:
    return "SHA-256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).decode()


class KeptOpen(io.BytesIO):
    """The file as tuspy reads it: it closes the stream once it has fingerprinted it, then reads it again."""

    def close(self) -> None:
        pass


class KeptOpenFile(io.FileIO):
    """The same, for a file on disk; ``really_close`` closes it."""

    def close(self) -> None:
        pass

    def really_close(self) -> None:
        io.FileIO.close(self)


def cut_patch(url: str, offset: int, sent: bytes, length: int) -> None:
    """A PATCH of ``length`` bytes whose connection drops once ``sent`` (the first of them) are sent."""
    where = urlsplit(url)
    with socket.create_connection((where.hostname, where.port), timeout=30) as connection:
        connection.sendall(
            f"PATCH {where.path} HTTP/1.1\r\nHost: {where.netloc}\r\nTus-Resumable: 1.0.0\r\n"
            f"Content-Type: application/offset+octet-stream\r\nUpload-Offset: {offset}\r\n"
            f"Content-Length: {length}\r\n\r\n".encode()
        )
        connection.sendall(sent)


def test_a_tus_client_uploads_in_chunks_is_cut_off_and_resumes_from_its_stored_url(live_server, files, tmp_path):
    data = random_bytes(6 * MiB + 1234)
    link = files.upload_url("videos/talk.mp4", max_size=10 * MiB, content_types=["video/*"])
    client = TusClient(live_server.url + link)
    urls = FileStorage(str(tmp_path / "tus-urls.json"))
    options = {"chunk_size": MiB + 1000, "store_url": True, "url_storage": urls}
    stream = KeptOpen(data)
    with contextlib.closing(urls):
        # Three PATCHes (1 MiB + 1000 bytes, twice, then 1000), none ending on a chunk of the bucket.
        meta = {"filetype": "video/mp4", "filename": "talk.mp4"}
        first = client.uploader(file_stream=stream, metadata=meta, **options)
        first.upload(stop_at=2 * MiB + 3000)
        assert first.offset == 2 * MiB + 3000
        assert first.url.startswith(live_server.url + "/files/~upload/")  # the Location the creation gave

        # Then a PATCH whose connection drops in the middle: every byte that arrived is kept.
        cut_at = first.offset + MiB + 777
        cut_patch(first.url, first.offset, data[first.offset : cut_at], 2 * MiB)
        deadline = time.monotonic() + 60
        full_chunks = first.offset - first.offset % CHUNK  # while the cut request holds the tail it took back
        while (stored := first.get_offset()) != cut_at:  # the server notices the cut, stores what came
            assert stored in (first.offset, full_chunks) and time.monotonic() < deadline
            time.sleep(0.1)

        # A new uploader finds the URL it stored for this file and goes on from where the server stands.
        second = client.uploader(file_stream=stream, **options)
        assert second.url == first.url and second.offset == cut_at
        second.upload()
        assert second.offset == len(data)

    info = files.info("videos/talk.mp4")
    assert info.size == len(data) and info.digest == sha256_digest(data)
    assert info.content_type == "video/mp4"  # the filetype of its creation, checked against the link's types
    with files.open("videos/talk.mp4") as f:
        assert f.read() == data
    assert stream_state(files)["messages"] == info.chunks + 1  # nothing left beside the object
    # The signed result a DirectUploadField takes, on the last PATCH's answer.
    result = Result.from_token(second.request.response_headers["upload-result"])
    assert result.name == "videos/talk.mp4" and result.matches(info)


def test_a_tus_client_sending_pieces_smaller_than_a_chunk_makes_progress_with_each(live_server, files):
    """Each PATCH stores every byte it brings (a short last chunk, taken back by the next): with pieces smaller
    than the bucket's chunks, an upload that kept only whole chunks would never move."""
    data = random_bytes(CHUNK + 5000)
    link = files.upload_url("small-pieces.bin", max_size=MiB)
    uploader = TusClient(live_server.url + link).uploader(file_stream=KeptOpen(data), chunk_size=CHUNK // 3)
    offsets = []
    uploader.upload_chunk()  # the creation, then one PATCH at a time
    offsets.append(uploader.offset)
    while uploader.offset < len(data):
        uploader.upload_chunk()
        offsets.append(uploader.offset)
    assert offsets == [*range(CHUNK // 3, len(data), CHUNK // 3), len(data)]  # each a third of a chunk further
    assert files.open("small-pieces.bin").read() == data
    assert stream_state(files)["messages"] == 3  # two chunks and the metadata: no short chunk left between


def test_an_upload_in_many_pieces_reads_back_its_chunks_once_when_it_is_finished(client, files, monkeypatch):
    """A resumed PATCH reads back at most the last chunk (a short tail, to go again): the digest of what came
    before is taken once, at the end. Reading everything back at each PATCH made many pieces quadratic."""
    read_back = []
    pull_next = Pull.next

    async def counted(self):
        msg = await pull_next(self)
        read_back.append(len(msg.data) if msg is not None else 0)
        return msg

    monkeypatch.setattr(Pull, "next", counted)
    data = random_bytes(8 * CHUNK + 1000)
    piece = CHUNK + 300  # each PATCH leaves a short tail, which the next takes back
    location = create(client, files.upload_url("pieces.bin", max_size=2 * MiB), len(data))["Location"]
    for offset in range(0, len(data), piece):
        answer = patch(client, location, data[offset : offset + piece], offset)
        assert answer.status_code == 204, answer.content
        assert read_back == [] or offset + piece >= len(data)
    assert sorted(read_back) == sorted([CHUNK] * 8 + [1000])  # every chunk once, at the last PATCH
    assert files.open("pieces.bin").read() == data
    assert Result.from_token(answer["Upload-Result"]).matches(files.info("pieces.bin"))


def test_options_say_the_version_the_extensions_and_the_link_s_largest_size(client, files):
    url = files.upload_url("a.bin", max_size=1234)
    answer = client.options(url)
    assert answer.status_code == 204
    assert answer["Tus-Resumable"] == answer["Tus-Version"] == "1.0.0"
    assert set(answer["Tus-Extension"].split(",")) == {"creation", "termination"}
    assert answer["Tus-Max-Size"] == "1234"


def test_creation_gives_a_location_and_head_says_where_the_upload_stands(client, files):
    url = files.upload_url("a.txt", max_size=100, content_types=["text/*"])
    created = create(client, url, 11, **{"Upload-Metadata": metadata(filetype="text/plain", filename="x.txt")})
    assert created.status_code == 201, created.content
    assert created["Tus-Resumable"] == "1.0.0"
    location = created["Location"]
    head = client.head(location, headers=TUS)
    assert head.status_code == 200
    assert (head["Upload-Offset"], head["Upload-Length"], head["Cache-Control"]) == ("0", "11", "no-store")
    done = patch(client, location, b"hello world", 0)
    assert done.status_code == 204 and done["Upload-Offset"] == "11"
    assert files.open("a.txt").read() == b"hello world"
    assert files.info("a.txt").content_type == "text/plain"
    # Once finished: HEAD gives the result too, and the last PATCH sent again gets it again.
    head = client.head(location, headers=TUS)
    assert head["Upload-Offset"] == head["Upload-Length"] == "11"
    assert Result.from_token(head["Upload-Result"]).matches(files.info("a.txt"))
    again = patch(client, location, b"", 11)
    assert again.status_code == 204 and again["Upload-Result"] == head["Upload-Result"]
    assert patch(client, location, b"more", 11).status_code == 400  # past its end


def test_creation_refuses_a_size_a_type_or_metadata_the_link_does_not_take(client, files):
    url = files.upload_url("pic.png", max_size=1000, content_types=["image/*"])
    png = {"Upload-Metadata": metadata(filetype="image/png")}
    assert create(client, url, 1001, **png).status_code == 413
    assert create(client, url, 10, **{"Upload-Metadata": metadata(filetype="text/html")}).status_code == 415
    assert create(client, url, 10).status_code == 415  # no filetype: the link takes images only
    for garbage in ("filetype !!!", "filetype aW1hZ2UvcG5n,filetype aW1hZ2UvcG5n", "file type x", "x" * 5000, ","):
        refused = create(client, url, 10, **{"Upload-Metadata": garbage})
        assert refused.status_code == 400, garbage
    binary = base64.b64encode(b"\xff\x00").decode()
    assert create(client, url, 10, **{"Upload-Metadata": f"filetype {binary}"}).status_code == 400
    assert create(client, url, 10, **{**png, "Tus-Resumable": "0.2.2"}).status_code == 412
    assert create(client, url, 10, **{**png, "Upload-Length": "ten"}).status_code == 400
    assert client.generic("POST", url, headers={**TUS, **png, "Upload-Defer-Length": "1"}).status_code == 400
    early = client.post(url, b"early bytes", "application/offset+octet-stream", headers={**TUS, **png})
    assert early.status_code == 400  # no creation-with-upload
    assert create(client, url, 10, **{**png, "Upload-Metadata": png["Upload-Metadata"] + ",note"}).status_code == 201
    assert stream_state(files)["messages"] == 0


def test_patches_are_refused_at_a_wrong_offset_type_or_version_and_leave_what_was_stored(client, files):
    url = files.upload_url("a.bin", max_size=10 * CHUNK)
    location = create(client, url, 3 * CHUNK)["Location"]
    data = random_bytes(3 * CHUNK)
    assert patch(client, location, data[:CHUNK], 0).status_code == 204
    wrong = patch(client, location, data[CHUNK:], 5)
    assert wrong.status_code == 409 and wrong["Upload-Offset"] == str(CHUNK)
    assert patch(client, location, data[CHUNK:], CHUNK, "application/octet-stream").status_code == 415
    refused = patch(client, location, data[CHUNK:], CHUNK, **{"Tus-Resumable": "2.0.0"})
    assert refused.status_code == 412 and refused["Tus-Version"] == "1.0.0"
    assert client.patch(location, data=data[CHUNK:], content_type="application/offset+octet-stream").status_code == 412
    assert patch(client, location, data[CHUNK:] + b"x", CHUNK).status_code == 400  # past Upload-Length
    assert patch(client, location, data[CHUNK:], "abc").status_code == 400
    assert patch(client, url, data[CHUNK:], CHUNK).status_code == 400  # the link itself: create first
    assert patch(client, location[:-3] + "xyz", data[CHUNK:], CHUNK).status_code == 403
    assert stream_state(files)["messages"] == 1  # only the first PATCH's chunk
    override = {**TUS, "Upload-Offset": str(CHUNK), "X-HTTP-Method-Override": "PATCH"}
    overridden = client.post(location, data[CHUNK:], "application/offset+octet-stream", headers=override)
    assert overridden.status_code == 204  # a POST standing for a PATCH, as tus-js-client may send it
    assert files.open("a.bin").read() == data


def test_a_file_over_the_link_s_size_never_gets_an_upload(client, files):
    """The size is checked at creation, and a created link cannot take a byte past the size it declared."""
    url = files.upload_url("a.bin", max_size=2 * CHUNK)
    assert create(client, url, 2 * CHUNK + 1).status_code == 413
    location = create(client, url, 2 * CHUNK)["Location"]
    assert patch(client, location, random_bytes(2 * CHUNK + 1), 0).status_code == 400
    assert stream_state(files)["messages"] == 0


def test_termination_removes_an_unfinished_upload(client, files):
    url = files.upload_url("a.bin", max_size=10 * CHUNK)
    location = create(client, url, 4 * CHUNK)["Location"]
    assert patch(client, location, random_bytes(2 * CHUNK + 10), 0).status_code == 204
    assert stream_state(files)["messages"] == 3
    deleted = client.delete(location, headers=TUS)
    assert deleted.status_code == 204
    assert stream_state(files)["messages"] == 0
    assert client.head(location, headers=TUS)["Upload-Offset"] == "0"
    assert client.delete(location).status_code == 412  # without Tus-Resumable


def test_a_name_taken_while_a_tus_upload_ran_refuses_it_and_leaves_nothing(client, files):
    url = files.upload_url("a.txt", max_size=10 * CHUNK)
    location = create(client, url, 3 * CHUNK)["Location"]
    data = random_bytes(3 * CHUNK)
    assert patch(client, location, data[: CHUNK + 5], 0).status_code == 204
    files.save("a.txt", ContentFile(b"first"))
    refused = patch(client, location, data[CHUNK + 5 :], CHUNK + 5)
    assert refused.status_code == 409
    assert files.open("a.txt").read() == b"first"
    assert stream_state(files)["messages"] == 2  # the first file's chunk and metadata


def test_a_creation_on_a_link_with_chunks_starts_the_upload_again(client, files):
    url = files.upload_url("a.bin", max_size=10 * CHUNK)
    location = create(client, url, 3 * CHUNK)["Location"]
    assert patch(client, location, random_bytes(CHUNK), 0).status_code == 204
    again = create(client, url, 2 * CHUNK)
    assert again.status_code == 201
    assert client.head(again["Location"], headers=TUS)["Upload-Offset"] == "0"
    assert stream_state(files)["messages"] == 0


def test_the_put_protocol_and_the_form_still_work_on_a_link(client, files):
    url = files.upload_url("a.txt", max_size=100)
    answer = client.put(url, data=b"plain put", content_type="text/plain", CONTENT_LENGTH="9")
    assert answer.status_code == 201 and answer.json()["size"] == 9
    assert "Tus-Resumable" not in answer


def test_two_requests_resuming_one_upload_cannot_both_take_its_tail(client, files):
    """Looks inside (``direct.resume``): two requests of one upload cannot be interleaved through the test client.
    A paused upload's short last chunk is taken back by the request that goes on; a second one is refused."""
    url = files.upload_url("a.bin", max_size=10 * CHUNK)
    location = create(client, url, 3 * CHUNK)["Location"]
    assert patch(client, location, random_bytes(CHUNK + 10), 0).status_code == 204
    link = Link.from_token(location.rpartition("/")[2])
    key = files.key(link.name)
    info = jetstream(files, "STREAM.INFO")
    tail_seq = info["state"]["last_seq"]
    jetstream(files, "STREAM.MSG.DELETE", {"seq": tail_seq, "no_erase": True})
    with pytest.raises(ObjectChanged):  # it read the tail before the other request removed it
        loop.run(direct._take_tail(files.bucket, loop.run(files.bucket.connection()), tail_seq, key))


def test_head_while_a_request_stores_its_last_chunks_never_counts_a_tail_among_too_few_chunks(
    client, files, monkeypatch
):
    # HEAD counts the chunks, then reads the last one. A request that stores more chunks and its tail between
    # the two made that tail look like the second of two chunks: an offset that was never a boundary.
    location = create(client, files.upload_url("a.bin", max_size=10 * CHUNK), 5 * CHUNK)["Location"]
    assert patch(client, location, random_bytes(2 * CHUNK), 0).status_code == 204
    subject = f"$O.{files.config.bucket}.C.{Link.from_token(location.rpartition('/')[2]).nuid}"
    stream = files.bucket.stream
    direct_get = stream.direct_get
    writing = [random_bytes(CHUNK), random_bytes(10)]  # another request's last full chunk, then its tail

    async def meanwhile(nc, request):
        while writing and request.get("last_by_subj") == subject:
            await stream.publish(nc, subject, writing.pop(0), {}, "a.bin")
        return await direct_get(nc, request)

    monkeypatch.setattr(stream, "direct_get", meanwhile)
    assert client.head(location, headers=TUS)["Upload-Offset"] == str(3 * CHUNK + 10)


def test_head_while_a_request_resuming_the_upload_holds_its_tail_says_the_full_chunks_stored(client, files):
    # The tail is taken back by the request that goes on, and sent again at the head of the next chunk. Meanwhile
    # nats-server 2.9 no longer knows the subject's last message: HEAD answered 0, and a client started over.
    url = files.upload_url("a.bin", max_size=10 * CHUNK)
    location = create(client, url, 3 * CHUNK)["Location"]
    assert patch(client, location, random_bytes(CHUNK + 10), 0).status_code == 204
    assert client.head(location, headers=TUS)["Upload-Offset"] == str(CHUNK + 10)
    key = files.key(Link.from_token(location.rpartition("/")[2]).name)
    tail_seq = jetstream(files, "STREAM.INFO")["state"]["last_seq"]
    loop.run(direct._take_tail(files.bucket, loop.run(files.bucket.connection()), tail_seq, key))
    assert client.head(location, headers=TUS)["Upload-Offset"] == str(CHUNK)


def test_an_upload_goes_on_after_a_request_that_took_its_tail_back_stopped(client, files):
    # The tail's bytes were lost with that request: the upload stands at its full chunks, and goes on from there
    # (on nats-server 2.9 too, which no longer knows the subject's last message once the tail is removed).
    data = random_bytes(3 * CHUNK)
    location = create(client, files.upload_url("a.bin", max_size=10 * CHUNK), len(data))["Location"]
    assert patch(client, location, data[: CHUNK + 10], 0).status_code == 204
    key = files.key(Link.from_token(location.rpartition("/")[2]).name)
    tail_seq = jetstream(files, "STREAM.INFO")["state"]["last_seq"]
    loop.run(direct._take_tail(files.bucket, loop.run(files.bucket.connection()), tail_seq, key))
    assert client.head(location, headers=TUS)["Upload-Offset"] == str(CHUNK)
    assert patch(client, location, data[CHUNK : 2 * CHUNK + 5], CHUNK).status_code == 204
    done = patch(client, location, data[2 * CHUNK + 5 :], 2 * CHUNK + 5)
    assert done.status_code == 204, done.content
    assert files.open("a.bin").read() == data


def test_an_empty_file_is_stored_at_its_creation(client, files):
    """tus clients send no PATCH for an empty file: the creation finishes it."""
    created = create(client, files.upload_url("empty.txt", max_size=10), 0)
    assert created.status_code == 201
    assert files.size("empty.txt") == 0
    assert Result.from_token(created["Upload-Result"]).matches(files.info("empty.txt"))
    head = client.head(created["Location"], headers=TUS)
    assert head["Upload-Offset"] == head["Upload-Length"] == "0"


@pytest.mark.slow
def test_a_100_mib_tus_upload_cut_in_the_middle_resumes_under_gunicorn_in_bounded_memory(
    configs,  # noqa: F811 - the fixture
    nats_server,
    tmp_path,
    capsys,
):
    path = tmp_path / "big.bin"
    with path.open("wb") as f:
        for part in body(0, BIG):
            f.write(part)
    with http_server("gunicorn", nats_server, tmp_path) as (address, pid):
        url = f"http://{address}" + configs.upload_url("big-tus.bin", max_size=BIG)
        before = peak_rss(pid)
        started = time.monotonic()
        stream = KeptOpenFile(path)
        try:
            client = TusClient(url)
            first = client.uploader(file_stream=stream, chunk_size=8 * MiB + 1, metadata={"filetype": "video/mp4"})
            first.upload(stop_at=40 * MiB)  # five PATCHes
            cut_at = first.offset + 20 * MiB + 12345
            with path.open("rb") as f:
                f.seek(first.offset)
                cut_patch(first.url, first.offset, f.read(cut_at - first.offset), BIG - first.offset)
            deadline = time.monotonic() + 60
            while (stored := first.get_offset()) != cut_at:  # every byte that arrived, kept
                assert stored == first.offset and time.monotonic() < deadline
                time.sleep(0.1)
            second = client.uploader(file_stream=stream, url=first.url, chunk_size=8 * MiB + 1)
            assert second.offset == cut_at
            second.upload()
        finally:
            stream.really_close()
        seconds = time.monotonic() - started
        growth = peak_rss(pid) - before
    with capsys.disabled():
        print(f"\ngunicorn: 100 MiB by tus, cut and resumed, in {seconds:.2f} s; peak RSS +{growth / MiB:.1f} MiB")
    assert growth < MEMORY_BOUND, f"the worker's peak RSS grew by {growth / MiB:.1f} MiB"
    info = configs.info("big-tus.bin")
    assert info.size == BIG and info.digest == big_sha256() and info.content_type == "video/mp4"
    assert Result.from_token(second.request.response_headers["upload-result"]).matches(info)


def test_an_upload_paused_off_a_chunk_s_edge_resumes_after_the_storage_s_chunk_size_changed(client, files, settings):
    """Its chunks keep the size they were written with: where it stands is read from them, not from settings."""
    data = random_bytes(3 * CHUNK)
    location = create(client, files.upload_url("a.bin", max_size=10 * CHUNK), len(data))["Location"]
    assert patch(client, location, data[: CHUNK + 10], 0).status_code == 204
    options = {**settings.STORAGES["files"]["OPTIONS"], "chunk_size": 2 * CHUNK}
    settings.STORAGES = {**settings.STORAGES, "files": {**settings.STORAGES["files"], "OPTIONS": options}}
    assert client.head(location, headers=TUS)["Upload-Offset"] == str(CHUNK + 10)
    assert patch(client, location, data[CHUNK + 10 :], CHUNK + 10).status_code == 204
    assert storages["files"].open("a.bin").read() == data
