"""A form upload the bucket cannot take (full, or NATS away mid-body) is a clean answer, never a 500."""

from __future__ import annotations

import asyncio

import pytest
from django.core.checks import run_checks
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.files.uploadhandler import FileUploadHandler
from django.test import AsyncClient, Client

from .helpers import random_bytes, stream_state
from .test_admin_objects import upload_url
from .test_uploads import CHUNK, CSRF, HANDLERS

pytestmark = pytest.mark.django_db

ROOM = 20 * CHUNK  # the bucket's max_bytes: a file of twice that fills it in the middle
MIDDLEWARE = "natsstorage.middleware.UploadFailureMiddleware"


@pytest.fixture
def small(settings, make_storage, bucket_name):
    """Django's default storage on a bucket of ``ROOM`` bytes at most, the handler first."""
    options = {"bucket": bucket_name, "chunk_size": CHUNK, "max_bytes": ROOM}
    settings.STORAGES = {**settings.STORAGES, "default": {"BACKEND": "natsstorage.NatsStorage", "OPTIONS": options}}
    settings.FILE_UPLOAD_HANDLERS = HANDLERS
    return make_storage(chunk_size=CHUNK, max_bytes=ROOM)


def a_file_too_big() -> SimpleUploadedFile:
    return SimpleUploadedFile("big.bin", random_bytes(2 * ROOM))


def test_a_bucket_that_fills_during_a_form_upload_is_a_507_and_keeps_nothing(client, small):
    kept = SimpleUploadedFile("small.bin", random_bytes(2 * CHUNK))  # a file before it, staged whole
    response = client.post("/attach/", {"title": "report", "picture": kept, "file": a_file_too_big()})
    assert response.status_code == 507
    assert response.content == b"The file store is full: the upload was not stored."
    state = stream_state(small)
    assert state["last_seq"] > 0  # chunks went in before the bucket was full,
    assert state["messages"] == 0  # and were purged, the other file's too


def test_under_asgi_a_full_bucket_is_a_507_too(small):
    async def post():
        return await AsyncClient().post("/attach/", {"title": "asgi", "file": a_file_too_big()})

    response = asyncio.run(post())
    assert response.status_code == 507
    assert stream_state(small)["messages"] == 0


def test_a_full_bucket_found_by_the_csrf_check_reading_the_form_is_a_507_too(small):
    """The CSRF middleware reads the form before the view runs: the upload fails there."""
    client = Client(enforce_csrf_checks=True)
    client.cookies["csrftoken"] = CSRF
    response = client.post("/keep/", {"csrfmiddlewaretoken": CSRF, "file": a_file_too_big()})
    assert response.status_code == 507
    assert stream_state(small)["messages"] == 0


def test_without_the_middleware_it_is_django_s_400_for_a_body_it_cannot_read(client, small, settings, caplog):
    settings.MIDDLEWARE = [path for path in settings.MIDDLEWARE if path != MIDDLEWARE]
    response = client.post("/keep/", {"file": a_file_too_big()})
    assert response.status_code == 400
    assert stream_state(small)["messages"] == 0
    assert "could not be stored in bucket" in caplog.text
    found = [message.id for message in run_checks() if message.id.startswith("natsstorage.")]
    assert found == ["natsstorage.W105"]


class StopsNatsMidway(FileUploadHandler):
    """Before NatsUploadHandler in FILE_UPLOAD_HANDLERS: stops ``server`` once half the file has arrived, as
    an outage in the middle of an upload would, and passes every piece on."""

    server = None

    def receive_data_chunk(self, raw_data: bytes, start: int) -> bytes:
        if start >= ROOM and StopsNatsMidway.server is not None:
            StopsNatsMidway.server.stop()
            StopsNatsMidway.server = None
        return raw_data

    def file_complete(self, file_size: int) -> None:
        return None


def test_nats_lost_in_the_middle_of_a_form_upload_is_a_503(client, settings, own_server):
    server = own_server()
    options = {"bucket": "away", "servers": [server.url], "chunk_size": CHUNK, "timeout": 2.0, "connect_timeout": 1.0}
    settings.STORAGES = {**settings.STORAGES, "default": {"BACKEND": "natsstorage.NatsStorage", "OPTIONS": options}}
    settings.FILE_UPLOAD_HANDLERS = [f"{__name__}.StopsNatsMidway", *HANDLERS]
    StopsNatsMidway.server = server
    response = client.post("/keep/", {"file": a_file_too_big()})
    assert StopsNatsMidway.server is None  # it stopped in the middle
    assert response.status_code == 503
    assert response["Retry-After"] == "5"


def test_the_admin_s_upload_page_answers_a_full_bucket_with_its_own_507_page(admin_client, small):
    small.save("a.txt", SimpleUploadedFile("a.txt", b"made"))  # the bucket exists: the page never creates one
    before = stream_state(small)["messages"]
    response = admin_client.post(upload_url(small.config.bucket), {"files": [a_file_too_big()], "folder": ""})
    assert response.status_code == 507
    assert "Bucket full" in response.text and "Nothing was uploaded" in response.text
    assert stream_state(small)["messages"] == before
