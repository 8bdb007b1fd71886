"""Bad names are refused before anything reaches NATS; odd but valid names round-trip."""

from __future__ import annotations

import pytest
from django.core.exceptions import SuspiciousFileOperation
from django.core.files.base import ContentFile

from .helpers import stream_state

BAD_NAMES = [
    "/etc/passwd",
    "../escape.txt",
    "a/../../b.txt",
    "a/./b.txt",
    "a//b.txt",
    "dir/",
    "nul\x00byte.txt",
    "line\nbreak.txt",
    "tab\there.txt",
    "bell\x07.txt",
    "del\x7f.txt",
    "lone\udc80surrogate.txt",
    "x" * 1025,
    "..\\windows\\escape.txt",
]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_bad_names_are_refused_and_leave_nothing_behind(storage, name):
    storage.save("keep.txt", ContentFile(b"x"))
    messages = stream_state(storage)["messages"]
    with pytest.raises(SuspiciousFileOperation):
        storage.save(name, ContentFile(b"data"))
    for method in (storage.exists, storage.open, storage.size, storage.delete):
        with pytest.raises(SuspiciousFileOperation):
            method(name)
    assert stream_state(storage)["messages"] == messages


def test_the_empty_name_is_the_root_not_a_file(storage):
    """As with FileSystemStorage: "" is the storage's top directory, so it exists but is no file."""
    storage.save("keep.txt", ContentFile(b"x"))
    messages = stream_state(storage)["messages"]
    with pytest.raises(SuspiciousFileOperation):
        storage.save("", ContentFile(b"data"))
    assert storage.exists("")
    for method in (storage.open, storage.size):
        with pytest.raises(SuspiciousFileOperation):
            method("")
    with pytest.raises(ValueError, match="name must be given"):
        storage.delete("")
    assert stream_state(storage)["messages"] == messages


@pytest.mark.parametrize(
    "name",
    [
        "spaces in name.txt",
        "ünïcödé/名前.txt",
        "emoji 🎉.txt",
        "dots.and.more.dots",
        "star*and>gt$dollar.txt",
        "a.b/c*d/>",
        "x" * 1024,
    ],
)
def test_odd_but_valid_names_round_trip_exactly(storage, name):
    saved = storage.save(name, ContentFile(name.encode()))
    assert saved == name
    assert storage.exists(name)
    assert storage.open(name).read() == name.encode()
    directory, _, file = name.rpartition("/")
    assert file in storage.listdir(directory)[1]
    storage.delete(name)
    assert not storage.exists(name)


def test_subject_tokens_in_names_cannot_reach_other_objects(storage):
    storage.save("a", ContentFile(b"a"))
    storage.save("b", ContentFile(b"b"))
    for probe in ["*", ">", "a.>", "a.*"]:
        assert not storage.exists(probe)
    storage.delete("*")
    storage.delete(">")
    assert storage.exists("a") and storage.exists("b")


def test_save_reads_backslashes_as_slashes_as_django_does_but_a_stored_name_is_never_rewritten(storage):
    assert storage.save("docs\\report.txt", ContentFile(b"x")) == "docs/report.txt"  # Django's save()
    assert storage.listdir("docs") == ([], ["report.txt"])
    assert not storage.exists("docs\\report.txt")  # another name, which another client may use
    with storage.open("docs\\report.txt", "wb") as f:
        f.write(b"the other one")
    assert storage.listdir("") == (["docs"], ["docs\\report.txt"])
    assert storage.open("docs\\report.txt").read() == b"the other one"
    assert storage.open("docs/report.txt").read() == b"x"
