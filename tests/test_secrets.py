"""No message, log line, check output or repr carries a secret, whatever type it was given: each secret
option fed wrong types, in a storage's options, in settings.NATSSTORAGE and in STORAGES, shows up by its type
only, and URLs never show their user and password."""

from __future__ import annotations

import io
import logging
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.core.management.base import SystemCheckError

from natsstorage import NatsStorage, conf
from natsstorage.exceptions import NatsUnavailable
from natsstorage.redaction import redact_url, redact_urls
from natsstorage.testing import free_port

PASSWORD = "s3cret-Pa55word"
NUMBER = 271828182845  # a secret given as an int: its digits are the secret
URL = f"nats://alice:{PASSWORD}@127.0.0.1:4222"

WRONG_TYPES = [
    ("password", PASSWORD.encode()),
    ("password", NUMBER),
    ("password", [PASSWORD]),
    ("token", NUMBER),
    ("token", PASSWORD.encode()),
    ("user", PASSWORD.encode()),
    ("credentials", Path(f"/etc/nats/{PASSWORD}.creds")),
    ("credentials", PASSWORD.encode()),
    ("tls_key_file", PASSWORD.encode()),
    ("servers", [URL, 5]),
    ("servers", [URL.encode()]),
    ("servers", (URL, None)),
    ("servers", {URL: NUMBER}),
    ("servers", URL.encode()),
    ("servers", [URL, ""]),
    ("monitor_url", URL.encode()),
    ("monitor_url", NUMBER),
]
IDS = [f"{key}-{type(value).__name__}" for key, value in WRONG_TYPES]


def assert_no_secret(text: str) -> None:
    for secret in (PASSWORD, str(NUMBER), f"alice:{PASSWORD}"):
        assert secret not in text


def test_every_option_the_tests_feed_wrong_types_is_a_secret_one():
    assert {key for key, _ in WRONG_TYPES} == conf.SECRETS


@pytest.mark.parametrize(("key", "value"), WRONG_TYPES, ids=IDS)
def test_a_storage_given_a_secret_of_the_wrong_type_names_its_type_only(key, value, caplog):
    caplog.set_level(logging.DEBUG)
    with pytest.raises(ImproperlyConfigured, match=rf"\['{key}'\] \(a .+; secret, not shown\) is not valid") as error:
        NatsStorage("media", **{key: value})
    assert_no_secret(str(error.value))
    assert_no_secret(caplog.text)


@pytest.mark.parametrize(("key", "value"), WRONG_TYPES, ids=IDS)
def test_the_project_setting_given_a_secret_of_the_wrong_type_names_its_type_only(key, value, settings, caplog):
    caplog.set_level(logging.DEBUG)
    settings.NATSSTORAGE = {**settings.NATSSTORAGE, key: value}
    with pytest.raises(ImproperlyConfigured, match=r"secret, not shown") as error:
        NatsStorage("media").exists("a.txt")
    assert_no_secret(str(error.value))
    stderr = io.StringIO()
    with pytest.raises(SystemCheckError, match="natsstorage.E001") as failed:
        call_command("check", stdout=io.StringIO(), stderr=stderr)
    assert_no_secret(str(failed.value) + stderr.getvalue())
    assert_no_secret(caplog.text)


@pytest.mark.parametrize(("key", "value"), WRONG_TYPES, ids=IDS)
def test_a_storages_alias_given_a_secret_of_the_wrong_type_names_its_type_only(key, value, settings):
    settings.STORAGES = {
        **settings.STORAGES,
        "nats": {"BACKEND": "natsstorage.NatsStorage", "OPTIONS": {"bucket": "media", key: value}},
    }
    with pytest.raises(SystemCheckError, match="natsstorage.E002") as failed:
        call_command("check", stdout=io.StringIO(), stderr=io.StringIO())
    assert f"['{key}'] (a " in str(failed.value)
    assert_no_secret(str(failed.value))


def test_other_options_show_their_value_without_url_credentials():
    with pytest.raises(ImproperlyConfigured, match=r"\['base_url'\] = b'https://cdn.example.com/'") as error:
        NatsStorage("media", base_url=f"https://alice:{PASSWORD}@cdn.example.com/".encode())
    assert_no_secret(str(error.value))


def test_a_storage_and_its_settings_show_no_secret_in_their_repr(settings, tmp_path):
    key_file = tmp_path / f"{PASSWORD}.pem"  # a file that exists: a missing one is refused before any repr
    key_file.write_text("")
    settings.NATSSTORAGE = {**settings.NATSSTORAGE, "tls_key_file": str(key_file)}
    storage = NatsStorage("media", servers=[URL], user=PASSWORD, password=PASSWORD, token=str(NUMBER))
    assert_no_secret(repr(storage))
    assert_no_secret(repr(storage.config))
    assert "bucket='media'" in repr(storage.config)


def test_a_server_out_of_reach_is_named_without_its_credentials(caplog):
    caplog.set_level(logging.DEBUG)
    port = free_port()  # nothing listens here
    storage = NatsStorage("media", servers=f"nats://alice:{PASSWORD}@127.0.0.1:{port}", connect_timeout=0.5)
    with pytest.raises(NatsUnavailable) as error:
        storage.exists("a.txt")
    assert f"nats://127.0.0.1:{port}" in str(error.value)
    assert_no_secret(str(error.value))
    assert_no_secret(caplog.text)


@pytest.mark.parametrize(
    ("url", "redacted"),
    [
        (URL, "nats://127.0.0.1:4222"),
        (f"tls://{PASSWORD}@host:4443", "tls://host:4443"),  # a token
        (f"alice:{PASSWORD}@host:4222", "host:4222"),  # no scheme
        (f"nats://alice:{PASSWORD}@with@at@host", "nats://host"),  # an unescaped @ in the password
        ("nats://host:4222", "nats://host:4222"),
    ],
)
def test_urls_are_redacted_whatever_their_shape(url, redacted):
    assert redact_url(url) == redacted
    if "://" in url:  # in free text, only a scheme says where a URL starts
        assert_no_secret(redact_urls(repr([url, url.encode()])))
