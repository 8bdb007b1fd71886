"""Files opened to be edited (``r+b``, ``w+b``, ``a``/``ab``), as S3File supports them: a spooled copy,
written back on close."""

from __future__ import annotations

import pytest
from django.core.files.base import ContentFile

from .helpers import random_bytes


def test_w_plus_b_writes_seeks_and_reads_back_before_close(storage):
    with storage.open("new.bin", "w+b") as file:
        file.write(b"hello world")
        file.seek(0)
        assert file.read(5) == b"hello"
        assert file.size == 11
        assert not storage.exists("new.bin")  # the object appears on close, whole
    with storage.open("new.bin") as file:
        assert file.read() == b"hello world"


def test_w_plus_b_replaces_an_object_with_exactly_that_name(storage):
    storage.save("a.txt", ContentFile(b"old content"))
    with storage.open("a.txt", "wb+") as file:
        assert file.read() == b""
        file.write(b"new")
    assert storage.listdir("") == ([], ["a.txt"])
    assert storage.open("a.txt").read() == b"new"


def test_r_plus_b_edits_in_place_and_a_closed_file_reopens(storage):
    storage.save("a.txt", ContentFile(b"0123456789"))
    file = storage.open("a.txt", "r+b")
    assert file.read(3) == b"012"
    file.seek(5)
    file.write(b"XY")
    file.seek(0)
    assert file.read() == b"01234XY789"
    file.close()
    assert storage.open("a.txt").read() == b"01234XY789"
    with file.open() as reopened:  # Django's File.open(): read anew from the bucket
        assert reopened.read() == b"01234XY789"


def test_r_plus_b_writes_nothing_back_when_nothing_changed(storage):
    storage.save("a.txt", ContentFile(b"same"))
    seq = storage.info("a.txt").seq
    with storage.open("a.txt", "rb+") as file:
        assert file.read() == b"same"
    assert storage.info("a.txt").seq == seq


def test_r_plus_b_of_a_missing_object_raises_file_not_found(storage):
    with pytest.raises(FileNotFoundError):
        storage.open("missing.txt", "r+b")
    assert not storage.exists("missing.txt")


@pytest.mark.parametrize("mode", ["ab", "a+b", "a"])
def test_append_modes_add_to_the_end(storage, mode):
    storage.save("log.txt", ContentFile(b"one\n"))
    with storage.open("log.txt", mode) as file:
        file.write(b"two\n" if "b" in mode else "two\n")
        file.seek(0)
        file.write(b"three\n" if "b" in mode else "three\n")  # appended, wherever the file was
    assert storage.open("log.txt").read() == b"one\ntwo\nthree\n"


def test_append_to_a_missing_object_creates_it(storage):
    with storage.open("new.log", "a") as file:
        file.write("first\n")
    assert storage.open("new.log", "r").read() == "first\n"


def test_text_forms_take_encoding(storage):
    storage.save("notes.txt", ContentFile("héllo".encode("latin-1")))
    with storage.open("notes.txt", "r+", encoding="latin-1") as file:
        assert file.read() == "héllo"
        file.write(" wörld")
    assert storage.open("notes.txt").read() == "héllo wörld".encode("latin-1")


def test_the_written_back_object_keeps_its_content_type_and_digest(storage):
    upload = ContentFile(b"\x89PNG...", name="photo")
    upload.content_type = "image/png"
    storage.save("photo", upload)
    with storage.open("photo", "ab") as file:
        file.write(b"more")
    info = storage.info("photo")
    assert info.content_type == "image/png"
    assert storage.open("photo").read() == b"\x89PNG...more"  # every read checks the SHA-256 digest


def test_an_error_inside_with_writes_nothing_back(storage):
    storage.save("a.txt", ContentFile(b"kept"))
    with pytest.raises(RuntimeError), storage.open("a.txt", "r+b") as file:
        file.write(b"lost")
        raise RuntimeError
    assert storage.open("a.txt").read() == b"kept"


def test_an_object_bigger_than_memory_spools_to_disk_and_round_trips(storage, settings, tmp_path):
    settings.FILE_UPLOAD_MAX_MEMORY_SIZE = 64 * 1024
    settings.FILE_UPLOAD_TEMP_DIR = str(tmp_path)
    data = random_bytes(3 * 1024 * 1024)
    storage.save("big.bin", ContentFile(data))
    with storage.open("big.bin", "r+b") as file:
        assert file.file._rolled  # a look inside: the copy is on disk (an unnamed temporary file), not in memory
        file.seek(len(data) - 3)
        file.write(b"end")
    assert storage.open("big.bin").read() == data[:-3] + b"end"
