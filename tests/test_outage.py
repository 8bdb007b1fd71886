"""NATS away: after one caller has waited ``connect_timeout``, calls fail at once; service comes back by itself."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.core.files.base import ContentFile

from natsstorage import NatsStorage, close_connections
from natsstorage.exceptions import NatsUnavailable

from .testapp.views import PAGE_SIZE

CONNECT_TIMEOUT = 1.0
BACKOFF = 0.5
SLACK = 1.0  # seconds a loaded machine may add to a page


@pytest.fixture
def down_settings(own_server, settings):
    """The project's NATS is a server of this test's own, to stop and start again on the same port."""
    server = own_server()
    settings.NATSSTORAGE = {
        "servers": [server.url],
        "connect_timeout": CONNECT_TIMEOUT,
        "connect_backoff": BACKOFF,
        "timeout": 5.0,
    }
    return server


def fill(storage: NatsStorage) -> None:
    for index in range(PAGE_SIZE):
        storage.save(f"docs/{index}.txt", ContentFile(b"x" * index))


def timed_page(client) -> tuple[float, str]:
    started = time.monotonic()
    text = client.get("/sizes/").text
    return time.monotonic() - started, text


def wait_until_served(client, deadline: float) -> str:
    """The page once it answers again; every look while NATS is still away must answer at once."""
    while True:
        took, text = timed_page(client)
        if "unavailable" not in text:
            return text
        assert took < SLACK, f"a page during the outage took {took:.1f} s"
        assert time.monotonic() < deadline, "service did not come back by itself"
        time.sleep(0.1)


@pytest.mark.parametrize("first", ["connected", "never connected"])
def test_with_nats_down_a_page_of_50_files_answers_in_one_connect_timeout_and_service_comes_back(
    client, down_settings, first
):
    server = down_settings
    storage = NatsStorage("configs")
    fill(storage)
    if first == "never connected":
        server.stop()
        close_connections()  # as in a fresh process: no connection made yet
    else:
        assert "49 bytes" in timed_page(client)[1]
        server.stop()

    took, text = timed_page(client)
    assert text.count("the file store is unavailable") == PAGE_SIZE
    assert took < CONNECT_TIMEOUT + SLACK, f"{took:.1f} s: each call waited again"
    took, _ = timed_page(client)
    assert took < SLACK, f"{took:.1f} s: the next page waited again"

    server.start()
    text = wait_until_served(client, time.monotonic() + BACKOFF + CONNECT_TIMEOUT + SLACK)
    assert "docs/49.txt: 49 bytes" in text


def test_a_server_gone_right_after_a_worker_threads_call_is_found_lost_not_waited_on(own_server):
    """A worker thread runs the loop for its call, then lets go of it; the next call reads what came meanwhile."""
    server = own_server()
    storage = NatsStorage("configs", servers=server.url, connect_timeout=CONNECT_TIMEOUT, timeout=5.0)
    storage.save("a.txt", ContentFile(b"a"))

    def size_in_a_worker_thread() -> int:
        with ThreadPoolExecutor(1) as pool:
            return pool.submit(storage.size, "a.txt").result()

    assert size_in_a_worker_thread() == 1
    server.stop()  # at once: no thread runs the loop as the connection closes
    started = time.monotonic()
    with pytest.raises(NatsUnavailable, match="lost the connection"):
        size_in_a_worker_thread()
    took = time.monotonic() - started
    assert took < CONNECT_TIMEOUT + SLACK, f"{took:.1f} s: a request was sent on the closed connection"


def test_during_an_outage_every_call_fails_at_once_with_the_same_clear_error(own_server):
    server = own_server()
    storage = NatsStorage("configs", servers=server.url, connect_timeout=CONNECT_TIMEOUT, connect_backoff=5.0)
    server.stop()
    with pytest.raises(NatsUnavailable) as first:
        storage.exists("a.txt")
    started = time.monotonic()
    for _ in range(20):
        with pytest.raises(NatsUnavailable) as again:
            storage.size("a.txt")
        assert str(again.value) == str(first.value)
    assert time.monotonic() - started < SLACK
    assert f"cannot connect to NATS at {server.url} within 1 s" in str(first.value)


def test_when_no_call_asks_during_a_backoff_the_next_call_tries_itself_and_succeeds(own_server):
    server = own_server()
    storage = NatsStorage("configs", servers=server.url, connect_timeout=CONNECT_TIMEOUT, connect_backoff=BACKOFF)
    server.stop()
    with pytest.raises(NatsUnavailable):
        storage.exists("a.txt")
    time.sleep(2 * BACKOFF + CONNECT_TIMEOUT)  # the background attempt finds no one asking, and stops
    server.start()
    storage.save("a.txt", ContentFile(b"a"))  # the next call: no waiting for a back-off
    assert storage.exists("a.txt")


def test_other_connection_settings_are_not_held_up_by_an_outage(own_server, storage):
    server = own_server()
    down = NatsStorage("configs", servers=server.url, connect_timeout=CONNECT_TIMEOUT)
    server.stop()
    with pytest.raises(NatsUnavailable):
        down.exists("a.txt")
    storage.save("a.txt", ContentFile(b"a"))  # the session's server, on its own connection
    assert storage.exists("a.txt")
