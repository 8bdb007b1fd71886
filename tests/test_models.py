"""FileField(storage=NatsStorage("configs")): model saves and migrations."""

from __future__ import annotations

import contextlib
import io
import sys

import pytest
from django.core.files.base import ContentFile
from django.core.management import call_command

from natsstorage import NatsStorage
from natsstorage.buckettools import BucketTools
from natsstorage.exceptions import BucketNotFound
from tests.testapp.models import Document


@pytest.fixture
def configs_bucket():
    yield
    with contextlib.suppress(BucketNotFound):
        BucketTools(Document._meta.get_field("upload").storage).destroy()


def test_the_storage_deconstructs_to_its_public_path():
    assert NatsStorage("configs").deconstruct() == ("natsstorage.NatsStorage", ("configs",), {})
    assert NatsStorage("c", file_overwrite=True).deconstruct()[2] == {"file_overwrite": True}


@pytest.mark.django_db
def test_makemigrations_writes_a_migration_that_imports_cleanly(tmp_path, settings, monkeypatch):
    out = io.StringIO()
    settings.MIGRATION_MODULES = {"testapp": "tests_generated_migrations"}
    package = tmp_path / "tests_generated_migrations"
    package.mkdir()
    (package / "__init__.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        call_command("makemigrations", "testapp", stdout=out)
        migration = next(package.glob("0001_*.py"))
        source = migration.read_text()
        assert "import natsstorage" in source
        assert "storage=natsstorage.NatsStorage('configs')" in source
        namespace: dict[str, object] = {}
        exec(compile(source, str(migration), "exec"), namespace)  # imports cleanly
        out = io.StringIO()
        call_command("makemigrations", "testapp", "--check", "--dry-run", stdout=out)  # nothing new
    finally:
        for module in [module for module in sys.modules if module.startswith("tests_generated_migrations")]:
            del sys.modules[module]


@pytest.mark.django_db
def test_a_model_file_field_saves_into_the_bucket(configs_bucket):
    document = Document(title="settings")
    document.upload.save("app settings.yaml", ContentFile(b"debug: false"), save=True)
    assert document.upload.name == "docs/app_settings.yaml"  # Django's get_valid_name
    fresh = Document.objects.get(pk=document.pk)
    with fresh.upload.open() as f:
        assert f.read() == b"debug: false"
    assert fresh.upload.size == 12
    fresh.upload.delete(save=True)
    assert not NatsStorage("configs").exists("docs/app_settings.yaml")


@pytest.mark.django_db
def test_natsstorage_has_a_migration_for_each_change_to_its_models():
    out = io.StringIO()
    call_command("makemigrations", "natsstorage", "--check", "--dry-run", stdout=out)
    assert "No changes detected" in out.getvalue()
