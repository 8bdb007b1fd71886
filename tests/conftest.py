"""Real NATS for every test: one nats-server for the session, a fresh bucket per test."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable, Iterator
from typing import Any

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
def make_storage(bucket_name: str) -> Iterator[Callable[..., NatsStorage]]:
    """``make_storage(**options)``: a NatsStorage on this test's bucket, destroyed afterwards."""
    made: list[NatsStorage] = []

    def make(**options: Any) -> NatsStorage:
        made.append(NatsStorage(bucket_name, **options))
        return made[-1]

    yield make
    if made:
        with contextlib.suppress(BucketNotFound):
            _bridge.run(made[0].bucket.destroy())


@pytest.fixture
def storage(make_storage: Callable[..., NatsStorage]) -> NatsStorage:
    return make_storage()
