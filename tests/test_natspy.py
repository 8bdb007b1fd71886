"""natspy.py reaches into nats-py's private connection state; these tests fail the day its shape changes.

Run on every nats-py that pyproject.toml allows (its upper bound is the newest release they passed on), against
a real connection to a real nats-server: what natspy.py reads and writes is what nats-py itself uses, of the
types it expects, and a message it queues is byte for byte the one nats-py's own publish would queue.
"""

from __future__ import annotations

import asyncio
import inspect

import pytest
from nats.aio.client import Client
from nats.aio.transport import TcpTransport

from natsstorage import connections, loop, natspy
from natsstorage.connections import ConnectionSettings

HEADERS = {"Nats-Msg-Id": "abc", "Nats-Expected-Last-Msg-Id": "xyz"}


def on_a_connection(server, work):
    """``work(nc)`` on the loop, with natsstorage's own connection to ``server``."""

    async def go():
        return await work(await connections.connection(ConnectionSettings(servers=(server.url,))))

    return loop.run(go())


def test_the_private_state_natspy_uses_has_the_shape_it_expects(nats_server):
    async def shapes(nc: Client) -> None:
        assert type(nc._pending) is list
        assert all(isinstance(item, bytes | memoryview) for item in nc._pending)  # (memoryviews: natspy.send)
        assert type(nc._pending_data_size) is int
        assert type(nc._max_pending_size) is int and nc._max_pending_size > 0
        assert inspect.iscoroutinefunction(nc._flush_pending)
        force_flush = inspect.signature(nc._flush_pending).parameters["force_flush"]
        assert force_flush.default is False
        assert type(nc._flush_queue) is asyncio.Queue
        assert isinstance(nc._transport, TcpTransport)
        assert type(nc.stats["out_msgs"]) is int and type(nc.stats["out_bytes"]) is int
        assert type(nc.max_payload) is int and nc.is_connected

    on_a_connection(nats_server, shapes)


@pytest.mark.parametrize("headers", [None, HEADERS], ids=["PUB", "HPUB"])
@pytest.mark.parametrize("size", [0, 1, 512 * 1024])
def test_send_queues_what_nats_py_publish_queues_and_counts_it_the_same(nats_server, headers, size):
    payload = bytes(range(256)) * (size // 256) + b"x" * (size % 256)

    async def both(nc: Client) -> tuple[bytes, int, dict[str, int], bytes, int, dict[str, int]]:
        # No await in here yields to the loop (nats-py's flusher queue is unbounded): nothing is written meanwhile.
        def state() -> tuple[int, int, dict[str, int]]:
            return len(nc._pending), nc._pending_data_size, dict(nc.stats)

        start, size_before, stats_before = state()
        await nc.publish("natspy.test", payload, reply="natspy.reply", headers=headers)
        middle, size_middle, stats_middle = state()
        await natspy.send(nc, "natspy.test", memoryview(payload), "natspy.reply", headers)
        end, size_end, stats_end = state()
        theirs, ours = b"".join(nc._pending[start:middle]), b"".join(nc._pending[middle:end])

        def counted(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
            return {key: after[key] - before[key] for key in ("out_msgs", "out_bytes")}

        return (
            theirs,
            size_middle - size_before,
            counted(stats_before, stats_middle),
            ours,
            size_end - size_middle,
            counted(stats_middle, stats_end),
        )

    theirs, their_size, their_stats, ours, our_size, our_stats = on_a_connection(nats_server, both)
    assert ours == theirs
    assert our_size == their_size == len(theirs)
    assert our_stats == their_stats == {"out_msgs": 1, "out_bytes": size}
    assert natspy.message_size(payload, headers) == len(natspy.header_block(headers)) + size


def test_what_send_queues_reaches_a_subscriber_also_past_nats_py_buffer_limit(nats_server):
    async def round_trip(nc: Client) -> list[tuple[bytes, dict[str, str] | None]]:
        sub = await nc.subscribe("natspy.round")
        await nc.flush()
        big = b"b" * nc.max_payload
        many = nc._max_pending_size // len(big) + 2  # past nats-py's buffer limit: send waits for a forced flush
        try:
            await natspy.send(nc, "natspy.round", b"small", "natspy.reply", HEADERS)
            for _ in range(many):
                await natspy.send(nc, "natspy.round", big, "natspy.reply")
            return [(msg.data, msg.headers) for msg in [await sub.next_msg(timeout=5) for _ in range(1 + many)]]
        finally:
            await sub.unsubscribe()

    got = on_a_connection(nats_server, round_trip)
    assert got[0] == (b"small", HEADERS)
    assert all(data == b"b" * len(data) and len(data) > 0 and headers is None for data, headers in got[1:])
