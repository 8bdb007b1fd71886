"""Switching BACKEND from FileSystemStorage or S3Storage changes nothing else: Django's Storage contract."""

from __future__ import annotations

import asyncio
import copy
import pickle
import threading
from pathlib import Path

import pytest
from django.core.exceptions import SuspiciousFileOperation
from django.core.files.base import ContentFile
from django.db import models
from django.db.migrations.writer import MigrationWriter
from django.urls import NoReverseMatch, reverse_lazy

from natsstorage import NatsStorage

from .helpers import MiB, random_bytes, stream_state

# -- open() modes ------------------------------------------------------------------


def test_text_mode_reads_lines_like_a_local_file(storage):
    storage.save("notes.txt", ContentFile("première\r\nsecond\nthird".encode()))
    with storage.open("notes.txt", "r", encoding="utf-8") as f:
        assert f.readline() == "première\n"  # universal newlines, as open() gives
        assert f.readline() == "second\n"
    with storage.open("notes.txt", "r", encoding="utf-8") as f:
        assert list(f) == ["première\n", "second\n", "third"]
    with storage.open("notes.txt", "r", encoding="utf-8", newline="") as f:
        assert f.read() == "première\r\nsecond\nthird"


def test_writing_streams_and_the_object_appears_only_on_close(storage):
    data = random_bytes(3 * MiB + 5)
    f = storage.open("big.bin", "wb")
    for start in range(0, len(data), 700_000):
        f.write(data[start : start + 700_000])
    assert not storage.exists("big.bin")  # chunks are out, the name is not
    f.close()
    assert storage.size("big.bin") == len(data)
    with storage.open("big.bin") as read:
        assert read.read() == data


def test_text_writes_are_encoded_and_replace_the_object(storage):
    storage.save("greeting.txt", ContentFile(b"old"))
    with storage.open("greeting.txt", "w", encoding="utf-8") as f:
        f.write("grüße\n")
    assert storage.open("greeting.txt").read() == "grüße\n".encode()
    assert storage.info("greeting.txt").content_type == "text/plain"


def test_an_error_inside_with_leaves_no_object_and_no_chunks(storage):
    storage.save("keep.txt", ContentFile(b"x"))
    messages = stream_state(storage)["messages"]
    with pytest.raises(RuntimeError), storage.open("half.bin", "wb") as f:
        f.write(random_bytes(2 * MiB))
        raise RuntimeError("the caller failed halfway")
    assert not storage.exists("half.bin")
    assert stream_state(storage)["messages"] == messages


def test_exclusive_mode_refuses_a_taken_name(storage):
    storage.save("taken.txt", ContentFile(b"x"))
    with pytest.raises(FileExistsError):
        storage.open("taken.txt", "xb")
    with storage.open("new.txt", "x") as f:
        f.write("fresh")
    assert storage.open("new.txt").read() == b"fresh"


def test_writing_follows_the_name_rules(storage):
    with pytest.raises(SuspiciousFileOperation):
        storage.open("../escape.txt", "wb")


def test_field_file_opens_in_text_mode_and_reopens(storage):
    class Note(models.Model):
        attachment = models.FileField(storage=storage)

        class Meta:
            app_label = "testapp"

    name = storage.save("note.txt", ContentFile(b"a\nb\n"))
    note = Note(attachment=name)
    with note.attachment.open("r") as f:
        assert f.readlines() == ["a\n", "b\n"]
    with note.attachment.open("rb") as f:
        assert f.read() == b"a\nb\n"


def test_async_writer_streams_and_commits_on_close(storage):
    async def write() -> str:
        async with await storage.aopen("async.bin", "wb") as f:
            await f.write(b"a" * 100)
            await f.write(b"b" * 100)
        return f.name

    assert asyncio.run(write()) == "async.bin"
    assert storage.open("async.bin").read() == b"a" * 100 + b"b" * 100


def test_async_writer_leaves_nothing_after_an_error(storage):
    async def fail() -> None:
        async with await storage.aopen("async.bin", "wb") as f:
            await f.write(b"data")
            raise RuntimeError("no")

    with pytest.raises(RuntimeError):
        asyncio.run(fail())
    assert not storage.exists("async.bin")


# -- directories, names, deletion ------------------------------------------------------


@pytest.mark.parametrize("top", ["", ".", "./", Path(""), None])
def test_listdir_of_the_top_in_any_spelling(storage, top):
    storage.save("a.txt", ContentFile(b"x"))
    storage.save("sub/b.txt", ContentFile(b"x"))
    assert storage.listdir(top) == (["sub"], ["a.txt"])


def test_exists_knows_directories_and_the_root(storage):
    assert storage.exists("")
    assert not storage.exists("path/to")
    storage.save("path/to/file.txt", ContentFile(b"x"))
    assert storage.exists("path/to")
    assert storage.exists("path")
    assert not storage.exists("pat")
    with pytest.raises(SuspiciousFileOperation):
        storage.exists("..")


def test_delete_without_a_name_is_refused(storage):
    with pytest.raises(ValueError, match="name must be given"):
        storage.delete(None)


def test_overwriting_still_truncates_names_to_max_length(make_storage):
    storage = make_storage(file_overwrite=True)
    name = storage.save("a-rather-long-name.txt", ContentFile(b"x"), max_length=12)
    assert len(name) <= 12 and name.endswith(".txt")
    assert storage.save(name, ContentFile(b"y"), max_length=12) == name  # replaced, not renamed
    assert storage.open(name).read() == b"y"


# -- location: media and static in one bucket -------------------------------------------


def test_location_keeps_each_storage_in_its_prefix(make_storage):
    media = make_storage(location="media")
    static = make_storage(location="static/")
    media.save("a.txt", ContentFile(b"media"))
    static.save("a.txt", ContentFile(b"static"))
    assert media.open("a.txt").read() == b"media"
    assert static.open("a.txt").read() == b"static"
    assert media.listdir("") == ([], ["a.txt"])
    assert media.info("a.txt").name == "media/a.txt"  # the bucket's own name for it
    with pytest.raises(SuspiciousFileOperation):
        media.open("../static/a.txt")
    media.delete("a.txt")
    assert static.exists("a.txt")


def test_urls_are_relative_to_the_location_and_served(make_storage, client, settings):
    media = make_storage(location="media", public=True)
    settings.STORAGES = {**settings.STORAGES, "default": {"BACKEND": "natsstorage.NatsStorage", "OPTIONS": {}}}
    settings.STORAGES["default"]["OPTIONS"] = {"bucket": media.config.bucket, "location": "media", "public": True}
    media.save("docs/a.txt", ContentFile(b"hello"))
    assert media.url("docs/a.txt") == f"/files/{media.config.bucket}/media/docs/a.txt"
    assert media.url(None) == f"/files/{media.config.bucket}/media/"
    assert b"".join(client.get(media.url("docs/a.txt")).streaming_content) == b"hello"
    # Another prefix of the same bucket is no storage's: not served.
    media.bucket  # noqa: B018 - the bucket exists
    assert client.get(f"/files/{media.config.bucket}/elsewhere.txt").status_code == 404


# -- URLs ------------------------------------------------------------------------------


def test_base_url_is_a_prefix_like_media_url_and_may_be_lazy():
    storage = NatsStorage("lazy", base_url=reverse_lazy("no-such-view"), public=True)  # not evaluated yet
    with pytest.raises(NoReverseMatch):
        storage.url("a.txt")
    plain = NatsStorage("plain", base_url="/media", public=True)
    assert plain.url("a/b\\c.txt") == "/media/a/b/c.txt"
    assert plain.url("/evil.com") == "/media/evil.com"
    assert plain.url(None) == "/media/"


def test_url_expire_and_parameters_are_signed_and_sent(make_storage, client, settings):
    files = make_storage()
    settings.STORAGES = {**settings.STORAGES, "default": {"BACKEND": "natsstorage.NatsStorage", "OPTIONS": {}}}
    settings.STORAGES["default"]["OPTIONS"] = {"bucket": files.config.bucket}
    files.save("report.pdf", ContentFile(b"%PDF"))
    url = files.url(
        "report.pdf",
        expire=60,
        parameters={"ResponseContentDisposition": 'attachment; filename="Q3.pdf"', "Content-Language": "de"},
    )
    response = client.get(url)
    assert response.status_code == 200
    assert response["Content-Disposition"] == 'attachment; filename="Q3.pdf"'
    assert response["Content-Language"] == "de"
    assert client.get(url.replace("Q3.pdf", "evil.pdf")).status_code == 403
    with pytest.raises(ValueError, match="not 'X-Evil'"):
        files.url("report.pdf", parameters={"X-Evil": "1"})


def test_object_parameters_are_stored_and_sent(make_storage, client, settings):
    class Cached(NatsStorage):
        def get_object_parameters(self, name: str) -> dict[str, str]:
            return {**super().get_object_parameters(name), "Content-Language": name.split(".")[-2]}

    files = Cached(make_storage().config.bucket, object_parameters={"Cache-Control": "max-age=86400"}, public=True)
    settings.STORAGES = {**settings.STORAGES, "default": {"BACKEND": "natsstorage.NatsStorage", "OPTIONS": {}}}
    settings.STORAGES["default"]["OPTIONS"] = {"bucket": files.config.bucket, "public": True}
    files.save("page.fr.txt", ContentFile(b"bonjour"))
    assert files.info("page.fr.txt").headers["Cache-Control"] == ["max-age=86400"]
    response = client.get(files.url("page.fr.txt"))
    assert response["Cache-Control"] == "max-age=86400"
    assert response["Content-Language"] == "fr"


@pytest.mark.django_db
def test_object_parameters_are_asked_once_per_save_in_the_callers_thread(make_storage):
    """An override may use the database (no event loop runs in the caller's thread) and is not asked twice."""
    from django.contrib.auth.models import User

    asked: list[threading.Thread] = []

    class Owned(NatsStorage):
        def get_object_parameters(self, name: str) -> dict[str, object]:
            asked.append(threading.current_thread())
            return {"Metadata": {"users": str(User.objects.count())}}

    files = Owned(make_storage().config.bucket)
    for name, size in (("small.bin", 10), ("large.bin", 3 * MiB)):
        files.save(name, ContentFile(random_bytes(size)))
        assert files.info(name).metadata == {"users": "0"}
    assert asked == [threading.current_thread()] * 2


def test_a_stored_inline_disposition_cannot_make_html_run_in_the_site(make_storage, client, settings):
    files = make_storage(public=True, object_parameters={"Content-Disposition": "inline"})
    settings.STORAGES = {**settings.STORAGES, "default": {"BACKEND": "natsstorage.NatsStorage", "OPTIONS": {}}}
    settings.STORAGES["default"]["OPTIONS"] = {"bucket": files.config.bucket, "public": True}
    files.save("x.html", ContentFile(b"<script>alert(1)</script>"))
    assert client.get(files.url("x.html"))["Content-Disposition"].startswith("attachment")


# -- migrations and copies -----------------------------------------------------------------


def test_migrations_never_hold_secrets():
    def migration(token: str) -> str:
        storage = NatsStorage("configs", token=token, password=token, location="media", servers="nats://u:p@h:4222")
        return MigrationWriter.serialize(models.FileField(storage=storage))[0]

    written = migration("s3cr3t")
    assert "s3cr3t" not in written and "u:p@" not in written
    assert "location='media'" in written
    assert migration("another") == written  # a changed secret alone makes no new migration


def test_a_storage_used_by_threads_and_coroutines_can_be_pickled_and_copied(storage):
    storage.save("a.txt", ContentFile(b"x"))
    threads = [threading.Thread(target=storage.exists, args=("a.txt",)) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    async def many() -> None:
        await asyncio.gather(*(storage.aexists("a.txt") for _ in range(8)))

    asyncio.run(many())
    for copied in (pickle.loads(pickle.dumps(storage)), copy.deepcopy(storage), copy.copy(storage)):
        assert copied.open("a.txt").read() == b"x"
        assert copied.deconstruct() == storage.deconstruct()
