"""Stand-ins for FileSystemStorage, InMemoryStorage and the static files storages that are NatsStorage underneath.

Django's storage tests build ``FileSystemStorage(location=<temp dir>, ...)``
themselves. Here each distinct directory becomes a bucket of its own, so tests
stay as isolated as they are on disk, and ``shutil.rmtree(<that dir>)`` (how
the tests clean up) empties the bucket. Only constructor arguments are mapped;
every behaviour under test is NatsStorage's. The static files storages
(``StaticFilesStorage``, ``ManifestStaticFilesStorage``) become
``NatsStaticStorage`` and ``NatsManifestStaticStorage`` on the bucket standing for
``STATIC_ROOT``; the finders keep reading the sources from disk.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import os
import shutil
import threading
import uuid
from collections.abc import Callable
from typing import Any

import nats
from nats.js.errors import NotFoundError

from natsstorage import NatsManifestStaticStorage, NatsStaticStorage, NatsStorage

STREAM = "OBJ_{bucket}"  # the NATS Object Store's stream for a bucket (ADR-20)
JANITOR_TIMEOUT = 30.0  # seconds to empty one bucket

_buckets: dict[str, str] = {}  # absolute local directory -> its bucket


def bucket_for(location: str | os.PathLike[str]) -> str:
    """The bucket standing for a local directory: one per distinct absolute path."""
    path = os.path.abspath(os.fspath(location))
    bucket = "dj_" + hashlib.sha256(path.encode()).hexdigest()[:24]
    _buckets[path] = bucket
    return bucket


def directory_count() -> int:
    """How many distinct local directories the tests gave a storage."""
    return len(_buckets)


def _options(base_url: Any, allow_overwrite: bool) -> dict[str, Any]:
    # public=True: plain links, as FileSystemStorage's url() gives. base_url goes
    # through untouched (lazy or without its trailing slash): that is under test too.
    options: dict[str, Any] = {"public": True, "file_overwrite": bool(allow_overwrite)}
    if base_url is not None:
        options["base_url"] = base_url
    return options


def _local_directory_made(location: str | None) -> None:
    # FileSystemStorage makes its directory on save and the tests clean up with
    # "if os.path.exists(location): shutil.rmtree(location)": keep that true.
    if location is not None:
        os.makedirs(location, exist_ok=True)


class FileSystemStorage(NatsStorage):
    """``FileSystemStorage``'s signature; ``location`` picks the bucket, ``None`` means MEDIA_ROOT's."""

    # Read by file_storage/tests.py when it is imported (RemovedInDjango60Warning code).
    OS_OPEN_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)

    def __init__(
        self,
        location: str | os.PathLike[str] | None = None,
        base_url: Any = None,
        file_permissions_mode: int | None = None,
        directory_permissions_mode: int | None = None,
        allow_overwrite: bool = False,
    ) -> None:
        from django.conf import settings

        directory = os.fspath(settings.MEDIA_ROOT if location is None else location)
        self._contract_directory = os.path.abspath(directory)
        super().__init__(bucket_for(directory), **_options(base_url, allow_overwrite))

    def _save(self, name: str, content: Any) -> str:
        name = super()._save(name, content)
        _local_directory_made(self._contract_directory)
        return name


class InMemoryStorage(NatsStorage):
    """``InMemoryStorage``'s signature; without ``location`` each instance is a fresh, empty bucket."""

    def __init__(
        self,
        location: str | os.PathLike[str] | None = None,
        base_url: Any = None,
        file_permissions_mode: int | None = None,
        directory_permissions_mode: int | None = None,
    ) -> None:
        bucket = "mem_" + uuid.uuid4().hex[:24] if location is None else bucket_for(location)
        super().__init__(bucket, **_options(base_url, False))


# They stand in for Django's classes: deconstruct() and pickle name them as Django's.
FileSystemStorage.__module__ = InMemoryStorage.__module__ = "django.core.files.storage"

PERMISSIONS = ("file_permissions_mode", "directory_permissions_mode")  # FileSystemStorage's, ignored
NO_STATIC_ROOT = "no STATIC_ROOT"  # the "directory" of a StaticFilesStorage made without one


def _static(location: Any, base_url: Any) -> tuple[str, str | None, dict[str, Any]]:
    """The bucket, local directory and options of ``StaticFilesStorage(location, base_url)``: STATIC_ROOT's
    and STATIC_URL's when not given."""
    from django.conf import settings

    directory = settings.STATIC_ROOT if location is None else location
    base_url = settings.STATIC_URL if base_url is None else base_url
    options: dict[str, Any] = {} if base_url is None else {"base_url": base_url}
    return bucket_for(directory or NO_STATIC_ROOT), os.fspath(directory) if directory else None, options


class StaticFilesStorage(NatsStaticStorage):
    """``StaticFilesStorage``'s signature on ``NatsStaticStorage``: the bucket standing for STATIC_ROOT."""

    def __init__(self, location: Any = None, base_url: Any = None, *args: Any, **kwargs: Any) -> None:
        bucket, self._contract_directory, options = _static(location, base_url)
        for ignored in PERMISSIONS:
            kwargs.pop(ignored, None)
        super().__init__(bucket, *args, **options, **kwargs)

    def _save(self, name: str, content: Any) -> str:
        name = super()._save(name, content)
        _local_directory_made(self._contract_directory)
        return name


class ManifestStaticFilesStorage(NatsManifestStaticStorage):
    """``ManifestStaticFilesStorage``'s signature on ``NatsManifestStaticStorage``."""

    def __init__(self, location: Any = None, base_url: Any = None, *args: Any, **kwargs: Any) -> None:
        bucket, self._contract_directory, options = _static(location, base_url)
        for ignored in PERMISSIONS:
            kwargs.pop(ignored, None)
        super().__init__(bucket, *args, **options, **kwargs)

    def _save(self, name: str, content: Any) -> str:
        name = super()._save(name, content)
        _local_directory_made(self._contract_directory)
        return name


StaticFilesStorage.__module__ = ManifestStaticFilesStorage.__module__ = "django.contrib.staticfiles.storage"


def _read_collected(test: Any, filepath: str) -> str:
    """``CollectionTestCase._get_file``: what collectstatic put at ``filepath`` under STATIC_ROOT, read from the
    bucket standing for STATIC_ROOT instead of the disk; OSError (FileNotFoundError) when it is not there."""
    from django.conf import settings

    assert filepath, "filepath is empty."
    with NatsStorage(bucket_for(settings.STATIC_ROOT), create_bucket=False).open(filepath, "rb") as collected:
        return collected.read().decode()


class Janitor:
    """Empties buckets over a connection of its own, so isolation does not rest on the code under test."""

    def __init__(self, url: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="contract-janitor", daemon=True)
        self.thread.start()
        self.nc = self._run(nats.connect(url, connect_timeout=5))

    def _run(self, coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(JANITOR_TIMEOUT)

    def empty(self, bucket: str) -> None:
        with contextlib.suppress(NotFoundError):  # never used: nothing to empty
            self._run(self.nc.jsm().purge_stream(STREAM.format(bucket=bucket)))

    def bucket_count(self) -> int:
        """How many buckets the run made: a check that the tests did reach the server."""
        streams = self._run(self.nc.jsm().streams_info())
        return sum(1 for stream in streams if stream.config.name.startswith(STREAM.format(bucket="")))

    def close(self) -> None:
        self._run(self.nc.close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


def _emptying_buckets(rmtree: Callable[..., Any], janitor: Janitor) -> Callable[..., Any]:
    @functools.wraps(rmtree)
    def wrapper(path: Any, *args: Any, **kwargs: Any) -> Any:
        root = os.path.abspath(os.fsdecode(path))
        for directory, bucket in list(_buckets.items()):
            if directory == root or directory.startswith(root + os.sep):
                janitor.empty(bucket)
        return rmtree(path, *args, **kwargs)

    return wrapper


def install(url: str) -> Janitor:
    """Put the stand-ins where Django's test modules import them from; call before those are imported."""
    import django.contrib.staticfiles.finders  # noqa: F401  (static files keep the real FileSystemStorage)
    import django.contrib.staticfiles.storage  # noqa: F401
    import django.core.files.storage as package
    import django.core.files.storage.filesystem as filesystem
    import django.core.files.storage.memory as memory

    package.FileSystemStorage = filesystem.FileSystemStorage = FileSystemStorage  # type: ignore[misc]
    package.InMemoryStorage = memory.InMemoryStorage = InMemoryStorage  # type: ignore[misc]
    static = django.contrib.staticfiles.storage
    static.StaticFilesStorage = StaticFilesStorage  # type: ignore[misc]
    static.ManifestStaticFilesStorage = ManifestStaticFilesStorage  # type: ignore[misc]
    janitor = Janitor(url)
    shutil.rmtree = _emptying_buckets(shutil.rmtree, janitor)  # type: ignore[assignment]
    return janitor


def install_staticfiles() -> None:
    """Ready Django's staticfiles tests; call once ``tests/`` is on sys.path, before they are imported.

    ``natsstorage`` goes first in their INSTALLED_APPS, as its docs say (its ``collectstatic`` is the one a
    project runs), and ``_get_file``, how they read what ``collectstatic`` wrote, reads the bucket."""
    from staticfiles_tests.settings import TEST_SETTINGS

    TEST_SETTINGS["INSTALLED_APPS"] = ["natsstorage", *TEST_SETTINGS["INSTALLED_APPS"]]
    from staticfiles_tests.cases import CollectionTestCase

    CollectionTestCase._get_file = _read_collected  # type: ignore[method-assign]
