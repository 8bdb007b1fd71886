"""Real NATS for every test: one nats-server for the session, a fresh bucket per test."""

from __future__ import annotations

import contextlib
import itertools
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.test.utils import override_settings

from natsstorage import NatsStorage, close_connections
from natsstorage.exceptions import BucketNotFound
from natsstorage.testing import NatsServer

from .helpers import CSS, DOT_PNG


@pytest.fixture(scope="session", autouse=True)
def nats_server() -> Iterator[NatsServer]:
    with NatsServer() as server:
        with override_settings(NATSSTORAGE={"servers": [server.url], "timeout": 5.0}):
            yield server
        close_connections()


@pytest.fixture
def own_server(tmp_path) -> Iterator[Callable[..., NatsServer]]:
    """``own_server(config="")``: a nats-server of this test's own, to stop, restart or configure.

    Stopped afterwards, and no connection to it outlives the test (none keeps reconnecting).
    """
    with contextlib.ExitStack() as servers:
        started = itertools.count()

        def start(config: str = "") -> NatsServer:
            store = tmp_path / f"nats-{next(started)}"
            return servers.enter_context(NatsServer(store_dir=store, config=config))

        try:
            yield start
        finally:
            close_connections()


@pytest.fixture
def bucket_name() -> str:
    return f"t{uuid.uuid4().hex[:12]}"


@pytest.fixture
def make_storage(bucket_name: str) -> Iterator[Callable[..., NatsStorage]]:
    """``make_storage(**options)``: a NatsStorage on this test's bucket, destroyed afterwards."""
    made: list[NatsStorage] = []

    def make(**options: Any) -> NatsStorage:
        made.append(NatsStorage(bucket_name, **options))
        return made[-1]

    yield make
    if made:
        with contextlib.suppress(BucketNotFound):
            made[0].destroy()


@pytest.fixture
def storage(make_storage: Callable[..., NatsStorage]) -> NatsStorage:
    return make_storage()


@pytest.fixture
def sources(tmp_path):
    """A project's static sources: a stylesheet naming an image, and a script three levels down."""
    (tmp_path / "css").mkdir()
    (tmp_path / "css" / "site.css").write_text(CSS)
    (tmp_path / "img").mkdir()
    (tmp_path / "img" / "dot.png").write_bytes(DOT_PNG)
    (tmp_path / "js" / "deep" / "er").mkdir(parents=True)
    (tmp_path / "js" / "deep" / "er" / "app.js").write_text("console.log(1);\n")
    return tmp_path


@pytest.fixture
def media(make_storage, bucket_name, sources, settings):
    """The README's configuration: media and static files in one bucket, under two locations."""
    settings.STATICFILES_DIRS = [str(sources)]
    settings.STORAGES = {
        "default": {"BACKEND": "natsstorage.NatsStorage", "OPTIONS": {"bucket": bucket_name, "location": "media"}},
        "staticfiles": {
            "BACKEND": "natsstorage.NatsManifestStaticStorage",
            "OPTIONS": {"bucket": bucket_name, "location": "static"},
        },
    }
    return make_storage(location="media")
