"""Nothing a request sends can make nats-server close the connection: the longest names and bucket names
accepted go through every URL, command and the storage API, one more is refused before it reaches the wire,
and the process's NATS connection is the very same one afterwards (the server closes a connection over a
protocol line longer than its max_control_line, or a message over its max_payload, headers included)."""

from __future__ import annotations

import base64
import io
import json
import uuid
from collections.abc import Iterator

import pytest
from django.core.exceptions import ImproperlyConfigured, SuspiciousFileOperation
from django.core.files.base import ContentFile
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.core.management.base import CommandError
from django.urls import reverse
from nats.aio.client import Client

from natsstorage import NatsStorage
from natsstorage.buckettools import BucketTools
from natsstorage.exceptions import TooLarge
from natsstorage.jetstream import MAX_CONTROL_LINE
from natsstorage.names import MAX_NAME_BYTES
from natsstorage.objectstore import MAX_BUCKET_NAME, Bucket
from natsstorage.testing import on_connection

from .helpers import MiB, put_foreign, stream_state

pytestmark = pytest.mark.django_db

LONGEST_NAME = "é" * (MAX_NAME_BYTES // 2)  # in bytes, as the limit counts
TOO_LONG_NAME = LONGEST_NAME + "n"
TOO_LONG_BUCKET = "b" * (MAX_BUCKET_NAME + 1)
ISSUE_BUCKET = "b" * 5000  # the one GET that dropped the connection
# A name another client wrote whose metadata subject (in a bucket of the longest name) nearly fills a
# protocol line: with nats-py's reply inbox and sizes, its publish was still under the server's limit.
FOREIGN_SUBJECT = MAX_CONTROL_LINE - 100
NEVER_WRITTEN = "n" * (3 * MAX_CONTROL_LINE)  # its metadata subject is longer than any line the server takes


@pytest.fixture
def nats_bucket_name() -> str:
    """The plugin's fixture, so that every bucket of this module has the longest name allowed."""
    return f"t{uuid.uuid4().hex[:12]}".ljust(MAX_BUCKET_NAME, "b")


async def _itself(nc: Client) -> Client:
    return nc


@pytest.fixture
def connection(storage: NatsStorage) -> Iterator[Client]:
    """The process's NATS connection; afterwards it must be the same nats-py client, connected, never lost."""
    nc = on_connection(storage, _itself)
    reconnects = nc.stats["reconnects"]
    yield nc
    assert on_connection(storage, _itself) is nc, "the connection was replaced"
    assert nc.is_connected
    assert nc.stats["reconnects"] == reconnects, "the server dropped the connection"


def foreign_name(bucket: str) -> str:
    key_chars = (FOREIGN_SUBJECT - len(f"$O.{bucket}.M.")) // 4 * 4
    return "f" * (key_chars // 4 * 3)


def object_url(bucket: str, name: str, page: str = "object") -> str:
    return reverse(f"admin:natsstorage_bucket_{page}", kwargs={"bucket": bucket, "name": name})


def objects_url(bucket: str) -> str:
    return reverse("admin:natsstorage_bucket_objects", kwargs={"bucket": bucket})


# -- the limits themselves --------------------------------------------------------------------------


def test_the_longest_key_in_the_longest_bucket_fits_a_protocol_line():
    key = "l" * MAX_NAME_BYTES + "/" + "n" * MAX_NAME_BYTES  # the longest location and name
    subject = f"$O.{'b' * MAX_BUCKET_NAME}.M.{base64.urlsafe_b64encode(key.encode()).decode()}"
    reply = f"_INBOX.{'x' * 22}.{2**64}"
    line = f"HPUB {subject} {reply} {MiB} {MiB}\r\n"
    assert len(line) < MAX_CONTROL_LINE - 512


# -- the storage API --------------------------------------------------------------------------------


def test_the_longest_key_in_the_longest_bucket_is_saved_read_listed_and_deleted(make_storage, connection):
    storage = make_storage(location="l" * MAX_NAME_BYTES)
    assert storage.save(LONGEST_NAME, ContentFile(b"data")) == LONGEST_NAME
    assert storage.exists(LONGEST_NAME) and storage.size(LONGEST_NAME) == 4
    assert storage.open(LONGEST_NAME).read() == b"data"
    assert storage.listdir("") == ([], [LONGEST_NAME])
    storage.update_meta(LONGEST_NAME, description="kept", metadata={"k": "v"})
    storage.delete(LONGEST_NAME)
    assert not storage.exists(LONGEST_NAME)


def test_a_name_one_byte_too_long_is_refused_before_the_wire(storage, connection):
    for call in (
        lambda: storage.save(TOO_LONG_NAME, ContentFile(b"data")),
        lambda: storage.open(TOO_LONG_NAME),
        lambda: storage.open(TOO_LONG_NAME, "wb"),
        lambda: storage.exists(TOO_LONG_NAME),
        lambda: storage.size(TOO_LONG_NAME),
        lambda: storage.delete(TOO_LONG_NAME),
        lambda: storage.url(TOO_LONG_NAME),
        lambda: storage.listdir(TOO_LONG_NAME),
        lambda: storage.update_meta(TOO_LONG_NAME, description="x"),
    ):
        with pytest.raises(SuspiciousFileOperation, match=f"the limit is {MAX_NAME_BYTES}"):
            call()


@pytest.mark.parametrize("bucket", [TOO_LONG_BUCKET, ISSUE_BUCKET])
def test_a_bucket_name_too_long_is_refused_before_the_wire(bucket, storage, connection):
    with pytest.raises(ImproperlyConfigured, match=f"at most {MAX_BUCKET_NAME} letters"):
        NatsStorage(bucket).exists("a.txt")
    with pytest.raises(ValueError, match=f"at most {MAX_BUCKET_NAME} letters"):
        Bucket(bucket, storage.bucket.stream.connect, timeout=1.0)


def test_names_other_clients_wrote_near_the_limit_are_listed_read_and_deleted(storage, connection):
    storage.save("mine.txt", ContentFile(b"mine"))
    name = foreign_name(storage.config.bucket)
    put_foreign(storage, name, b"theirs")
    assert sorted(entry.name for entry in BucketTools(storage).listing()) == [name, "mine.txt"]
    assert BucketTools(storage).open_object(name).read() == b"theirs"
    BucketTools(storage).update_object(name, seq=BucketTools(storage).object_info(name).seq, description="seen")
    assert BucketTools(storage).delete_object(name)
    assert [entry.name for entry in BucketTools(storage).listing()] == ["mine.txt"]


def test_a_name_no_server_could_have_taken_is_simply_not_there(storage, connection):
    with pytest.raises(FileNotFoundError):
        BucketTools(storage).object_info(NEVER_WRITTEN)
    assert not BucketTools(storage).delete_object(NEVER_WRITTEN)


def test_a_chunk_as_large_as_the_server_takes_still_leaves_room_for_its_headers(make_storage, connection):
    storage = make_storage(chunk_size=connection.max_payload)
    data = b"x" * (connection.max_payload - 10)  # one chunk, which carries a Nats-Msg-Id header
    storage.save("whole.bin", ContentFile(data))
    assert storage.open("whole.bin").read() == data


def test_metadata_that_headers_would_take_over_max_payload_is_refused(storage, connection):
    storage.save("a.txt", ContentFile(b"a"))
    raw = {**storage.info("a.txt").raw, "description": "", "mtime": "2026-01-01T00:00:00.000000Z"}
    # The metadata message alone is just under max_payload; its headers take it over.
    description = "d" * (connection.max_payload - len(json.dumps(raw)) - 10)
    with pytest.raises(TooLarge, match=f"takes messages up to {connection.max_payload}") as error:
        storage.update_meta("a.txt", description=description)
    assert isinstance(error.value, ValueError)
    assert storage.info("a.txt").description == ""
    storage.update_meta("a.txt", description="d" * 1000)  # what fits still goes


def test_a_save_whose_metadata_is_too_large_leaves_nothing_behind(make_storage, connection):
    storage = make_storage(object_parameters={"Metadata": {"big": "m" * connection.max_payload}})
    with pytest.raises(ValueError, match="takes messages up to"):
        storage.save("a.txt", ContentFile(b"a" * 10_000))
    assert stream_state(storage)["messages"] == 0


# -- the URLs ---------------------------------------------------------------------------------------


def test_the_serving_view_answers_the_longest_name_and_refuses_longer(client, storage, settings, connection):
    bucket = storage.config.bucket
    settings.STORAGES = {
        **settings.STORAGES,
        "wire": {"BACKEND": "natsstorage.NatsStorage", "OPTIONS": {"bucket": bucket, "public": True}},
    }
    storage.save(LONGEST_NAME, ContentFile(b"data"))
    response = client.get(f"/files/{bucket}/{LONGEST_NAME}")
    assert response.status_code == 200 and b"".join(response.streaming_content) == b"data"
    assert client.get(f"/files/{bucket}/{TOO_LONG_NAME}").status_code == 400
    assert client.get(f"/files/{bucket}/{NEVER_WRITTEN}").status_code == 400
    assert client.get(f"/files/{TOO_LONG_BUCKET}/a.txt").status_code == 404
    assert client.get(f"/files/{ISSUE_BUCKET}/a.txt").status_code == 404


def test_the_admin_bucket_page_of_a_bucket_name_too_long_is_a_404(admin_client, storage, connection):
    storage.save("a.txt", ContentFile(b"a"))
    assert admin_client.get(objects_url(storage.config.bucket)).status_code == 200
    for bucket in (TOO_LONG_BUCKET, ISSUE_BUCKET):
        response = admin_client.get(objects_url(bucket))
        assert response.status_code == 404
        assert f"bucket names have at most {MAX_BUCKET_NAME} letters" in response.text
        for page in ("object", "download", "delete"):
            assert admin_client.get(object_url(bucket, "a.txt", page)).status_code == 404
        upload = reverse("admin:natsstorage_bucket_upload", kwargs={"bucket": bucket})
        assert admin_client.post(upload, {"files": [SimpleUploadedFile("a.txt", b"a")]}).status_code == 404


def test_the_admin_object_pages_take_long_names_and_refuse_impossible_ones(admin_client, storage, connection):
    bucket = storage.config.bucket
    storage.save(LONGEST_NAME, ContentFile(b"data"))
    foreign = foreign_name(bucket)
    put_foreign(storage, foreign, b"theirs")
    for name in (LONGEST_NAME, foreign):
        assert admin_client.get(object_url(bucket, name)).status_code == 200
        assert admin_client.get(object_url(bucket, name, "download")).status_code == 200
        seq = BucketTools(storage).object_info(name).seq
        edit = {"description": "edited", "headers": "Cache-Control: no-cache", "seq": seq}
        assert admin_client.post(object_url(bucket, name), edit).status_code == 302
        assert BucketTools(storage).object_info(name).description == "edited"
    for page in ("object", "download", "delete"):
        assert admin_client.get(object_url(bucket, NEVER_WRITTEN, page)).status_code == 404
    assert admin_client.post(object_url(bucket, foreign, "delete"), {"post": "yes"}).status_code == 302
    assert [entry.name for entry in BucketTools(storage).listing()] == [LONGEST_NAME]


def test_an_admin_edit_too_large_for_nats_is_a_400(admin_client, storage, connection):
    storage.save("a.txt", ContentFile(b"a"))
    edit = {"description": "d" * connection.max_payload, "headers": "", "seq": storage.info("a.txt").seq}
    response = admin_client.post(object_url(storage.config.bucket, "a.txt"), edit)
    assert response.status_code == 400
    assert f"takes messages up to {connection.max_payload}" in response.text


def test_admin_uploads_store_the_longest_name_and_refuse_longer(admin_client, storage, connection):
    bucket = storage.config.bucket
    storage.save("mine.txt", ContentFile(b"mine"))
    upload = reverse("admin:natsstorage_bucket_upload", kwargs={"bucket": bucket})
    folder = "d" * (MAX_NAME_BYTES - len("/a.txt"))
    files = [SimpleUploadedFile("a.txt", b"a")]
    response = admin_client.post(upload, {"files": files, "folder": folder}, follow=True)
    assert response.status_code == 200
    files = [SimpleUploadedFile("ab.txt", b"b")]
    response = admin_client.post(upload, {"files": files, "folder": folder}, follow=True)
    assert response.status_code == 200 and "was not uploaded" in response.text
    response = admin_client.post(upload, {"files": [SimpleUploadedFile("a", b"c")], "folder": "f" * 5000}, follow=True)
    assert response.status_code == 200 and "Nothing was uploaded" in response.text
    assert storage.listdir(folder) == ([], ["a.txt"])


# -- the commands -----------------------------------------------------------------------------------


COMMANDS = [
    ("natsos_ls", "{bucket}"),
    ("natsos_status", "{bucket}"),
    ("natsos_get", "{bucket}", "a.txt", "-"),
    ("natsos_put", "{bucket}", "a.txt", "-"),
    ("natsos_destroy", "{bucket}", "--noinput"),
    ("natsos_watch", "{bucket}"),
    ("natsos_gc", "{bucket}"),
]


@pytest.mark.parametrize("command", COMMANDS, ids=[command[0] for command in COMMANDS])
@pytest.mark.parametrize("bucket", [TOO_LONG_BUCKET, ISSUE_BUCKET], ids=["one-too-long", "5000"])
def test_every_command_refuses_a_bucket_name_too_long(command, bucket, storage, connection):
    name, *args = command
    with pytest.raises(CommandError, match=f"at most {MAX_BUCKET_NAME} letters"):
        call_command(name, *(arg.format(bucket=bucket) for arg in args), stdout=io.StringIO())


def test_natsos_copy_refuses_a_storage_whose_bucket_name_is_too_long(settings, storage, connection):
    settings.STORAGES = {
        **settings.STORAGES,
        "long": {"BACKEND": "natsstorage.NatsStorage", "OPTIONS": {"bucket": TOO_LONG_BUCKET}},
        "here": {"BACKEND": "natsstorage.NatsStorage", "OPTIONS": {"bucket": storage.config.bucket}},
    }
    with pytest.raises(CommandError, match=f"at most {MAX_BUCKET_NAME} letters"):
        call_command("natsos_copy", "--from", "long", "--to", "here", stdout=io.StringIO())


def test_every_command_works_on_the_longest_names(settings, storage, tmp_path, connection):
    bucket = storage.config.bucket
    source = tmp_path / "source.txt"
    source.write_bytes(b"data")
    call_command("natsos_put", bucket, LONGEST_NAME, str(source), "--create-bucket", stdout=io.StringIO())
    with pytest.raises(CommandError, match=f"the limit is {MAX_NAME_BYTES}"):
        call_command("natsos_put", bucket, TOO_LONG_NAME, str(source), stdout=io.StringIO())
    foreign = foreign_name(bucket)
    put_foreign(storage, foreign, b"theirs")
    out = io.StringIO()
    call_command("natsos_ls", bucket, stdout=out)
    assert LONGEST_NAME in out.getvalue() and foreign in out.getvalue()
    out = io.StringIO()
    call_command("natsos_status", bucket, stdout=out)
    assert bucket in out.getvalue()
    got = tmp_path / "got"
    call_command("natsos_get", bucket, LONGEST_NAME, str(got), stdout=io.StringIO())
    assert got.read_bytes() == b"data"
    call_command("natsos_get", bucket, foreign, str(got), "--overwrite", stdout=io.StringIO())
    assert got.read_bytes() == b"theirs"
    with pytest.raises(CommandError, match="No such file or directory in the NATS bucket"):
        call_command("natsos_get", bucket, NEVER_WRITTEN, str(got), "--overwrite", stdout=io.StringIO())
    call_command("natsos_gc", bucket, stdout=io.StringIO())
    settings.STORAGES = {
        **settings.STORAGES,
        "from": {"BACKEND": "natsstorage.NatsStorage", "OPTIONS": {"bucket": bucket, "location": "l" * 1000}},
        "to": {"BACKEND": "natsstorage.NatsStorage", "OPTIONS": {"bucket": bucket, "location": "m" * 1000}},
    }
    NatsStorage(bucket, location="l" * 1000).save(LONGEST_NAME, ContentFile(b"copied"))
    call_command("natsos_copy", "--from", "from", "--to", "to", stdout=io.StringIO(), stderr=io.StringIO())
    assert NatsStorage(bucket, location="m" * 1000).open(LONGEST_NAME).read() == b"copied"
    missing = "m".ljust(MAX_BUCKET_NAME, "m")
    with pytest.raises(CommandError, match="does not exist"):
        call_command("natsos_watch", missing, stdout=io.StringIO(), stderr=io.StringIO())
    call_command("natsos_destroy", bucket, "--noinput", stdout=io.StringIO())
    assert not BucketTools(storage).bucket_exists()
