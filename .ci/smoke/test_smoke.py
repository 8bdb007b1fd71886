"""The installed wheel, used as a project would, through natsstorage's pytest plugin."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.core.management import call_command
from django.urls import reverse

import natsstorage


@pytest.fixture
def media(settings, nats_bucket_name, make_nats_storage):
    """The project's default storage on this test's fresh bucket."""
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {"BACKEND": "natsstorage.NatsStorage", "OPTIONS": {"bucket": nats_bucket_name}},
    }
    return make_nats_storage()


def test_the_installed_wheel_is_what_runs():
    assert Path(natsstorage.__file__).parent.parent.name == "site-packages"


def test_save_read_and_serve(media, client):
    name = default_storage.save("notes/hello.txt", ContentFile(b"hello from the wheel\n"))
    with media.open(name) as f:
        assert f.read() == b"hello from the wheel\n"
    response = client.get(default_storage.url(name))
    assert response.status_code == 200
    assert b"".join(response.streaming_content) == b"hello from the wheel\n"


@pytest.mark.django_db
def test_the_admin_lists_the_bucket_and_its_objects(media, admin_client, nats_bucket_name):
    media.save("report.pdf", ContentFile(b"%PDF-1.7\n"))
    buckets = admin_client.get(reverse("admin:natsstorage_bucket_changelist"))
    assert buckets.status_code == 200 and nats_bucket_name in buckets.text
    objects = admin_client.get(reverse("admin:natsstorage_bucket_objects", args=[nats_bucket_name]))
    assert objects.status_code == 200 and "report.pdf" in objects.text


def test_a_command_lists_the_objects(nats_storage, nats_bucket_name):
    nats_storage.save("a.txt", ContentFile(b"a"))
    out = io.StringIO()
    call_command("natsos_ls", nats_bucket_name, stdout=out)
    assert "a.txt" in out.getvalue()


def test_the_system_checks_pass():
    call_command("check", "--fail-level", "WARNING")
