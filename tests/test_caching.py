"""What a CDN in front of the view may keep: hashed static files for a year, public media revalidated by its
digest, nothing that a signature or a login guards; ``Vary`` only where a response depends on the cookie."""

from __future__ import annotations

import base64
import hashlib

import pytest
from django.contrib.staticfiles.storage import staticfiles_storage
from django.core.files.base import ContentFile
from django.core.management import call_command

IMMUTABLE = "public, max-age=31536000, immutable"
DATA = b"a picture, say" * 1000


def digest_etag(data: bytes) -> str:
    """The object's SHA-256, as its metadata spells it (base64url, unpadded), quoted."""
    return '"' + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).decode().rstrip("=") + '"'


def test_hashed_static_files_are_immutable_for_a_year_and_the_manifest_is_revalidated(media, client):
    call_command("collectstatic", "--noinput", verbosity=0)
    hashed = client.get(staticfiles_storage.url("css/site.css"))
    assert hashed.status_code == 200
    assert hashed["Cache-Control"] == IMMUTABLE
    assert "Vary" not in hashed
    manifest = client.get(staticfiles_storage.base_url + "staticfiles.json")  # its name never changes
    assert manifest.status_code == 200
    assert manifest["Cache-Control"] == "public, no-cache"
    assert "Vary" not in manifest


def test_public_media_is_revalidated_by_its_digest_and_varies_on_nothing(serve, client):
    files = serve(public=True)
    url = files.url(files.save("picture.bin", ContentFile(DATA)))
    response = client.get(url)
    assert response.status_code == 200
    assert response["Cache-Control"] == "public, no-cache"
    assert response["ETag"] == digest_etag(DATA)
    assert "Vary" not in response  # the session, CSRF and auth middleware of tests/settings.py are all there
    assert not response.cookies
    again = client.get(url, headers={"If-None-Match": response["ETag"]})  # what a CDN asks when it revalidates
    assert again.status_code == 304
    assert (again["ETag"], again["Cache-Control"]) == (response["ETag"], "public, no-cache")
    assert "Vary" not in again


def test_a_stored_cache_control_lets_a_cdn_keep_media_longer(serve, client):
    files = serve(public=True, object_parameters={"Cache-Control": "public, max-age=3600"})
    response = client.get(files.url(files.save("picture.bin", ContentFile(DATA))))
    assert response["Cache-Control"] == "public, max-age=3600"
    assert response["ETag"] == digest_etag(DATA)


def test_media_behind_a_signed_link_is_private(serve, client):
    files = serve()
    response = client.get(files.url(files.save("report.bin", ContentFile(DATA))))
    assert response.status_code == 200
    assert response["Cache-Control"] == "private, no-cache"
    assert "Vary" not in response  # the signature is in the URL: the cookie changes nothing


@pytest.mark.django_db
@pytest.mark.parametrize("public", [False, True])
def test_staff_only_media_is_private_and_varies_by_cookie(serve, admin_client, public):
    files = serve(staff_only=True, public=public)
    response = admin_client.get(files.url(files.save("internal.bin", ContentFile(DATA))))
    assert response.status_code == 200
    assert response["Cache-Control"] == "private, no-cache"  # a login decides: no shared cache may keep it
    assert response["Vary"] == "Cookie"


@pytest.mark.django_db
def test_a_stored_public_cache_control_never_shares_what_a_signature_or_a_login_guards(serve, client, admin_client):
    signed = serve(object_parameters={"Cache-Control": "public, max-age=86400"})
    response = client.get(signed.url(signed.save("report.bin", ContentFile(DATA))))
    assert response["Cache-Control"] == "private, no-cache"
    staff = serve(staff_only=True, public=True, object_parameters={"Cache-Control": "max-age=86400"})
    response = admin_client.get(staff.url(staff.save("internal.bin", ContentFile(DATA))))
    assert response["Cache-Control"] == "private, no-cache"
    kept = serve(object_parameters={"Cache-Control": "private, max-age=600"})
    assert client.get(kept.url(kept.save("mine.bin", ContentFile(DATA))))["Cache-Control"] == "private, max-age=600"
