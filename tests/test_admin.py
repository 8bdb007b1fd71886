"""The admin: the "NATS object store" section, its buckets page, a bucket's objects, and uploads through a
FileField. One object's page, uploads into a bucket and bulk deletion: test_admin_objects.py."""

from __future__ import annotations

import io
import re

import pytest
from django.contrib.admin.models import DELETION, LogEntry
from django.contrib.auth.models import Permission
from django.core.files.base import ContentFile
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.urls import reverse

from natsstorage import NatsStorage
from natsstorage.admin import BucketAdmin
from natsstorage.buckettools import BucketTools
from natsstorage.objectstore import encode_key
from natsstorage.testing import free_port

from .helpers import MiB, put_foreign, random_bytes

pytestmark = pytest.mark.django_db

BUCKETS = "admin:natsstorage_bucket_changelist"


def objects_url(bucket: str) -> str:
    return reverse("admin:natsstorage_bucket_objects", kwargs={"bucket": bucket})


def staff(django_user_model, *permissions: str):
    user = django_user_model.objects.create_user("staff", password="x", is_staff=True)
    user.user_permissions.set(
        Permission.objects.filter(content_type__app_label="natsstorage", codename__in=permissions)
    )
    return user


def test_the_admin_index_shows_the_nats_object_store_section(admin_client):
    response = admin_client.get(reverse("admin:index"))
    assert "NATS object store" in response.text
    assert reverse(BUCKETS) in response.text


def rows_of(response):
    return [row for report in response.context["reports"] for row in report.rows]


def test_the_bucket_page_lists_every_bucket_with_its_figures(admin_client, storage):
    storage.save("a.txt", ContentFile(b"x" * 2000))
    response = admin_client.get(reverse(BUCKETS))
    assert response.status_code == 200
    assert "is reachable" in response.text
    row = next(row for row in rows_of(response) if row.name == storage.config.bucket)
    assert (row.status.objects, row.status.storage, row.status.replicas, row.status.sealed) == (1, "file", 1, False)
    assert row.used_by == ()
    assert objects_url(storage.config.bucket) in response.text
    for heading in ("Bucket", "Objects", "Bytes", "Limits", "Storage", "Used by"):
        assert f">{heading}</th>" in response.text
    assert "max unlimited; TTL forever" in response.text and "file, 1 replica" in response.text


def test_the_bucket_page_marks_buckets_that_configured_storages_use(admin_client):
    response = admin_client.get(reverse(BUCKETS))
    row = next(row for row in rows_of(response) if row.name == "configs")
    assert row.used_by == ("testapp.Document.upload",)
    assert "testapp.Document.upload" in response.text


def test_the_bucket_page_marks_buckets_that_storages_of_subclasses_use(admin_client, storage, settings):
    bucket = storage.config.bucket
    settings.STORAGES = {
        **settings.STORAGES,
        "archive": {"BACKEND": "tests.testapp.storages.ArchiveStorage", "OPTIONS": {"bucket": bucket}},
        "static": {"BACKEND": "natsstorage.NatsStaticStorage", "OPTIONS": {"bucket": bucket, "location": "s"}},
    }
    response = admin_client.get(reverse(BUCKETS))
    row = next(row for row in rows_of(response) if row.name == bucket)
    assert row.used_by == ("STORAGES['archive']", "STORAGES['static']")


def test_the_bucket_page_shows_bucket_options(admin_client, make_storage, server_version):
    storage = make_storage(description="Configs of the fleet", ttl=3600.0, max_bytes=10 * MiB, compression=True)
    storage.save("a.txt", ContentFile(b"a"))
    text = admin_client.get(reverse(BUCKETS)).text
    assert "Configs of the fleet" in text
    assert "max 10.0 MiB; TTL 1:00:00" in text
    if server_version >= (2, 10):
        assert "file, 1 replica, s2" in text
    else:  # nats-server 2.9 has no compression: the bucket is made without, and the page says what it has
        assert "file, 1 replica" in text and "replica, s2" not in text


def test_the_admin_and_natsos_status_spell_sizes_and_durations_alike(admin_client, make_storage):
    storage = make_storage(ttl=2 * 86400.0, max_bytes=5 * MiB)
    storage.save("a.txt", ContentFile(b"a"))
    out = io.StringIO()
    call_command("natsos_status", storage.config.bucket, stdout=out)
    text = admin_client.get(reverse(BUCKETS)).text
    for shown in ("5.0 MiB", "2 days, 0:00:00"):
        assert shown in out.getvalue() and shown in text


def test_the_bucket_page_says_clearly_when_nats_is_down(admin_client, settings):
    settings.NATSSTORAGE = {"servers": [f"nats://127.0.0.1:{free_port()}"], "connect_timeout": 0.2}
    response = admin_client.get(reverse(BUCKETS))
    assert response.status_code == 200
    assert "is not reachable" in response.text
    assert "cannot connect to NATS" in response.text


@pytest.mark.parametrize(
    "page", ["natsstorage_bucket_object", "natsstorage_bucket_download", "natsstorage_bucket_delete"]
)
def test_object_pages_say_nats_is_unreachable_in_an_admin_page_with_503(admin_client, settings, page):
    settings.NATSSTORAGE = {"servers": [f"nats://127.0.0.1:{free_port()}"], "connect_timeout": 0.2}
    response = admin_client.get(reverse(f"admin:{page}", kwargs={"bucket": "configs", "name": "a.txt"}))
    assert response.status_code == 503
    assert response["Retry-After"] == "5"
    assert_admin_page(response, "NATS is unreachable: cannot connect to NATS at nats://127.0.0.1:")


def test_the_objects_page_says_nats_is_unreachable_instead_of_listing_nothing(admin_client, settings):
    settings.NATSSTORAGE = {"servers": [f"nats://127.0.0.1:{free_port()}"], "connect_timeout": 0.2}
    response = admin_client.get(objects_url("configs"))
    assert response.status_code == 503
    assert_admin_page(response, "NATS is unreachable")
    assert "0 objects" not in response.text and "No objects" not in response.text


def assert_admin_page(response, message: str) -> None:
    """The admin's own layout (header, breadcrumbs back to the buckets), with ``message`` in an error note."""
    assert 'id="site-name"' in response.text
    assert f'<a href="{reverse(BUCKETS)}">Buckets</a>' in response.text
    assert re.search(r'<p class="errornote">' + re.escape(message), response.text), response.text


def test_the_bucket_pages_are_for_staff_only(client, django_user_model, storage):
    storage.save("a.txt", ContentFile(b"a"))
    for url in (reverse(BUCKETS), objects_url(storage.config.bucket)):
        response = client.get(url)
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("admin:login"))
    client.force_login(staff(django_user_model))
    assert client.get(reverse(BUCKETS)).status_code == 403
    assert "NATS object store" not in client.get(reverse("admin:index")).text


def test_staff_with_the_view_permission_see_the_pages_but_cannot_change_anything(client, django_user_model, storage):
    storage.save("a.txt", ContentFile(b"a"))
    bucket = storage.config.bucket
    client.force_login(staff(django_user_model, "view_bucket"))
    assert "NATS object store" in client.get(reverse("admin:index")).text
    assert client.get(reverse(BUCKETS)).status_code == 200
    response = client.get(objects_url(bucket))
    assert "a.txt" in response.text
    assert "action-select" not in response.text and "nats-upload" not in response.text
    page = client.get(reverse("admin:natsstorage_bucket_object", kwargs={"bucket": bucket, "name": "a.txt"}))
    assert page.status_code == 200 and "deletelink" not in page.text and "<textarea" not in page.text
    delete = reverse("admin:natsstorage_bucket_delete", kwargs={"bucket": bucket, "name": "a.txt"})
    assert client.post(delete, {"post": "yes"}).status_code == 403
    bulk = {"action": "delete_selected", "_selected_action": [encode_key("a.txt")], "post": "yes"}
    assert "no permission to delete" in client.post(objects_url(bucket), bulk, follow=True).text
    edit = {"description": "mine", "headers": "", "seq": storage.info("a.txt").seq}
    object_url = reverse("admin:natsstorage_bucket_object", kwargs={"bucket": bucket, "name": "a.txt"})
    assert client.post(object_url, edit).status_code == 403
    upload = {"files": SimpleUploadedFile("b.txt", b"b")}
    assert client.post(reverse("admin:natsstorage_bucket_upload", kwargs={"bucket": bucket}), upload).status_code == 403
    assert storage.listdir("") == ([], ["a.txt"]) and storage.info("a.txt").description == ""


def test_the_object_page_lists_objects_with_their_metadata(admin_client, storage):
    storage.save("docs/a.txt", ContentFile(b"hello", name="a.txt"))
    storage.update_meta("docs/a.txt", description="the first one")
    info = storage.info("docs/a.txt")
    text = admin_client.get(objects_url(storage.config.bucket)).text
    for shown in ("docs/a.txt", "5 B", "text/plain", "the first one"):
        assert shown in text
    assert info.digest not in text  # on the object's page, whole; a list that fits a 1024 px window has no room


def test_the_object_page_searches_by_name_prefix_and_paginates(admin_client, storage, monkeypatch, server_version):
    for index in range(5):
        storage.save(f"logs/{index}.txt", ContentFile(b"l"))
    storage.save("other.txt", ContentFile(b"o"))
    monkeypatch.setattr(BucketAdmin, "list_per_page", 2)
    url = objects_url(storage.config.bucket)
    response = admin_client.get(url, {"q": "logs/"})
    assert [info.name for info in response.context["page"]] == ["logs/0.txt", "logs/1.txt"]
    assert response.context["page"].paginator.count == 5
    assert "other.txt" not in response.text
    response = admin_client.get(url, {"q": "logs/", "p": 3})
    assert [info.name for info in response.context["page"]] == ["logs/4.txt"]
    for number in (1, 2):  # numbered links to every other page, keeping the search
        assert f'<a href="?q=logs%2F&amp;p={number}">{number}</a>' in response.text
    assert '<span class="this-page">3</span>' in response.text
    # By name from the bucket's index on the server (2.12+), the size of all is not read (a page by size or date
    # sums it); this process's own index of the bucket (older servers) has it.
    total = "5 objects" if server_version >= (2, 12) else "5 objects, 5 B"
    assert f"{total} whose name starts with “logs/”; times in" in response.text


def test_a_page_of_objects_looks_at_the_listing_once(admin_client, storage, monkeypatch, server_version):
    """Its rows and the count and size of all come from one look (each look asks the server for changes)."""
    for index in range(5):
        storage.save(f"{index}.txt", ContentFile(b"l"))
    monkeypatch.setattr(BucketAdmin, "list_per_page", 2)
    looks = []
    listing_page = BucketTools.listing_page
    monkeypatch.setattr(
        BucketTools, "listing_page", lambda *args, **kwargs: looks.append(kwargs) or listing_page(*args, **kwargs)
    )
    for number, names in ((1, ["0.txt", "1.txt"]), (3, ["4.txt"]), (9, ["4.txt"]), ("x", ["0.txt", "1.txt"])):
        looks.clear()
        response = admin_client.get(objects_url(storage.config.bucket), {"p": number})
        assert [info.name for info in response.context["page"]] == names
        assert ("5 objects;" if server_version >= (2, 12) else "5 objects, 5 B;") in response.text  # as above
        assert len(looks) == (2 if number == 9 else 1)  # a page past the last: Django shows the last


@pytest.mark.parametrize(
    ("order", "expected"),
    [
        ("name", ["a.txt", "b.txt", "c.txt"]),
        ("-name", ["c.txt", "b.txt", "a.txt"]),
        ("size", ["b.txt", "c.txt", "a.txt"]),
        ("-size", ["a.txt", "c.txt", "b.txt"]),
        ("modified", ["c.txt", "a.txt", "b.txt"]),
        ("-modified", ["b.txt", "a.txt", "c.txt"]),
    ],
)
def test_the_objects_are_sorted_by_the_column_asked_for(admin_client, storage, order, expected):
    storage.save("c.txt", ContentFile(b"cc"))
    storage.save("a.txt", ContentFile(b"aaa"))
    storage.save("b.txt", ContentFile(b"b"))
    response = admin_client.get(objects_url(storage.config.bucket), {"o": order})
    assert [info.name for info in response.context["page"]] == expected


def test_column_headings_sort_and_toggle_largest_and_newest_first(admin_client, storage, settings):
    storage.save("a.txt", ContentFile(b"a"))
    url = objects_url(storage.config.bucket)
    headings = {h["label"]: h for h in admin_client.get(url).context["headings"]}
    assert headings["Name"] == {"label": "Name", "url": "?o=-name", "sorted": "ascending"}  # by name at first
    assert headings["Size"]["url"] == "?o=-size"  # largest first, as ls -S
    assert headings["Modified"]["url"] == "?o=-modified"  # newest first, as ls -t
    headings = {h["label"]: h for h in admin_client.get(url, {"o": "-size", "p": "2"}).context["headings"]}
    assert headings["Size"] == {"label": "Size", "url": "?o=size", "sorted": "descending"}


def test_the_objects_page_and_natsos_ls_show_the_same_time_in_the_same_zone(admin_client, storage, settings):
    storage.save("a.txt", ContentFile(b"a"))
    out = io.StringIO()
    call_command("natsos_ls", storage.config.bucket, stdout=out)
    shown = out.getvalue().splitlines()[1].split()[2:4]  # "1 B 2025-01-31 18:04:05 text/plain a.txt"
    text = admin_client.get(objects_url(storage.config.bucket)).text
    assert " ".join(shown) in text and f"times in {settings.TIME_ZONE}" in text


def test_a_missing_bucket_or_object_is_an_admin_404_page_and_creates_nothing(admin_client, storage):
    missing = f"{storage.config.bucket}x"
    response = admin_client.get(objects_url(missing))
    assert response.status_code == 404
    assert_admin_page(response, f"There is no bucket “{missing}” on the NATS server.")
    response = admin_client.get(objects_url("bad.name"))
    assert response.status_code == 404
    assert_admin_page(response, "“bad.name” is not a bucket name")
    storage.save("a.txt", ContentFile(b"a"))
    page = reverse("admin:natsstorage_bucket_object", kwargs={"bucket": storage.config.bucket, "name": "nope.txt"})
    response = admin_client.get(page)
    assert response.status_code == 404
    assert_admin_page(response, f"There is no object “nope.txt” in bucket “{storage.config.bucket}”.")
    assert missing not in [row.name for row in rows_of(admin_client.get(reverse(BUCKETS)))]


def test_the_object_page_links_downloads(admin_client, storage):
    data = random_bytes(300_000)
    storage.save("d/data.bin", ContentFile(data))
    download = reverse(
        "admin:natsstorage_bucket_download", kwargs={"bucket": storage.config.bucket, "name": "d/data.bin"}
    )
    assert download in admin_client.get(objects_url(storage.config.bucket)).text
    response = admin_client.get(download)
    assert response["Content-Length"] == str(len(data))
    assert b"".join(response.streaming_content) == data
    missing = reverse("admin:natsstorage_bucket_download", kwargs={"bucket": storage.config.bucket, "name": "nope"})
    assert admin_client.get(missing).status_code == 404


def test_downloading_a_link_gives_what_it_names(admin_client, storage):
    elsewhere = NatsStorage(f"{storage.config.bucket}x")  # no storage of the project serves it: staff read it all
    try:
        elsewhere.save("target.bin", ContentFile(b"the data"))
        storage.save("made.txt", ContentFile(b"the bucket"))
        bucket = storage.config.bucket
        for name, target in (("alias.bin", elsewhere.config.bucket), ("dangling.bin", bucket)):
            put_foreign(storage, name, b"", options={"link": {"bucket": target, "name": "target.bin"}})

        def download(name: str):
            url = reverse("admin:natsstorage_bucket_download", kwargs={"bucket": bucket, "name": name})
            return admin_client.get(url)

        assert b"".join(download("alias.bin").streaming_content) == b"the data"
        assert download("dangling.bin").status_code == 404
    finally:
        BucketTools(elsewhere).destroy()


def test_deleting_an_object_asks_for_confirmation_then_deletes_it(admin_client, storage):
    storage.save("gone.txt", ContentFile(b"g"))
    storage.save("kept.txt", ContentFile(b"k"))
    delete = reverse("admin:natsstorage_bucket_delete", kwargs={"bucket": storage.config.bucket, "name": "gone.txt"})
    page = reverse("admin:natsstorage_bucket_object", kwargs={"bucket": storage.config.bucket, "name": "gone.txt"})
    assert page in admin_client.get(objects_url(storage.config.bucket)).text
    assert delete in admin_client.get(page).text
    response = admin_client.get(delete)
    assert "Are you sure" in response.text
    assert storage.exists("gone.txt")
    response = admin_client.post(delete, {"post": "yes"}, follow=True)
    assert response.redirect_chain[-1][0] == objects_url(storage.config.bucket)
    assert "was deleted" in response.text
    assert not storage.exists("gone.txt")
    assert storage.exists("kept.txt")
    (entry,) = LogEntry.objects.all()  # in "Recent actions", as the admin's own deletions are
    assert (entry.action_flag, entry.object_repr, entry.user.username) == (
        DELETION,
        f"{storage.config.bucket}/gone.txt",
        "admin",
    )
    assert entry.content_type.name == "NATS object"
    recent = admin_client.get(reverse("admin:index")).text
    assert re.search(
        rf"{storage.config.bucket}/gone.txt\s*<br>\s*<span class=\"mini quiet\">NATS object</span>", recent
    )


# -- a FileField on NatsStorage in the admin -------------------------------------------------


def test_uploading_through_the_admin_form_and_following_the_currently_link(admin_client):
    data = random_bytes(3 * MiB)
    upload = SimpleUploadedFile("notes.bin", data, content_type="application/octet-stream")
    response = admin_client.post(reverse("admin:testapp_document_add"), {"title": "notes", "upload": upload})
    assert response.status_code == 302
    from tests.testapp.models import Document

    document = Document.objects.get(title="notes")
    try:
        assert document.upload.name.startswith("docs/notes")
        page = admin_client.get(reverse("admin:testapp_document_change", args=[document.pk])).text
        assert "Currently:" in page
        href = re.search(r'Currently: <a href="([^"]+)"', page).group(1).replace("&amp;", "&")
        assert href.startswith(f"/files/configs/{document.upload.name}?expires=")
        response = admin_client.get(href)
        assert b"".join(response.streaming_content) == data
    finally:
        NatsStorage("configs").delete(document.upload.name)


def test_a_page_of_objects_comes_from_the_listing_index_not_a_read_of_the_whole_bucket(
    admin_client, storage, monkeypatch
):
    for index in range(7):
        storage.save(f"logs/{index}.txt", ContentFile(b"x" * (index + 1)))
    storage.save("other.txt", ContentFile(b"o"))

    def whole_bucket(*args, **kwargs):
        raise AssertionError("the objects page read every object's metadata")

    monkeypatch.setattr(BucketTools, "objects", whole_bucket)
    monkeypatch.setattr(BucketAdmin, "list_per_page", 3)
    response = admin_client.get(objects_url(storage.config.bucket), {"q": "logs/", "o": "-size", "p": 2})
    assert [info.name for info in response.context["page"]] == ["logs/3.txt", "logs/2.txt", "logs/1.txt"]
    assert "7 objects, 28 B whose name starts with “logs/”" in response.text
    assert response.context["page"].paginator.num_pages == 3


def test_the_content_type_column_is_shown_but_not_sorted_by(admin_client, storage):
    storage.save("a.txt", ContentFile(b"a"))
    response = admin_client.get(objects_url(storage.config.bucket), {"o": "type"})
    headings = {h["label"]: h for h in response.context["headings"]}
    assert headings["Content type"] == {"label": "Content type", "url": "", "sorted": ""}
    assert headings["Name"]["sorted"] == "ascending"  # an order the page cannot apply falls back to names


def test_names_other_clients_wrote_are_listed_escaped_and_can_be_opened_downloaded_and_deleted(admin_client, storage):
    storage.save("mine.txt", ContentFile(b"mine"))
    odd = ["new\nline.txt", "back\\slash.txt", "../up.txt", "/abs.txt", "a//b.txt"]
    for name in odd:
        put_foreign(storage, name, name.encode())
    bucket = storage.config.bucket
    text = admin_client.get(objects_url(bucket)).text
    assert "new\\nline.txt" in text and "back\\\\slash.txt" in text and "new\nline.txt" not in text
    for name in odd:
        detail = reverse("admin:natsstorage_bucket_object", kwargs={"bucket": bucket, "name": name})
        assert admin_client.get(detail).status_code == 200, name
        download = reverse("admin:natsstorage_bucket_download", kwargs={"bucket": bucket, "name": name})
        assert b"".join(admin_client.get(download).streaming_content) == name.encode(), name
    delete = reverse("admin:natsstorage_bucket_delete", kwargs={"bucket": bucket, "name": odd[0]})
    assert admin_client.post(delete, {"post": "yes"}).status_code == 302
    ticked = re.findall(r'name="_selected_action" value="([^"]*)"', text)  # every checkbox, as a browser sends it
    assert len(ticked) == len(odd) + 1
    admin_client.post(objects_url(bucket), {"action": "delete_selected", "_selected_action": ticked, "post": "yes"})
    assert storage.listdir("") == ([], []) and BucketTools(storage).object_infos(odd) == [None] * len(odd)
