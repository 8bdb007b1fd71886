"""Every use of nats-py's private connection state, behind one door.

One use is left, and it buys correctness, not speed: ``drop_pending``. What
waits in the outgoing buffer of a connection that is reconnecting is dropped
before closing it; else nats-py's ``close()`` writes it into the closed socket,
raises there (nats-py 2.16.0: uvloop's ``RuntimeError``, asyncio's
``ConnectionResetError``) and never closes the transport nor ends its
subscriptions. ``tests/test_natspy.py`` fails the day
the attributes it touches change shape or the close stops needing it, and
``pyproject.toml`` caps nats-py at the newest release that test passed on.

A second use is gone: ``send`` put a chunk into nats-py's outgoing buffer as
it was, sparing nats-py's two copies of each payload. Measured with bench/
(interleaved A/B against nats-py's own publish, 21 runs each, 2026-12-07),
it bought under 5% at every size: saves/s -2%, -1%, +6% (within a 33-71/s
spread; +3% and -0% in other runs), +1% at 1 KiB, 100 KiB, 10 MiB and
100 MiB, and 2-6% of the client's CPU. Chunks now go through ``nc.publish``.
"""

from __future__ import annotations

from nats.aio.client import Client


def drop_pending(nc: Client) -> None:
    """Forget what waits in the outgoing buffer of a connection that is not connected (before closing it)."""
    nc._pending, nc._pending_data_size = [], 0
