"""CORS on upload links: a page on another origin sends to them when NATSSTORAGE_UPLOAD_CORS_ORIGINS lists it."""

from __future__ import annotations

import contextlib

import pytest
from django.core.checks import run_checks
from django.core.files.storage import storages

from natsstorage import NatsStorage
from natsstorage.buckettools import BucketTools
from natsstorage.exceptions import BucketNotFound

APP = "https://app.example.com"
PREFLIGHT = {"Origin": APP, "Access-Control-Request-Method": "PATCH", "Access-Control-Request-Headers": "tus-resumable"}
CORS_HEADERS = ("Access-Control-Allow-Origin", "Access-Control-Allow-Credentials", "Access-Control-Expose-Headers")


@pytest.fixture
def files(bucket_name, settings) -> NatsStorage:
    settings.STORAGES = {
        **settings.STORAGES,
        "files": {"BACKEND": "natsstorage.NatsStorage", "OPTIONS": {"bucket": bucket_name}},
    }
    yield storages["files"]
    with contextlib.suppress(BucketNotFound):
        BucketTools(NatsStorage(bucket_name)).destroy()


def put(client, url: str, data: bytes, **headers: str):
    return client.put(url, data=data, content_type="text/plain", headers=headers, CONTENT_LENGTH=str(len(data)))


def test_without_the_setting_no_cors_header_is_sent(client, files):
    url = files.upload_url("a.txt", max_size=100)
    preflight = client.options(url, headers=PREFLIGHT)
    assert preflight.status_code == 204
    uploaded = put(client, url, b"hello", Origin=APP)
    assert uploaded.status_code == 201
    for response in (preflight, uploaded):
        assert not [header for header in response.headers if header.lower().startswith("access-control-")]
        assert "Vary" not in response


def test_a_listed_origin_s_preflight_is_answered_with_what_tus_clients_send(client, files, settings):
    settings.NATSSTORAGE_UPLOAD_CORS_ORIGINS = [APP, "https://other.example.com"]
    preflight = client.options(files.upload_url("a.txt", max_size=100), headers=PREFLIGHT)
    assert preflight.status_code == 204
    assert preflight["Access-Control-Allow-Origin"] == APP  # its own origin, never "*"
    assert {"PATCH", "POST", "HEAD", "PUT", "DELETE"} <= set(preflight["Access-Control-Allow-Methods"].split(", "))
    allowed = {header.lower() for header in preflight["Access-Control-Allow-Headers"].split(", ")}
    assert {"tus-resumable", "upload-length", "upload-offset", "upload-metadata", "content-type"} <= allowed
    assert int(preflight["Access-Control-Max-Age"]) > 0
    assert preflight["Vary"] == "Origin"
    assert "Access-Control-Allow-Credentials" not in preflight  # the link is the credential: no cookie


def test_a_listed_origin_reads_the_answers_and_their_tus_headers(client, files, settings):
    settings.NATSSTORAGE_UPLOAD_CORS_ORIGINS = [APP]
    url = files.upload_url("a.txt", max_size=100)
    created = client.generic("POST", url, headers={"Origin": APP, "Tus-Resumable": "1.0.0", "Upload-Length": "5"})
    assert created.status_code == 201
    head = client.head(created["Location"], headers={"Origin": APP, "Tus-Resumable": "1.0.0"})
    refused = client.head(url[:-4] + "oops", headers={"Origin": APP})
    assert refused.status_code == 403
    for response in (created, head, refused):
        assert response["Access-Control-Allow-Origin"] == APP
        exposed = set(response["Access-Control-Expose-Headers"].split(", "))
        assert {"Upload-Offset", "Upload-Length", "Upload-Result", "Location", "Tus-Resumable"} <= exposed
        assert response["Vary"] == "Origin"
        assert "Access-Control-Allow-Methods" not in response


def test_an_origin_not_listed_gets_no_cors_header_but_the_answer_varies_by_origin(client, files, settings):
    settings.NATSSTORAGE_UPLOAD_CORS_ORIGINS = [APP]
    url = files.upload_url("a.txt", max_size=100)
    for origin in ("https://evil.example.com", "https://app.example.com.evil.example", "null", APP.upper()):
        preflight = client.options(url, headers={**PREFLIGHT, "Origin": origin})
        uploaded = put(client, url, b"x", Origin=origin)
        for response in (preflight, uploaded):
            assert not [header for header in CORS_HEADERS if header in response], origin
            assert response["Vary"] == "Origin"


def test_checks_refuse_a_wildcard_a_path_or_a_string_in_place_of_origins(settings):
    settings.NATSSTORAGE_UPLOAD_CORS_ORIGINS = ["*", "https://app.example.com/", "app.example.com", APP]
    found = [message for message in run_checks() if message.id == "natsstorage.E005"]
    assert len(found) == 3
    assert all("is not an origin" in message.msg for message in found)
    settings.NATSSTORAGE_UPLOAD_CORS_ORIGINS = APP
    (found,) = [message for message in run_checks() if message.id == "natsstorage.E005"]
    assert "must be a list of origins" in found.msg


def test_checks_are_quiet_for_exact_origins(settings):
    settings.NATSSTORAGE_UPLOAD_CORS_ORIGINS = [APP, "http://localhost:8000", "http://[::1]:3000"]
    assert not [message for message in run_checks() if message.id == "natsstorage.E005"]
