"""The server-side listing index (docs/design-listing.md): listings that live in JetStream, not in each process."""

from __future__ import annotations

import base64
import io
import json
import logging
import re
import time
from typing import Any

import pytest
from django.core.checks import run_checks
from django.core.exceptions import ImproperlyConfigured
from django.core.files.base import ContentFile
from django.core.management import call_command

from natsstorage import NatsStorage
from natsstorage.buckettools import BucketTools
from natsstorage.exceptions import NatsStorageError
from natsstorage.names import index_token, index_tokens

from .helpers import put_foreign, stream_state, with_nats

TRICKY_SEGMENTS = ["", "a", "A", "a.b", "*", ">", "~", "~~", "~7E", "~x", "é", "été", "a b", "a\tb", "-_", "x" * 300]
TOKEN = re.compile(r"^(~|(?:[A-Za-z0-9_-]|~[0-9A-F]{2})+)$")


def test_index_tokens_escape_each_segment_into_one_literal_token():
    assert index_tokens("photos/cat.jpg") == ["photos", "cat~2Ejpg"]
    assert index_tokens("été") == ["~C3~A9t~C3~A9"]
    assert index_tokens("*/>/~tmp") == ["~2A", "~3E", "~7Etmp"]
    assert index_tokens("a//b") == ["a", "~", "b"]
    assert index_tokens("lone\udc80") == ["lone~ED~B2~80"]  # a lone surrogate a JSON name may carry


def test_index_tokens_are_injective_and_valid_subject_tokens():
    tokens = [index_token(segment) for segment in TRICKY_SEGMENTS]
    assert len(set(tokens)) == len(TRICKY_SEGMENTS)
    for token in tokens:
        assert TOKEN.match(token), token
        assert "~~" not in token and "." not in token and token not in ("*", ">")


# -- the index on the server (nats-server 2.12+) -------------------------------------------------------------

SERVER_INDEX = pytest.mark.needs_server("2.12", "the server-side listing index (multi_last)")


def index_request(storage, request: str, stream: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    """A JetStream API request about one of the bucket's index streams (``NSI`` or ``NSD``), as any client makes it."""

    async def ask(nc):
        payload = json.dumps(body).encode() if body is not None else b""
        reply = await nc.request(f"$JS.API.{request}.{stream}_{storage.config.bucket}", payload, timeout=5)
        return json.loads(reply.data)

    return with_nats(storage, ask)


def entry_subjects(storage) -> dict[str, int]:
    info = index_request(storage, "STREAM.INFO", "NSI", {"subjects_filter": ">"})
    return info["state"].get("subjects") or {}


def state_message(storage) -> tuple[dict[str, Any], int]:
    found = index_request(storage, "STREAM.MSG.GET", "NSD", {"last_by_subj": f"$NSD.{storage.config.bucket}"})
    return json.loads(base64.b64decode(found["message"]["data"])), found["message"]["seq"]


def object_store(storage, work):
    async def run(nc):
        return await work(await nc.jetstream().object_store(storage.config.bucket))

    return with_nats(storage, run)


@SERVER_INDEX
def test_a_listing_sees_another_clients_write_and_its_delete(storage):
    storage.save("placeholder", ContentFile(b""))  # creates the bucket, and its index
    object_store(storage, lambda store: store.put("reports/q3.pdf", b"%PDF"))
    assert storage.listdir("reports") == ([], ["q3.pdf"])
    assert storage.exists("reports")
    assert f"$NSI.{storage.config.bucket}.reports.q3~2Epdf" in entry_subjects(storage)  # folded in
    object_store(storage, lambda store: store.delete("reports/q3.pdf"))
    assert storage.listdir("reports") == ([], [])
    assert not storage.exists("reports")
    assert storage.listdir("") == ([], ["placeholder"])
    assert f"$NSI.{storage.config.bucket}.reports.q3~2Epdf" not in entry_subjects(storage)  # removed by the fold


@SERVER_INDEX
def test_a_save_writes_its_entry_and_directory_markers_before_it_returns(storage):
    storage.save("photos/2026/cat.jpg", ContentFile(b"cat"))
    bucket = storage.config.bucket
    assert entry_subjects(storage) == {f"$NSI.{bucket}.photos.2026.cat~2Ejpg": 1}
    markers = index_request(storage, "STREAM.INFO", "NSD", {"subjects_filter": ">"})["state"]["subjects"]
    assert {f"$NSD.{bucket}.photos", f"$NSD.{bucket}.photos.2026"} <= set(markers)
    assert storage.listdir("photos") == (["2026"], [])
    assert storage.exists("photos/2026") and not storage.exists("photos/2025")


@SERVER_INDEX
def test_a_saves_entry_is_the_json_a_fold_writes_whatever_the_name(storage):
    name = 'notes/été "q3" 🐈.txt'  # quotes, accents and a character beyond the BMP: escaped in JSON
    storage.save(name, ContentFile(b"seven b"))
    info = BucketTools(storage).object_info(name)
    subject = f"$NSI.{storage.config.bucket}." + ".".join(index_tokens(name))
    found = index_request(storage, "STREAM.MSG.GET", "NSI", {"last_by_subj": subject})
    data = base64.b64decode(found["message"]["data"])
    entry = json.loads(data)
    assert entry == {"n": name, "u": info.nuid, "s": 7, "t": entry["t"]}
    assert data == json.dumps(entry).encode()  # json.dumps's own form: the bytes a fold writes for it


@SERVER_INDEX
def test_an_entry_whose_metadata_never_landed_is_not_listed_and_is_purged_later(make_storage):
    storage = make_storage(timeout=0.5)  # the grace before such an entry is purged: twice the timeout
    storage.save("real.txt", ContentFile(b"real"))
    bucket = storage.config.bucket
    ghost = f"$NSI.{bucket}.ghost~2Etxt"  # what a writer that crashed between its two publishes leaves

    async def publish(nc):
        entry = {"n": "ghost.txt", "u": "never-landed", "s": 5, "t": time.time_ns()}
        await nc.request(ghost, json.dumps(entry).encode(), timeout=5)

    with_nats(storage, publish)
    assert storage.listdir("") == ([], ["real.txt"])
    assert not storage.exists("ghost.txt")
    time.sleep(1.2)
    assert storage.listdir("") == ([], ["real.txt"])
    deadline = time.monotonic() + 5
    while ghost in entry_subjects(storage) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert ghost not in entry_subjects(storage)


@SERVER_INDEX
def test_metadata_whose_entry_never_landed_is_listed_and_indexed_by_the_next_listing(storage):
    storage.save("raw/ours.txt", ContentFile(b"ours"))
    put_foreign(storage, "raw/theirs.txt", b"theirs")  # metadata alone, as a crashed writer or another client leaves
    assert storage.listdir("raw") == ([], ["ours.txt", "theirs.txt"])
    assert f"$NSI.{storage.config.bucket}.raw.theirs~2Etxt" in entry_subjects(storage)


@SERVER_INDEX
def test_a_fold_moved_back_is_done_again_and_moves_forward(storage):
    storage.save("a.txt", ContentFile(b"a"))
    put_foreign(storage, "b.txt", b"b")
    assert storage.listdir("") == ([], ["a.txt", "b.txt"])
    state, seq = state_message(storage)

    async def move_back(nc):
        headers = {"Nats-Expected-Last-Subject-Sequence": str(seq)}
        back = json.dumps({**state, "folded": 0}).encode()
        await nc.request(f"$NSD.{storage.config.bucket}", back, headers=headers, timeout=5)

    with_nats(storage, move_back)
    assert storage.listdir("") == ([], ["a.txt", "b.txt"])
    assert state_message(storage)[0]["folded"] == stream_state(storage)["last_seq"]


@SERVER_INDEX
def test_names_are_listed_under_their_own_names_whatever_they_hold(make_storage):
    storage = make_storage()
    for name in ["a.b", "*", ">", "~x", "été", "dir.x/a b.txt", "dir.x/~7E"]:
        storage.save(name, ContentFile(b"x"))
    put_foreign(storage, "a//b", b"written by another client")
    expected = (["a", "dir.x"], ["*", ">", "a.b", "~x", "été"])
    assert storage.listdir("") == expected
    assert storage.listdir("dir.x") == ([], ["a b.txt", "~7E"])
    assert storage.listdir("a") == ([], [])  # its one entry is the empty segment, which no listing returns
    assert make_storage(listing="process").listdir("") == expected  # the same as the per-process index's


@SERVER_INDEX
def test_a_directory_whose_witness_is_deleted_is_vouched_for_by_another_name(storage):
    storage.save("a/b/c", ContentFile(b"c"))
    storage.save("a/b/d", ContentFile(b"d"))
    storage.delete("a/b/c")  # the name the marker of a/b was written with
    assert storage.listdir("a") == (["b"], [])
    assert storage.exists("a/b")
    found = index_request(storage, "STREAM.MSG.GET", "NSD", {"last_by_subj": f"$NSD.{storage.config.bucket}.a.b"})
    assert json.loads(base64.b64decode(found["message"]["data"])) == {"n": "a/b/", "w": "a/b/d"}
    storage.delete("a/b/d")
    assert storage.listdir("a") == ([], [])
    assert not storage.exists("a/b") and not storage.exists("a")


@SERVER_INDEX
def test_a_directory_of_1100_files_is_listed_whole(storage):
    ours = [f"big/{i:04}.txt" for i in range(600)]
    theirs = [f"big/{i:04}.txt" for i in range(600, 1100)]
    for name in ours:
        storage.save(name, ContentFile(b"x"))
    for name in theirs:  # another client's: the fold indexes them, in more than one batch
        put_foreign(storage, name, b"x")
    assert storage.listdir("big") == ([], [name.removeprefix("big/") for name in ours + theirs])
    assert len(entry_subjects(storage)) == 1100


@SERVER_INDEX
def test_names_too_long_or_too_deep_for_a_subject_are_listed_from_overflow_entries(storage):
    deep = "/".join(["d"] * 39 + ["f.txt"])
    long = "é" * 512  # 1,024 bytes; escaped, three times that
    storage.save(deep, ContentFile(b"deep"))
    storage.save(long, ContentFile(b"long"))
    assert storage.listdir("") == (["d"], [long])
    assert storage.listdir("/".join(["d"] * 39)) == ([], ["f.txt"])
    assert storage.listdir("/".join(["d"] * 35)) == (["d"], [])
    assert storage.exists("/".join(["d"] * 35)) and storage.exists("d/d")
    assert not storage.exists("/".join(["d"] * 35) + "/e")
    assert sum("~~" in subject for subject in entry_subjects(storage)) == 2


@SERVER_INDEX
def test_an_old_bucket_warns_once_lists_the_old_way_then_is_indexed(make_storage, bucket_name, caplog):
    async def fill(nc):
        store = await nc.jetstream().create_object_store(bucket_name)
        for i in range(500):
            await store.put(f"d{i % 3}/{i:03}.txt", b"x")

    storage = make_storage()
    with_nats(storage, fill)
    expected = ([], [f"{i:03}.txt" for i in range(1, 500, 3)])
    with caplog.at_level(logging.WARNING, logger="natsstorage"):
        assert storage.listdir("d1") == expected
        assert storage.exists("d2") and not storage.exists("d3")
    (warning,) = [record.getMessage() for record in caplog.records if "listing index" in record.getMessage()]
    assert "has no streams NSI_" in warning and f"manage.py natsos_index {bucket_name}" in warning
    with pytest.raises(NatsStorageError, match="no server-side listing index"):
        make_storage(listing="server").listdir("d1")

    call_command("natsos_index", bucket_name, "--no-progress", stdout=io.StringIO())
    assert len(entry_subjects(storage)) == 500
    assert make_storage(listing="server").listdir("d1") == expected  # from the index now, or it would raise
    assert storage.listdir("d1") == expected
    assert state_message(storage)[0]["built"] is True


@SERVER_INDEX
def test_an_interrupted_build_resumes_where_it_stopped(make_storage, bucket_name):
    storage = make_storage()
    storage.save("first", ContentFile(b""))
    BucketTools(storage).drop_index()
    for i in range(30):
        put_foreign(storage, f"n/{i:02}", b"x")
    call_command("natsos_index", bucket_name, "--no-progress", stdout=io.StringIO())
    state, seq = state_message(storage)
    index_request(storage, "STREAM.PURGE", "NSI")  # as if the first run had written nothing yet ...

    async def interrupted(nc):  # ... and had stopped after the first half of the names
        headers = {"Nats-Expected-Last-Subject-Sequence": str(seq)}
        half = {**state, "built": False, "build_after": state["folded"] // 2}
        await nc.request(f"$NSD.{bucket_name}", json.dumps(half).encode(), headers=headers, timeout=5)

    with_nats(storage, interrupted)
    call_command("natsos_index", bucket_name, "--no-progress", stdout=io.StringIO())
    assert 0 < len(entry_subjects(storage)) < 31  # only what came after build_after was read again
    assert state_message(storage)[0]["built"] is True


@SERVER_INDEX
def test_natsos_index_drop_sends_the_bucket_back_to_the_old_way(make_storage, bucket_name, caplog):
    make_storage().save("a/b", ContentFile(b""))
    out = io.StringIO()
    call_command("natsos_index", bucket_name, "--drop", stdout=out)
    assert "Dropped" in out.getvalue()
    storage = make_storage()  # one that did not make the bucket (which would make its index again)
    assert index_request(storage, "STREAM.INFO", "NSI")["error"]["err_code"] == 10059
    with caplog.at_level(logging.WARNING, logger="natsstorage"):
        assert storage.listdir("a") == ([], ["b"])
    assert any("no server-side listing index" in record.getMessage() for record in caplog.records)


@pytest.mark.older_server("2.12", "a server that answers no multi_last")
def test_an_older_server_lists_the_old_way_with_one_warning(storage, caplog):
    storage.save("d/a.txt", ContentFile(b"a"))
    with caplog.at_level(logging.WARNING, logger="natsstorage"):
        assert storage.listdir("d") == ([], ["a.txt"])
        assert storage.exists("d") and not storage.exists("e")
    (warning,) = [record.getMessage() for record in caplog.records if "listing index" in record.getMessage()]
    assert "answers no multi_last" in warning


def test_listing_process_never_looks_for_the_index_nor_warns(make_storage, caplog):
    storage = make_storage(listing="process")
    storage.save("d/a.txt", ContentFile(b"a"))
    with caplog.at_level(logging.WARNING, logger="natsstorage"):
        assert storage.listdir("d") == ([], ["a.txt"])
    assert not caplog.records


@SERVER_INDEX
def test_status_counts_the_names_of_the_index(storage):
    for name in ["a", "b/c", "b/d"]:
        storage.save(name, ContentFile(b"x"))
    put_foreign(storage, "e", b"theirs")
    storage.delete("a")
    assert BucketTools(storage).status().objects == 3
    assert len(entry_subjects(storage)) == 3  # the count is the index's own


@SERVER_INDEX
def test_an_account_that_may_not_create_the_index_lists_the_old_way_with_one_warning(own_server, bucket_name, caplog):
    denied = json.dumps([f"$JS.API.STREAM.CREATE.{kind}_{bucket_name}" for kind in ("NSI", "NSD")])
    alice = f'{{ user: alice, password: "pw", permissions: {{ publish: {{ deny: {denied} }} }} }}'
    nats = own_server(f"authorization {{ users: [ {alice} ] }}")
    storage = NatsStorage(bucket_name, servers=nats.url, user="alice", password="pw", timeout=1.0)
    with caplog.at_level(logging.WARNING, logger="natsstorage"):
        storage.save("d/a.txt", ContentFile(b"a"))  # the bucket is made; its index is refused
        assert storage.listdir("d") == ([], ["a.txt"])
        assert storage.exists("d") and not storage.exists("e")
        assert storage.listdir("") == (["d"], [])
    (warning,) = [record.getMessage() for record in caplog.records if "listing index" in record.getMessage()]
    assert f"creating stream NSI_{bucket_name} was refused" in warning


def test_the_listing_option_is_checked(settings):
    settings.STORAGES = {
        **settings.STORAGES,
        "nats": {"BACKEND": "natsstorage.NatsStorage", "OPTIONS": {"bucket": "ok", "listing": "everywhere"}},
    }
    (error,) = [error for error in run_checks() if error.id == "natsstorage.E002"]
    assert "['listing'] = 'everywhere' is not valid" in error.msg
    assert error.hint == "Use 'auto', 'server' or 'process'."
    with pytest.raises(ImproperlyConfigured, match="listing"):
        NatsStorage("ok", listing="everywhere")


@SERVER_INDEX
def test_a_link_another_client_wrote_is_listed_and_indexed_as_a_link(storage):
    storage.save("target.txt", ContentFile(b"target"))
    link = {"link": {"bucket": storage.config.bucket, "name": "target.txt"}}
    put_foreign(storage, "alias.txt", b"", options=link)  # what `nats object link` writes
    assert storage.listdir("") == ([], ["alias.txt", "target.txt"])
    found = index_request(
        storage, "STREAM.MSG.GET", "NSI", {"last_by_subj": f"$NSI.{storage.config.bucket}.alias~2Etxt"}
    )
    entry = json.loads(base64.b64decode(found["message"]["data"]))
    assert entry["n"] == "alias.txt" and entry["l"] == 1 and entry["s"] == 0


@SERVER_INDEX
def test_an_index_that_refuses_writes_fails_no_save_and_lists_the_old_way(storage, caplog):
    storage.save("a", ContentFile(b"a"))
    config = index_request(storage, "STREAM.INFO", "NSI")["config"]
    full = {**config, "max_msgs": 1, "discard": "new"}  # as a full index would: every new entry refused
    assert "error" not in index_request(storage, "STREAM.UPDATE", "NSI", full)
    with caplog.at_level(logging.WARNING, logger="natsstorage"):
        storage.save("b", ContentFile(b"b"))  # its entry is refused, unasked: the save succeeds
        put_foreign(storage, "c", b"c")  # another client's: the fold cannot index it, and must not skip it
        assert storage.listdir("") == ([], ["a", "b", "c"])
        assert storage.exists("c") and not storage.exists("d")
    messages = [record.getMessage() for record in caplog.records]
    assert sum("writing to its streams failed" in message for message in messages) == 1


@SERVER_INDEX
@pytest.mark.parametrize("segments", [30, 31, 32, 33])
def test_names_about_as_deep_as_a_subject_allows_are_listed_in_their_directory(storage, segments):
    name = "/".join(["d"] * (segments - 1) + ["f.txt"])
    storage.save(name, ContentFile(b"x"))
    directory = name.rpartition("/")[0]
    assert storage.listdir(directory) == ([], ["f.txt"])
    assert storage.listdir(directory.rpartition("/")[0]) == (["d"], [])
    assert storage.exists(directory)


# -- the admin's objects page -------------------------------------------------------------------


def objects_page(admin_client, storage, **query):
    from django.urls import reverse

    url = reverse("admin:natsstorage_bucket_objects", kwargs={"bucket": storage.config.bucket})
    return admin_client.get(url, query)


@SERVER_INDEX
@pytest.mark.django_db
def test_the_admin_pages_by_name_walk_the_index_in_name_order(admin_client, storage, monkeypatch):
    from natsstorage import index
    from natsstorage.admin.buckets import BucketAdmin

    deep = "a/" + "s/" * 40 + "too-deep.txt"  # an overflow entry, under "a"
    for name in ("b.txt", "a/z.txt", "a/b/c.txt", "a/b.txt", "a.txt", "a/b/a/deep.txt", deep, "c/d.txt"):
        storage.save(name, ContentFile(b"x"))
    monkeypatch.setattr(index.Index, "of", None)  # the per-process index is never made: the server's answers
    monkeypatch.setattr(BucketAdmin, "list_per_page", 3)
    everything = ["a.txt", "a/b.txt", "a/b/a/deep.txt", "a/b/c.txt", deep, "a/z.txt", "b.txt", "c/d.txt"]
    pages = [
        [info.name for info in objects_page(admin_client, storage, p=number).context["page"]] for number in (1, 2, 3)
    ]
    assert pages == [everything[:3], everything[3:6], everything[6:]]
    backwards = everything[::-1]  # page 3 skips whole directories by their count, unread
    pages = [
        [info.name for info in objects_page(admin_client, storage, p=number, o="-name").context["page"]]
        for number in (1, 2, 3)
    ]
    assert pages == [backwards[:3], backwards[3:6], backwards[6:]]
    response = objects_page(admin_client, storage, q="a/b", o="-name")
    assert [info.name for info in response.context["page"]] == ["a/b/c.txt", "a/b/a/deep.txt", "a/b.txt"]
    assert response.context["page"].paginator.count == 3
    assert objects_page(admin_client, storage, q="a/").context["page"].paginator.count == 5
    for hostile in ("é*>. /" * 600, "a/" * 40, "a/" * 40 + "x"):  # subjects too long or deep for a directory
        response = objects_page(admin_client, storage, q=hostile, o="-size")
        assert response.status_code == 200 and response.context["page"].paginator.count == 0
    for under in ("a/" + "s/" * 35, "a/" + "s/" * 40 + "too"):  # a directory too deep: its overflow home's entries
        response = objects_page(admin_client, storage, q=under)
        assert [info.name for info in response.context["page"]] == [deep]


@SERVER_INDEX
def test_every_page_by_name_is_its_slice_of_the_sorted_names_and_the_last_directory_is_not_counted(
    storage, monkeypatch
):
    from natsstorage import index, listingpages

    deep = "m/" + "s/" * 40 + "deep.txt"  # an overflow entry, handed down to m/
    names = ["a.txt", "m/1.txt", "m/2/x.txt", "m/3.txt", deep, "n.txt", "z/1.txt", "z/2.txt", "z/3/y.txt", "z/4.txt"]
    for name in names:
        storage.save(name, ContentFile(b"x"))
    monkeypatch.setattr(index.Index, "of", None)  # the server's index answers
    tools = BucketTools(storage)
    for descending in (False, True):
        ordered = sorted(names, reverse=descending)
        for limit in (1, 2, 3):
            for offset in range(len(names) + 1):
                page = tools.listing_page(order="name", descending=descending, offset=offset, limit=limit)
                assert [entry.name for entry in page.entries] == ordered[offset : offset + limit], (offset, limit)
                assert page.total == len(names)

    counted = []
    count_subtree = listingpages._count_subtree
    monkeypatch.setattr(listingpages, "_count_subtree", lambda *args: counted.append(args[2]) or count_subtree(*args))
    page = tools.listing_page(order="name", offset=7, limit=2)  # past a.txt, m/ (5 names) and n.txt
    assert [entry.name for entry in page.entries] == ["z/2.txt", "z/3/y.txt"]
    assert counted == [["m"]]  # z/ holds what is left of the 10: the server never walks it to count it


@SERVER_INDEX
def test_natsos_ls_and_bucket_listings_walk_the_index_page_after_page(storage, monkeypatch):
    from natsstorage import index

    names = sorted([f"d{i % 3}/{i:04}.txt" for i in range(2500)] + ["a.txt", "d1.txt", "d1/e/f.txt", "z.txt"])
    for name in names[:1200]:
        storage.save(name, ContentFile(b"x"))
    for name in names[1200:]:  # another client's: folded in when the listing starts
        put_foreign(storage, name, b"x")
    storage.delete("z.txt")
    monkeypatch.setattr(index.Index, "of", None)  # the per-process index of every name is never made
    live = names[:-1]
    assert [entry.name for entry in BucketTools(storage).listing()] == live  # more than two batches of 1,024
    assert [entry.name for entry in BucketTools(storage).listing("d1")] == [n for n in live if n.startswith("d1")]

    out = io.StringIO()
    call_command("natsos_ls", storage.config.bucket, stdout=out)
    lines = out.getvalue().splitlines()
    assert lines[0].split()[0] == "SIZE" and [line.split()[-1] for line in lines[1:-1]] == live
    assert lines[-1] == "2503 objects, 2.4 KiB"
    assert len({line.rindex(" ") for line in lines[1:-1]}) == 1  # columns stay aligned across pages

    listing = BucketTools(storage).listing()
    assert next(listing).name == "a.txt"
    listing.close()  # left early: the walk on the loop is closed, and the next call goes on as usual
    assert storage.listdir("d1/e") == ([], ["f.txt"])


@SERVER_INDEX
@pytest.mark.django_db
def test_the_admin_refuses_sorts_and_pages_past_their_bounds_with_a_message(admin_client, storage, monkeypatch):
    from natsstorage import listingpages
    from natsstorage.admin.buckets import BucketAdmin

    for number in range(6):
        storage.save(f"logs/{number}.txt", ContentFile(b"x" * number))
    monkeypatch.setattr(BucketAdmin, "list_per_page", 2)
    monkeypatch.setattr(listingpages, "ADMIN_SORT_LIMIT", 5)
    response = objects_page(admin_client, storage, q="logs/", o="-size")
    assert response.status_code == 200
    assert "Sorting by size reads every object under this prefix (6), more than 5" in response.text
    assert [info.name for info in response.context["page"]] == ["logs/0.txt", "logs/1.txt"]  # by name instead
    monkeypatch.setattr(listingpages, "ADMIN_MAX_OFFSET", 2)
    response = objects_page(admin_client, storage, p=3)
    assert response.status_code == 200
    assert "narrow the search" in response.text
