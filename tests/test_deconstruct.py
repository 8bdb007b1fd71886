"""A storage rebuilt from ``deconstruct()`` or a pickle, as CMSs and cleanup apps do in background tasks,
reaches the same servers with the same credentials; no secret is written into a migration or a pickle."""

from __future__ import annotations

import copy
import os
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.core.files.base import ContentFile
from django.core.files.storage import storages
from django.db import migrations, models
from django.db.migrations.writer import MigrationWriter

from natsstorage import NatsStorage, close_connections
from natsstorage.testing import NatsServer

REPO = Path(__file__).resolve().parent.parent
PASSWORD = "pa55-w0rd-of-the-media-server"
TASK_TIMEOUT = 60  # seconds for a background task's process: Django's setup, a connect, a delete

# A project's settings.py: the media server and its password come from the environment, not the code.
SETTINGS = textwrap.dedent(
    """
    import os
    from tests.settings import *

    STORAGES = {
        "default": {"BACKEND": "django.core.files.storage.InMemoryStorage"},
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
        "media": {
            "BACKEND": "natsstorage.NatsStorage",
            "OPTIONS": {
                "bucket": os.environ["MEDIA_BUCKET"],
                "servers": os.environ["MEDIA_NATS_URL"],
                "user": "alice",
                "password": os.environ["MEDIA_NATS_PASSWORD"],
            },
        },
    }
    """
)

# A background task: rebuild the storage from what the web process handed over, delete a file.
FROM_PICKLE = "import pickle, sys, django; django.setup(); pickle.loads(sys.stdin.buffer.read()).delete(sys.argv[1])"
FROM_DECONSTRUCT = (
    "import pickle, sys, django; django.setup(); from django.utils.module_loading import import_string; "
    "path, args, kwargs = pickle.loads(sys.stdin.buffer.read()); "
    "import_string(path)(*args, **kwargs).delete(sys.argv[1])"
)


@pytest.fixture
def media_server(tmp_path) -> NatsServer:
    """A nats-server that wants a password, on a port of its own: not 4222, not what $NATS_URL says."""
    with NatsServer(
        store_dir=tmp_path / "media", config=f'authorization {{ user: alice, password: "{PASSWORD}" }}'
    ) as nats:
        try:
            yield nats
        finally:
            close_connections()


@pytest.fixture
def project(tmp_path, media_server, bucket_name, settings, monkeypatch):
    """The settings module above, in this process (``settings``) and as a file for another process."""
    environment = {"MEDIA_BUCKET": bucket_name, "MEDIA_NATS_URL": media_server.url, "MEDIA_NATS_PASSWORD": PASSWORD}
    for key, value in environment.items():
        monkeypatch.setenv(key, value)
    (tmp_path / "media_project_settings.py").write_text(SETTINGS)
    namespace: dict[str, object] = {}
    exec(SETTINGS, namespace)
    settings.STORAGES = namespace["STORAGES"]
    return tmp_path


def background_task(project: Path, nats_server: NatsServer, code: str, handed_over: bytes, name: str) -> None:
    """Runs ``code`` in a new Python process with the project's settings; ``$NATS_URL`` names another server."""
    environment = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "media_project_settings",
        "PYTHONPATH": os.pathsep.join([str(project), str(REPO)]),
        "NATS_URL": nats_server.url,  # what a storage without its settings would reach: the wrong server
    }
    done = subprocess.run(
        [sys.executable, "-c", code, name],
        input=handed_over,
        env=environment,
        capture_output=True,
        timeout=TASK_TIMEOUT,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode()[-3000:]


def assert_no_secret(written: bytes | str, media_server: NatsServer) -> None:
    text = written.decode("latin-1") if isinstance(written, bytes) else written
    assert PASSWORD not in text
    assert media_server.url not in text and str(media_server.port) not in text


@pytest.mark.parametrize("handed_over", ["pickle", "deconstruct"])
def test_a_background_task_in_another_process_deletes_on_the_storages_own_server(
    project, media_server, nats_server, make_storage, handed_over
):
    media = storages["media"]
    media.save("photo.jpg", ContentFile(b"original"))
    decoy = make_storage()  # the same bucket and name on the server $NATS_URL names, without a password
    decoy.save("photo.jpg", ContentFile(b"someone else's"))
    if handed_over == "pickle":
        code, data = FROM_PICKLE, pickle.dumps(media)
    else:
        code, data = FROM_DECONSTRUCT, pickle.dumps(media.deconstruct())
    assert_no_secret(data, media_server)

    background_task(project, nats_server, code, data, "photo.jpg")

    assert not media.exists("photo.jpg")
    assert decoy.open("photo.jpg").read() == b"someone else's"


def test_a_migration_of_a_field_on_a_configured_storage_holds_its_alias_and_no_secret(project, media_server):
    field = models.FileField(storage=storages["media"], upload_to="photos/")
    migration = migrations.Migration("0002_document_photo", "testapp")
    migration.operations = [migrations.AddField("document", "photo", field)]
    written = MigrationWriter(migration).as_string()  # the file makemigrations writes
    assert_no_secret(written, media_server)
    assert "natsstorage.NatsStorage(alias='media', bucket=" in written
    namespace: dict[str, object] = {}
    exec(written, namespace)  # what migrate runs, in this process or any other
    rebuilt = namespace["Migration"].operations[0].field.storage
    assert rebuilt.config == storages["media"].config


def test_a_storage_made_in_code_can_take_a_configured_storages_credentials(project, media_server, make_storage):
    thumbs = NatsStorage(storages["media"].config.bucket, alias="media", location="thumbs")
    thumbs.save("a.jpg", ContentFile(b"thumb"))
    assert storages["media"].open("thumbs/a.jpg").read() == b"thumb"
    assert thumbs.deconstruct()[2] == {"alias": "media", "location": "thumbs"}
    copied = pickle.loads(pickle.dumps(thumbs))
    assert copied.open("a.jpg").read() == b"thumb"


def test_secrets_given_in_code_are_never_pickled_and_the_copy_refuses_to_connect(media_server, bucket_name):
    storage = NatsStorage(bucket_name, servers=media_server.url, user="alice", password=PASSWORD)
    storage.save("a.txt", ContentFile(b"x"))
    data = pickle.dumps(storage)
    assert_no_secret(data, media_server)
    copied = pickle.loads(data)
    with pytest.raises(ImproperlyConfigured, match="password, servers, user") as refused:
        copied.exists("a.txt")
    assert_no_secret(str(refused.value), media_server)
    for kept in (copy.copy(storage), copy.deepcopy(storage)):  # in this process: the same storage
        assert kept.open("a.txt").read() == b"x"


def test_deconstructing_a_storage_given_secrets_in_code_warns_that_they_are_left_out(media_server, bucket_name):
    storage = NatsStorage(bucket_name, servers=media_server.url, password=PASSWORD, location="docs")
    with pytest.warns(UserWarning, match="was given password, servers in code") as warned:
        assert storage.deconstruct() == ("natsstorage.NatsStorage", (bucket_name,), {"location": "docs"})
    assert_no_secret(str(warned[0].message), media_server)


def test_an_alias_that_names_no_storage_is_refused_on_use(settings):
    storage = NatsStorage(alias="nope")  # a migration naming it still loads
    with pytest.raises(ImproperlyConfigured, match="alias='nope' names no entry of settings.STORAGES"):
        storage.exists("a.txt")
    settings.STORAGES = {**settings.STORAGES, "memory": {"BACKEND": "django.core.files.storage.InMemoryStorage"}}
    with pytest.raises(ImproperlyConfigured, match="BACKEND of settings.STORAGES\\['memory'\\] is not a NatsStorage"):
        NatsStorage(alias="memory").exists("a.txt")
