"""natspy.py reaches into nats-py's private connection state; these tests fail the day that changes.

Run on every nats-py that pyproject.toml allows (its upper bound is the newest release they passed on), against
real connections to a real nats-server: what natspy.py writes has the shape nats-py itself uses, and what it
buys (a connection that is reconnecting closes whole) is still needed and still works.
"""

from __future__ import annotations

import asyncio
import random

from nats.aio.client import Client
from nats.aio.transport import TcpTransport

from natsstorage import connections, jetstream, loop, natspy
from natsstorage.connections import ConnectionSettings


def test_the_buffer_natspy_empties_has_the_shape_it_expects(nats_server):
    async def shapes() -> None:
        nc = await connections.connection(ConnectionSettings(servers=(nats_server.url,)))
        assert type(nc._pending) is list and type(nc._pending_data_size) is int
        # What drop_pending empties is what nats-py's own publish fills and counts, and nothing else.
        start, size = len(nc._pending), nc._pending_data_size  # no await below yields to nats-py's flusher
        await nc.publish("natspy.shape", b"x" * 100, reply="natspy.reply", headers={"Nats-Msg-Id": "a"})
        queued = nc._pending[start:]
        assert all(type(item) is bytes for item in queued)
        assert nc._pending_data_size - size == sum(map(len, queued)) > 100

    loop.run(shapes())


async def reconnecting_with_data_waiting(server) -> Client:
    """A connection whose server stopped, with a message in its buffer waiting for the reconnect."""
    nc = Client()
    await nc.connect(server.url, max_reconnect_attempts=-1, reconnect_time_wait=0.5, connect_timeout=2)
    await asyncio.to_thread(server.stop)
    deadline = asyncio.get_running_loop().time() + 10
    while nc.is_connected and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.01)
    assert nc.is_reconnecting and isinstance(nc._transport, TcpTransport)
    await nc.publish("natspy.waiting", b"x" * 1000)
    assert nc._pending_data_size > 0
    return nc


def test_a_reconnecting_connection_with_data_waiting_closes_whole_once_its_buffer_is_dropped(own_server):
    async def close() -> tuple[bool, int]:
        nc = await reconnecting_with_data_waiting(own_server())
        natspy.drop_pending(nc)
        await asyncio.wait_for(nc.close(), 5)
        return nc.is_closed, nc._pending_data_size

    assert loop.run(close()) == (True, 0)


def test_nats_py_still_fails_to_close_such_a_connection_by_itself(own_server):
    # What drop_pending buys. The day this fails, nats-py closes such a connection itself: drop natspy.py.
    # Whether a close fails depends on where nats-py's reconnect loop stands at that moment: five tries.
    async def close() -> bool:
        nc = await reconnecting_with_data_waiting(own_server())
        try:
            await asyncio.wait_for(nc.close(), 5)
        except (RuntimeError, ConnectionResetError):  # uvloop's "handler is closed"; asyncio's
            return False
        finally:
            natspy.drop_pending(nc)
            await nc.close()  # what the test leaves behind, closed
        return True

    assert not all(loop.run(close()) for _ in range(5))


HEADER_PIECES = [
    b"Nats-Seq",
    b"a",
    b"B",
    b":",
    b" ",
    b"\t",
    b"\r\n",
    b"\x1c",
    b"\x1f",
    b"\x0b",
    b"\xc3\xa9",
    b"\xff",
    b"\r",
]


def test_our_header_parser_answers_what_nats_pys_does_for_any_bytes():
    rng = random.Random(24)
    blocks = [b"Nats-Stream: S\r\nNats-Subject: a.b\r\nNats-Sequence: 7\r\n\r\n", b"", b":", b" A : \xff\r\n"]
    blocks += [b"".join(rng.choices(HEADER_PIECES, k=rng.randint(0, 24))) for _ in range(20_000)]
    for raw in blocks:
        assert natspy.parse_header_lines(raw) == Client._parse_header_lines(raw), raw


def test_a_connection_parses_headers_with_ours_and_nats_py_still_calls_it_through_the_connection(nats_server):
    calls = []

    def counted(raw: bytes) -> dict[str, str]:
        calls.append(raw)
        return natspy.parse_header_lines(raw)

    async def received() -> dict[str, str] | None:
        nc = await connections.connection(ConnectionSettings(servers=(nats_server.url,)))
        assert nc._parse_header_lines is natspy.parse_header_lines
        other = Client()
        await other.connect(nats_server.url)
        try:
            other._parse_header_lines = counted
            # Both on one connection: nats-py 2.16's flush() writes its PING ahead of commands still in its buffer,
            # so a flushed subscription may not have reached the server when another connection publishes.
            subscription = await other.subscribe("natspy.headers")
            await other.publish("natspy.headers", b"x", headers={"Nats-Msg-Id": "a", "Odd": " b "})
            return (await subscription.next_msg(timeout=5)).headers
        finally:
            await other.close()

    assert loop.run(received()) == {"Nats-Msg-Id": "a", "Odd": "b"} and calls


def test_send_puts_on_the_wire_what_nats_pys_publish_does_and_queues_the_payload_itself(nats_server):
    payload = bytes(range(256)) * 1024
    headers = {"Nats-Msg-Id": "a", "Nats-Expected-Last-Subject-Sequence": "7"}
    head = jetstream.header_block(headers)

    async def sent() -> list[tuple[str, str, dict[str, str] | None, bytes]]:
        nc = await connections.connection(ConnectionSettings(servers=(nats_server.url,)))
        subscription = await nc.subscribe("natspy.send.*")
        try:
            await nc.flush()  # (one connection: the SUB went out before the PING)
            # What send queues is the payload object itself, counted as nats-py counts what it queues.
            start, size = len(nc._pending), nc._pending_data_size
            await natspy.send(nc, "natspy.send.ours", payload, "natspy.reply", headers, head)
            queued = nc._pending[start:]
            assert any(item is payload for item in queued) and all(type(item) is bytes for item in queued)
            assert nc._pending_data_size - size == sum(map(len, queued))
            assert type(nc._max_pending_size) is int and nc._flush_queue is not None
            await nc.publish("natspy.send.theirs", payload, reply="natspy.reply", headers=headers)
            await natspy.send(nc, "natspy.send.plain", memoryview(bytearray(b"plain")), "natspy.reply", None, b"")
            return [(m.subject, m.reply, m.headers, m.data) for m in [await subscription.next_msg(5) for _ in "abc"]]
        finally:
            await subscription.unsubscribe()

    ours, theirs, plain = loop.run(sent())
    assert ours[1:] == theirs[1:] and theirs[2] == {"Nats-Msg-Id": "a", "Nats-Expected-Last-Subject-Sequence": "7"}
    assert plain[1:] == ("natspy.reply", None, b"plain")
