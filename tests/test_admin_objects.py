"""The admin's pages for objects: one object's metadata and its editing, deleting many at once, uploading."""

from __future__ import annotations

import json
import os
import re

import pytest
from django.contrib.admin.models import ADDITION, CHANGE, DELETION, LogEntry
from django.contrib.auth.models import Permission
from django.core.files.base import ContentFile
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse

from natsstorage import NatsStorage
from natsstorage.admin import detail
from natsstorage.buckettools import BucketTools
from natsstorage.objectstore import META_SUBJECT, encode_key
from natsstorage.uploads import StagedFile

from .helpers import MiB, put_foreign, random_bytes, stream_state, with_nats

pytestmark = pytest.mark.django_db


def objects_url(bucket: str) -> str:
    return reverse("admin:natsstorage_bucket_objects", kwargs={"bucket": bucket})


def object_url(bucket: str, name: str) -> str:
    return reverse("admin:natsstorage_bucket_object", kwargs={"bucket": bucket, "name": name})


def upload_url(bucket: str) -> str:
    return reverse("admin:natsstorage_bucket_upload", kwargs={"bucket": bucket})


def logged() -> list[tuple[int, str, str]]:
    return [(entry.action_flag, entry.object_repr, entry.change_message) for entry in LogEntry.objects.order_by("id")]


def add_metadata_as_nats_go_does(storage: NatsStorage, name: str, metadata: dict[str, str]) -> None:
    """nats.go's ObjectMeta carries a ``metadata`` map, which nats-py and NatsStorage do not write."""
    info = storage.info(name)
    raw = {**info.raw, "metadata": metadata}
    subject = META_SUBJECT.format(bucket=storage.config.bucket, key=encode_key(name))

    async def publish(nc):
        await nc.request(subject, json.dumps(raw).encode(), timeout=5, headers={"Nats-Rollup": "sub"})

    with_nats(storage, publish)


# -- one object --------------------------------------------------------------------------


def test_the_object_page_shows_all_its_metadata(admin_client, make_storage):
    storage = make_storage(chunk_size=128 * 1024)
    storage.save("docs/report.pdf", ContentFile(random_bytes(300_000)))
    storage.update_meta(
        "docs/report.pdf", description="Q3", headers={"Content-Type": "application/pdf", "X-Team": "ops"}
    )
    add_metadata_as_nats_go_does(storage, "docs/report.pdf", {"owner": "alice"})
    info = storage.info("docs/report.pdf")
    bucket = storage.config.bucket
    assert object_url(bucket, "docs/report.pdf") in admin_client.get(objects_url(bucket)).text  # names link here
    text = admin_client.get(object_url(bucket, "docs/report.pdf")).text
    for shown in (
        "docs/report.pdf",
        "293.0 KiB (300000 bytes)",
        "3 chunks of up to 128.0 KiB",
        f'<code class="nats-digest">{info.digest}</code>',  # whole, on one line
        info.nuid,
        "Q3",
        "<code>Content-Type: application/pdf</code>",
        "<code>X-Team: ops</code>",
        "<code>owner: alice</code>",
        reverse("admin:natsstorage_bucket_download", kwargs={"bucket": bucket, "name": "docs/report.pdf"}),
        reverse("admin:natsstorage_bucket_delete", kwargs={"bucket": bucket, "name": "docs/report.pdf"}),
    ):
        assert shown in text


def test_editing_an_objects_description_and_headers(admin_client, storage):
    storage.save("a.txt", ContentFile(b"hello"))
    bucket = storage.config.bucket
    page = admin_client.get(object_url(bucket, "a.txt"))
    form = page.context["form"]
    assert form.initial["headers"] == "Content-Type: text/plain; charset=utf-8"  # its bytes are UTF-8
    response = admin_client.post(
        object_url(bucket, "a.txt"),
        {
            "description": "greeting",
            "headers": "Content-Type: text/plain; charset=utf-8\n\nCache-Control: max-age=60\n",
            "seq": form.initial["seq"],
        },
        follow=True,
    )
    assert "Changed the description and the headers of “a.txt”." in response.text
    info = storage.info("a.txt")
    assert info.description == "greeting"
    assert dict(info.headers) == {"Content-Type": ["text/plain; charset=utf-8"], "Cache-Control": ["max-age=60"]}
    assert storage.open("a.txt").read() == b"hello"  # the data is untouched
    assert logged() == [
        (
            CHANGE,
            f"{bucket}/a.txt",
            f"Changed the description and the headers of the object “a.txt” in the NATS bucket “{bucket}”.",
        )
    ]


def test_an_edit_with_a_bad_header_line_changes_nothing_and_says_why(admin_client, storage):
    storage.save("a.txt", ContentFile(b"hello"))
    seq = storage.info("a.txt").seq
    response = admin_client.post(
        object_url(storage.config.bucket, "a.txt"), {"description": "x", "headers": "no colon here", "seq": seq}
    )
    assert response.status_code == 200
    assert "Line 1 is not “Name: value”" in response.text
    assert storage.info("a.txt").description == "" and LogEntry.objects.count() == 0


def test_an_edit_over_a_change_made_meanwhile_is_refused(admin_client, storage):
    storage.save("a.txt", ContentFile(b"hello"))
    seq = storage.info("a.txt").seq
    storage.update_meta("a.txt", description="theirs")
    response = admin_client.post(
        object_url(storage.config.bucket, "a.txt"), {"description": "mine", "headers": "", "seq": seq}
    )
    assert "changed by someone else since this page was shown" in response.text
    assert storage.info("a.txt").description == "theirs"
    again = {"description": "mine", "headers": "", "seq": response.context["form"]["seq"].value()}
    admin_client.post(object_url(storage.config.bucket, "a.txt"), again)  # having seen theirs
    assert storage.info("a.txt").description == "mine"


def test_an_edit_of_a_name_django_code_may_not_use(admin_client, storage):
    storage.save("made.txt", ContentFile(b"the bucket"))
    put_foreign(storage, "../up.txt", b"x")  # another client's name: the admin edits whatever the bucket holds
    seq = BucketTools(storage).object_info("../up.txt").seq
    response = admin_client.post(
        object_url(storage.config.bucket, "../up.txt"), {"description": "found", "headers": "", "seq": seq}
    )
    assert response.status_code == 302
    assert BucketTools(storage).object_info("../up.txt").description == "found"


def test_an_edit_over_a_change_landing_while_it_is_saved_is_refused(admin_client, storage, monkeypatch):
    storage.save("a.txt", ContentFile(b"hello"))
    seq = storage.info("a.txt").seq
    read = detail.find

    def read_then_another_writer_changes_it(bucket: str, name: str):
        found = read(bucket, name)
        storage.update_meta("a.txt", description="theirs")
        return found

    monkeypatch.setattr(detail, "find", read_then_another_writer_changes_it)
    response = admin_client.post(
        object_url(storage.config.bucket, "a.txt"), {"description": "mine", "headers": "", "seq": seq}
    )
    assert "changed by someone else since this page was shown" in response.text
    assert storage.info("a.txt").description == "theirs"


def test_recent_actions_name_the_bucket_and_object_and_link_to_its_page(admin_client, storage):
    storage.save("docs/a.txt", ContentFile(b"hello"))
    bucket = storage.config.bucket
    seq = storage.info("docs/a.txt").seq
    admin_client.post(object_url(bucket, "docs/a.txt"), {"description": "new", "headers": "", "seq": seq})
    (entry,) = LogEntry.objects.all()
    assert entry.content_type.name == "NATS object"
    index = admin_client.get(reverse("admin:index")).text
    link = entry.get_admin_url()
    assert f'<a href="{link}">{bucket}/docs/a.txt</a>' in index
    response = admin_client.get(link)
    assert response.status_code == 302 and response["Location"] == object_url(bucket, "docs/a.txt")


# -- deleting many ----------------------------------------------------------------------------


def test_deleting_selected_objects_asks_once_then_deletes_and_logs_each(admin_client, storage):
    for name in ("a.txt", "b.txt", "kept.txt"):
        storage.save(name, ContentFile(b"12345"))
    bucket = storage.config.bucket
    page = admin_client.get(objects_url(bucket), {"q": "", "o": "-size"}).text
    assert f'name="_selected_action" value="{encode_key("a.txt")}"' in page and 'id="action-toggle"' in page
    chosen = {"action": "delete_selected", "_selected_action": [encode_key("a.txt"), encode_key("b.txt")]}
    url = objects_url(bucket) + "?o=-size"
    confirmation = admin_client.post(url, chosen)
    assert "Are you sure you want to delete these 2 objects (10 B)" in confirmation.text
    assert storage.exists("a.txt") and storage.exists("b.txt")
    done = admin_client.post(url, {**chosen, "post": "yes"})
    assert done.status_code == 302 and done["Location"] == url  # back to the list as it was
    assert storage.listdir("") == ([], ["kept.txt"])
    assert logged() == [
        (DELETION, f"{bucket}/a.txt", f"Deleted the object “a.txt” from the NATS bucket “{bucket}”."),
        (DELETION, f"{bucket}/b.txt", f"Deleted the object “b.txt” from the NATS bucket “{bucket}”."),
    ]
    assert "Deleted 2 objects from bucket" in admin_client.get(url).text


def test_select_all_across_pages_deletes_every_object_under_the_prefix_in_one_action(admin_client, storage):
    names = [f"logs/{number:03}.txt" for number in range(225)]
    for name in [*names, "keep/a.txt"]:
        storage.save(name, ContentFile(b"x"))
    bucket = storage.config.bucket
    url = objects_url(bucket) + "?q=logs/"
    page = admin_client.get(url).text
    assert "Select all 225 objects whose name starts with “logs/”" in page  # the admin pages by 100
    assert 'name="select_across" value="0" class="select-across"' in page  # what Django's actions.js sets
    chosen = {"action": "delete_selected", "select_across": "1", "_selected_action": [encode_key(names[0])]}
    confirmation = admin_client.post(url, chosen)
    assert "Are you sure you want to delete these 225 objects (225 B)" in confirmation.text
    assert confirmation.text.count('name="_selected_action"') == 0  # the prefix is asked again, not 225 fields
    storage.save("logs/late.txt", ContentFile(b"x"))  # what is under the prefix when confirmed goes
    done = admin_client.post(url, {"action": "delete_selected", "select_across": "1", "post": "yes"})
    assert done.status_code == 302
    assert storage.listdir("") == (["keep"], [])
    assert "Deleted 226 objects from bucket" in admin_client.get(url).text


def test_running_the_action_with_nothing_selected_deletes_nothing(admin_client, storage):
    storage.save("a.txt", ContentFile(b"a"))
    response = admin_client.post(objects_url(storage.config.bucket), {"action": "delete_selected"}, follow=True)
    assert "Items must be selected in order to perform actions on them." in response.text
    assert storage.exists("a.txt")


# -- uploading ---------------------------------------------------------------------------------


def test_uploading_files_into_a_bucket_from_its_page(admin_client, storage):
    storage.save("docs/a.txt", ContentFile(b"taken"))
    bucket = storage.config.bucket
    assert f'action="{upload_url(bucket)}"' in admin_client.get(objects_url(bucket)).text
    files = [SimpleUploadedFile("a.txt", b"new a", "text/plain"), SimpleUploadedFile("b.csv", b"x,y\n", "text/csv")]
    response = admin_client.post(upload_url(bucket), {"files": files, "folder": "/docs/"}, follow=True)
    assert response.redirect_chain[-1][0] == objects_url(bucket)
    (stored,) = [name for name in storage.listdir("docs")[1] if name not in ("a.txt", "b.csv")]
    assert re.fullmatch(r"a_\w{7}\.txt", stored)  # Django's alternative name: nothing is replaced unasked
    assert f"“docs/a.txt” was taken: the upload was stored as “docs/{stored}”." in response.text
    message = response.text.split('<li class="success">')[1].split("</li>")[0]
    assert message == (
        f'Uploaded 2 objects to “docs/” in bucket “{bucket}”. <details class="nats-names"><summary>Show names'
        f"</summary>“docs/{stored}”, “docs/b.csv”</details>"
    )
    assert storage.open("docs/a.txt").read() == b"taken"
    assert storage.info("docs/b.csv").content_type == "text/csv; charset=utf-8"
    assert [(flag, name) for flag, name, _ in logged()] == [
        (ADDITION, f"{bucket}/docs/{stored}"),
        (ADDITION, f"{bucket}/docs/b.csv"),
    ]


def test_an_upload_sent_in_batches_says_what_it_stored_in_one_message(admin_client, storage, settings):
    # The page's script sends at most DATA_UPLOAD_MAX_NUMBER_FILES files a request, which the page gives it.
    settings.DATA_UPLOAD_MAX_NUMBER_FILES = 2
    storage.save("first.txt", ContentFile(b"the bucket exists"))
    bucket = storage.config.bucket
    assert 'data-max-files="2"' in admin_client.get(objects_url(bucket)).text
    names = iter(f"{number}.txt" for number in range(5))
    for batch, count in (("1/3", 2), ("2/3", 2), ("3/3", 1)):
        files = [SimpleUploadedFile(next(names), b"x") for _ in range(count)]
        response = admin_client.post(
            upload_url(bucket),
            {"files": files, "folder": "in", "batch": batch},
            headers={"X-Requested-With": "XMLHttpRequest"},
        )
        assert response.json() == {"redirect": objects_url(bucket)}
    assert storage.listdir("in") == ([], [f"{number}.txt" for number in range(5)])
    page = admin_client.get(objects_url(bucket)).text
    assert page.count('<li class="success">') == 1
    assert f"Uploaded 5 objects to “in/” in bucket “{bucket}”." in page and "“in/4.txt”</details>" in page


def test_an_upload_may_replace_objects_when_asked(admin_client, storage):
    storage.save("a.txt", ContentFile(b"old"))
    files = [SimpleUploadedFile("a.txt", b"new")]
    admin_client.post(upload_url(storage.config.bucket), {"files": files, "overwrite": "on"})
    assert storage.listdir("") == ([], ["a.txt"])
    assert storage.open("a.txt").read() == b"new"


def test_the_upload_script_gets_json_and_is_sent_to_the_page(admin_client, storage):
    storage.save("a.txt", ContentFile(b"a"))
    bucket = storage.config.bucket
    response = admin_client.post(
        upload_url(bucket),
        {"files": [SimpleUploadedFile("b.txt", b"b")]},
        headers={"X-Requested-With": "XMLHttpRequest"},
    )
    assert response.json() == {"redirect": objects_url(bucket)}
    assert "Uploaded 1 object" in admin_client.get(objects_url(bucket)).text  # the message waits for that page
    missing = upload_url(f"{bucket}x")
    response = admin_client.post(
        missing, {"files": [SimpleUploadedFile("b.txt", b"b")]}, headers={"X-Requested-With": "XMLHttpRequest"}
    )
    assert response.status_code == 404
    assert response.json() == {"error": f"There is no bucket “{bucket}x” on the NATS server."}


def test_uploads_stream_into_the_bucket_as_they_arrive_and_the_save_only_names_them(
    admin_client, storage, settings, monkeypatch, tmp_path
):
    # What the view hands to save(): a file whose chunks are in the bucket already (natsstorage.uploads),
    # never a temporary file; the save publishes only its metadata.
    settings.FILE_UPLOAD_MAX_MEMORY_SIZE = MiB
    settings.FILE_UPLOAD_TEMP_DIR = str(tmp_path)
    given = []
    save = NatsStorage.save

    def spy(self, name, content, max_length=None):
        given.append((type(content), sorted(os.listdir(tmp_path))))
        return save(self, name, content, max_length)

    monkeypatch.setattr(NatsStorage, "save", spy)
    data = random_bytes(3 * MiB)
    storage.save("first.txt", ContentFile(b"the bucket exists"))
    before = stream_state(storage)["last_seq"]
    admin_client.post(upload_url(storage.config.bucket), {"files": [SimpleUploadedFile("big.bin", data)]})
    assert given[-1] == (StagedFile, [])
    assert storage.open("big.bin").read() == data
    assert stream_state(storage)["last_seq"] - before == storage.info("big.bin").chunks + 1  # each byte sent once


def test_the_upload_page_still_checks_csrf_and_purges_what_a_refused_request_staged(admin_user, storage):
    client = Client(enforce_csrf_checks=True)
    client.force_login(admin_user)
    client.cookies["csrftoken"] = "x" * 32  # a cookie, but no token in the form: refused once the body is read
    storage.save("first.txt", ContentFile(b"the bucket exists"))
    before = stream_state(storage)
    response = client.post(upload_url(storage.config.bucket), {"files": [SimpleUploadedFile("x.bin", b"x" * 9999)]})
    assert response.status_code == 403
    after = stream_state(storage)
    assert after["last_seq"] > before["last_seq"]  # staged while the CSRF check read the body,
    assert after["messages"] == before["messages"]  # and purged when the request ended
    assert not storage.exists("x.bin")


def test_uploading_needs_the_add_permission_and_replacing_the_delete_one(client, django_user_model, storage):
    storage.save("a.txt", ContentFile(b"old"))
    bucket = storage.config.bucket
    user = django_user_model.objects.create_user("uploader", password="x", is_staff=True)
    user.user_permissions.set(
        Permission.objects.filter(content_type__app_label="natsstorage", codename__in=["view_bucket", "add_object"])
    )
    client.force_login(user)
    page = client.get(objects_url(bucket)).text
    assert 'id="nats-upload"' in page and 'name="overwrite"' not in page
    response = client.post(
        upload_url(bucket), {"files": [SimpleUploadedFile("a.txt", b"new")], "overwrite": "on"}, follow=True
    )
    assert "replacing objects needs the permission to delete them" in response.text
    assert storage.open("a.txt").read() == b"old"
