"""Settings: defaults, NATSSTORAGE, per-storage options, NATS_URL, and the system checks."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.core.checks import run_checks
from django.core.exceptions import ImproperlyConfigured

from natsstorage import NatsStorage, conf
from natsstorage.buckettools import BucketTools


def test_options_override_the_project_setting(settings):
    settings.NATSSTORAGE = {"servers": "nats://127.0.0.1:1", "timeout": 3.0, "chunk_size": 65536}
    storage = NatsStorage("b", timeout=7.5)
    assert storage.config.servers == ("nats://127.0.0.1:1",)
    assert (storage.config.timeout, storage.config.chunk_size) == (7.5, 65536)


def test_servers_come_from_nats_url_when_not_configured(settings, monkeypatch):
    settings.NATSSTORAGE = {}
    monkeypatch.setenv("NATS_URL", "nats://127.0.0.1:4001, nats://127.0.0.1:4002")
    assert NatsStorage("b").config.servers == ("nats://127.0.0.1:4001", "nats://127.0.0.1:4002")
    monkeypatch.delenv("NATS_URL")
    assert NatsStorage("b").config.servers == ("nats://localhost:4222",)


def test_the_bucket_defaults_to_media(settings):
    settings.NATSSTORAGE = {}
    assert NatsStorage().config.bucket == "media"


def test_unknown_options_are_refused_with_the_valid_keys():
    with pytest.raises(ImproperlyConfigured, match="unknown key 'bukket'.*Valid keys: .*bucket"):
        NatsStorage("b", bukket="x")  # type: ignore[call-arg]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"chunk_size": 0}, "chunk_size"),
        ({"chunk_size": 2 * 1024 * 1024}, "chunk_size"),
        ({"storage": "disk"}, "'file' or 'memory'"),
        ({"timeout": -1}, "timeout"),
        ({"servers": []}, "servers"),
        ({"file_overwrite": "yes"}, "True or False"),
        ({"serve_cache": -1}, "serve_cache"),
        ({"serve_cache": 1.5}, "serve_cache"),
        ({"serve_cache_trust": -1}, "serve_cache_trust"),
        ({"serve_watch": 1}, "serve_watch"),
        ({"serve_files": -1}, "serve_files"),
        ({"serve_files_dir": "relative/copies"}, "an absolute path"),
    ],
)
def test_bad_option_values_are_refused(options, message):
    with pytest.raises(ImproperlyConfigured, match=message):
        NatsStorage("b", **options)


def test_a_bad_bucket_name_is_refused():
    with pytest.raises(ImproperlyConfigured, match="letters, digits"):
        NatsStorage("bad.name").config  # noqa: B018


def test_system_checks_report_bad_settings_with_hints(settings):
    settings.NATSSTORAGE = {"servers": "nats://127.0.0.1:1", "windoww": 3}
    settings.STORAGES = {
        **settings.STORAGES,
        "nats": {"BACKEND": "natsstorage.NatsStorage", "OPTIONS": {"bucket": "ok", "replicas": 9}},
    }
    errors = {error.id: error for error in run_checks()}
    assert "unknown key 'windoww'" in errors["natsstorage.E001"].msg
    assert "replicas" in errors["natsstorage.E002"].msg and errors["natsstorage.E002"].hint


def test_system_checks_check_the_options_of_every_natsstorage_subclass(settings):
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {
            "BACKEND": "natsstorage.NatsManifestStaticStorage",
            "OPTIONS": {"replicas": 9, "manifest_storage": None},  # the second is ManifestFilesMixin's own
        },
        "archive": {"BACKEND": "tests.testapp.storages.ArchiveStorage", "OPTIONS": {"tenant": "a", "windoww": 3}},
        "broken": {"BACKEND": "tests.testapp.storages.Missing"},  # Django's to report, when it is used
    }
    errors = [error.msg for error in run_checks() if error.id == "natsstorage.E002"]
    assert len(errors) == 2
    assert "STORAGES['staticfiles']['OPTIONS']['replicas']" in errors[0]
    assert errors[1] == "STORAGES['archive']['OPTIONS'] has an unknown key 'windoww'."


def test_good_settings_pass_the_checks(settings):
    settings.NATSSTORAGE = {"servers": ["nats://127.0.0.1:1"], "timeout": 2}
    assert not [error for error in run_checks() if error.id.startswith("natsstorage.")]


def test_passwords_do_not_show_in_repr(settings):
    storage = NatsStorage("b", password="hunter2", token="t0ken")
    assert "hunter2" not in repr(storage.config.connection)
    assert "t0ken" not in repr(storage.config.connection)


def test_a_storage_from_the_storages_setting_reads_and_writes(settings, bucket_name, nats_server):
    from django.core.files.base import ContentFile
    from django.core.files.storage import storages

    settings.STORAGES = {
        **settings.STORAGES,
        "nats": {"BACKEND": "natsstorage.NatsStorage", "OPTIONS": {"bucket": bucket_name, "file_overwrite": True}},
    }
    storage = storages["nats"]
    try:
        assert isinstance(storage, NatsStorage) and storage.config.bucket == bucket_name
        assert storage.save("hello.txt", ContentFile(b"hi")) == "hello.txt"
        assert storage.open("hello.txt").read() == b"hi"
    finally:
        BucketTools(storage).destroy()


def test_the_docs_options_table_is_generated_from_the_declarations():
    """docs/options.md asks the docs build for the table (docs/_ext/natsstorage_options.py), so it cannot go
    stale; no page keeps a copy by hand."""
    root = Path(__file__).parent.parent
    assert "```{natsstorage-options}\n```" in (root / "docs" / "options.md").read_text()
    a_row = conf.options_table().splitlines()[2]
    for page in [root / "README.md", *(root / "docs").glob("*.md")]:
        assert a_row not in page.read_text(), page


def test_every_secret_option_is_declared_secret():
    assert {"user", "password", "token", "credentials", "servers", "tls_key_file"} <= conf.SECRETS


def test_a_missing_credentials_or_tls_file_fails_the_checks_and_the_first_call_naming_it(settings, tmp_path):
    ca = tmp_path / "ca.pem"
    settings.NATSSTORAGE = {**settings.NATSSTORAGE, "tls_ca_file": str(ca)}
    settings.STORAGES = {
        **settings.STORAGES,
        "nats": {"BACKEND": "natsstorage.NatsStorage", "OPTIONS": {"credentials": str(tmp_path / "app.creds")}},
    }
    errors = [error for error in run_checks() if error.id == "natsstorage.E101"]
    assert [error.msg for error in errors] == [
        f"settings.NATSSTORAGE['tls_ca_file'] names {str(ca)!r}, which is not a file.",
        f"STORAGES['nats']['OPTIONS']['credentials'] names {str(tmp_path / 'app.creds')!r}, which is not a file.",
    ]
    with pytest.raises(ImproperlyConfigured, match=re.escape(f"['tls_ca_file'] names {str(ca)!r}")):
        NatsStorage("media").exists("a.txt")


def test_an_exported_nats_url_that_settings_override_is_a_warning(settings, monkeypatch):
    settings.NATSSTORAGE = {"servers": ["nats://127.0.0.1:4222"]}
    monkeypatch.setenv("NATS_URL", "nats://127.0.0.1:4333")
    (warning,) = [message for message in run_checks() if message.id == "natsstorage.W101"]
    assert warning.msg == (
        "$NATS_URL is set, but settings.NATSSTORAGE['servers'] is what natsstorage uses: $NATS_URL is ignored."
    )
    monkeypatch.setenv("NATS_URL", "nats://127.0.0.1:4222")  # the same servers: nothing to say
    assert not [message for message in run_checks() if message.id == "natsstorage.W101"]


def test_natsstorage_after_staticfiles_with_a_nats_static_storage_is_a_warning(settings):
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "natsstorage.NatsManifestStaticStorage", "OPTIONS": {"bucket": "static"}},
    }
    assert not [message for message in run_checks() if message.id == "natsstorage.W102"]  # the suite's order
    apps = [app for app in settings.INSTALLED_APPS if app != "natsstorage"]
    settings.INSTALLED_APPS = [*apps, "natsstorage"]
    (warning,) = [message for message in run_checks() if message.id == "natsstorage.W102"]
    assert "collectstatic is Django's" in warning.msg
    assert warning.hint == "Put 'natsstorage' above 'django.contrib.staticfiles' in INSTALLED_APPS."
    settings.STORAGES = {**settings.STORAGES, "staticfiles": {"BACKEND": "django.core.files.storage.InMemoryStorage"}}
    assert not [message for message in run_checks() if message.id == "natsstorage.W102"]  # not ours: no matter
