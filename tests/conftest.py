"""Real NATS for every test: one nats-server for the session, a fresh bucket per test."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator

import pytest
from django.test.utils import override_settings

from natsstorage import NatsStorage, _bridge
from natsstorage.exceptions import BucketNotFound
from natsstorage.testing import NatsServer


@pytest.fixture(scope="session", autouse=True)
def nats_server() -> Iterator[NatsServer]:
    with NatsServer() as server:
        with override_settings(NATSSTORAGE={"servers": [server.url], "timeout": 5.0}):
            yield server
        _bridge.close_connections()


@pytest.fixture
def bucket_name() -> str:
    return f"t{uuid.uuid4().hex[:12]}"


@pytest.fixture
def storage(bucket_name: str) -> Iterator[NatsStorage]:
    storage = NatsStorage(bucket_name)
    yield storage
    with contextlib.suppress(BucketNotFound):
        _bridge.run(storage.bucket.destroy())
