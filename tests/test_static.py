"""Static files on NATS: collectstatic into a bucket shared with media, {% static %} links served from it."""

from __future__ import annotations

import io
import os
import re
import time

import pytest
from django.contrib.staticfiles.storage import staticfiles_storage
from django.core.files.base import ContentFile
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.template import Context, Template

from .helpers import CSS, DOT_PNG, stream_state


def collectstatic(*args: str) -> None:
    call_command("collectstatic", "--noinput", *args, verbosity=0)


def test_collectstatic_fills_the_bucket_and_static_links_are_served(media, client):
    collectstatic()
    css_url = Template("{% load static %}{% static 'css/site.css' %}").render(Context())
    assert re.fullmatch(rf"/files/{media.config.bucket}/static/css/site\.[0-9a-f]{{12}}\.css", css_url)
    response = client.get(css_url)
    assert response.status_code == 200
    assert response["Cache-Control"] == "public, max-age=31536000, immutable"
    css = b"".join(response.streaming_content).decode()
    image = re.search(r'url\("([^"]+)"\)', css).group(1)
    assert re.fullmatch(r"\.\./img/dot\.[0-9a-f]{12}\.png", image)  # a plain link: no signature to expire
    image_response = client.get(css_url.rsplit("/", 2)[0] + "/img/" + image.rsplit("/", 1)[1])
    assert image_response.status_code == 200
    assert b"".join(image_response.streaming_content) == DOT_PNG


def uploaded_since(before: dict, storage) -> int:
    """Bytes written to the stream since ``before``; Django's own clean-up of a first run's
    intermediate hashed files (a deletion marker each) only ever shrinks it."""
    return max(0, stream_state(storage)["bytes"] - before["bytes"])


def test_a_second_collectstatic_uploads_nothing_and_keeps_every_hashed_name(media, sources):
    collectstatic()
    manifest = staticfiles_storage.open("staticfiles.json").read()
    before = stream_state(media)
    collectstatic()
    assert uploaded_since(before, media) == 0
    # Even when every source looks newer (a fresh checkout): the bucket's SHA-256 digests tell.
    future = time.time() + 3600
    for path in sources.rglob("*"):
        os.utime(path, (future, future))
    before = stream_state(media)
    collectstatic()
    assert uploaded_since(before, media) == 0
    assert staticfiles_storage.open("staticfiles.json").read() == manifest


def test_a_changed_source_is_uploaded_under_a_new_hashed_name(media, sources):
    collectstatic()
    before = staticfiles_storage.stored_name("css/site.css")
    (sources / "css" / "site.css").write_text(CSS + "p { margin: 0; }\n")
    collectstatic()
    staticfiles_storage.load_manifest()
    after = staticfiles_storage.url("css/site.css")
    assert before not in after
    assert b"margin" in staticfiles_storage.open(after.split("/static/", 1)[1]).read()


def test_collectstatic_clear_removes_stale_files_at_every_depth_and_spares_media(media):
    media.save("keep/this.txt", ContentFile(b"user upload"))
    staticfiles_storage.save("old/deeper/still/stale.js", ContentFile(b"stale"))
    collectstatic("--clear")
    assert not staticfiles_storage.exists("old/deeper/still/stale.js")
    assert staticfiles_storage.exists("js/deep/er/app.js")
    assert media.open("keep/this.txt").read() == b"user upload"


def test_a_dry_run_writes_nothing_and_keeps_the_live_manifest(media, settings):
    collectstatic()
    manifest = staticfiles_storage.open("staticfiles.json").read()
    # New headers would be set in place on a real run; a dry run only tells.
    settings.STORAGES["staticfiles"]["OPTIONS"]["object_parameters"] = {"Cache-Control": "max-age=60"}
    settings.STORAGES = {**settings.STORAGES}
    before = stream_state(media)
    collectstatic("--dry-run")
    assert staticfiles_storage.open("staticfiles.json").read() == manifest
    assert stream_state(media)["last_seq"] == before["last_seq"]  # not a message written


def test_collectstatic_words_its_skips_as_django_does(media):
    collectstatic()
    out = io.StringIO()
    call_command("collectstatic", "--noinput", verbosity=2, stdout=out)
    assert "Skipping 'css/site.css' (not modified)" in out.getvalue().splitlines()
    assert "SHA-256" not in out.getvalue()  # the reason is said at -v3 only
    out = io.StringIO()
    call_command("collectstatic", "--noinput", verbosity=3, stdout=out)
    assert "SHA-256" in out.getvalue()


def test_manifest_files_mixed_into_nats_storage_write_plain_links_and_collect_twice(
    media, settings, bucket_name, client
):
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {
            "BACKEND": "tests.testapp.storages.StaticStorage",
            "OPTIONS": {"bucket": bucket_name, "location": "static"},
        },
    }
    collectstatic()
    collectstatic()  # the same hashed names again: no "Max post-process passes exceeded"
    staticfiles_storage.load_manifest()
    css_name = staticfiles_storage.stored_name("css/site.css")
    css = staticfiles_storage.open(css_name).read().decode()
    image = re.search(r'url\("([^"]+)"\)', css).group(1)
    assert re.fullmatch(r"\.\./img/dot\.[0-9a-f]{12}\.png", image)  # a plain link: no signature to expire
    image_url = staticfiles_storage.url("img/dot.png")
    assert image_url.endswith("/static/" + image.removeprefix("../"))
    response = client.get(image_url)  # what a browser reading the stylesheet asks for
    assert response.status_code == 200
    assert b"".join(response.streaming_content) == DOT_PNG


def test_manifest_files_mixed_into_a_storage_with_signed_links_are_refused_by_check(settings):
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "tests.testapp.storages.StaticStorage", "OPTIONS": {"public": False}},
    }
    with pytest.raises(SystemCheckError, match="natsstorage.E003.*signed and expire") as raised:
        call_command("check")
    assert "natsstorage.NatsManifestStaticStorage" in str(raised.value)
    settings.STORAGES = {**settings.STORAGES, "staticfiles": {"BACKEND": "tests.testapp.storages.StaticStorage"}}
    call_command("check", stdout=io.StringIO())  # public by default: no error


def test_collectstatic_clear_recreates_a_bucket_another_process_destroyed(media, bucket_name):
    collectstatic()
    call_command("natsos_destroy", bucket_name, "--noinput", stdout=io.StringIO())  # a storage of its own
    collectstatic("--clear")
    assert staticfiles_storage.exists("js/deep/er/app.js")
