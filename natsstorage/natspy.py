"""Every use of nats-py's private connection state, behind one door.

nats-py's ``Client`` keeps its outgoing buffer in private attributes. Two
things here reach into them; each says what it buys, and
``tests/test_natspy.py`` fails the day their shape changes (``pyproject.toml``
caps nats-py at the newest release that test passed on):

- ``send``: a publish whose payload joins the outgoing buffer as it is,
  instead of nats-py's two copies of it. XXXMEASURE
- ``drop_pending``: what waits in the buffer of a connection that is
  reconnecting is dropped before closing it, or nats-py's ``close()`` writes
  it into the closed socket and raises. Correctness, not speed.

Everything else goes through nats-py's public API.
"""

from __future__ import annotations

from collections.abc import Mapping

from nats.aio.client import Client
from nats.aio.transport import TcpTransport

CRLF = b"\r\n"
HEADER_LINE = "NATS/1.0\r\n"  # what a message's headers start with


def header_block(headers: Mapping[str, str] | None) -> bytes:
    """A message's headers as NATS sends them (what nats-py's publish writes), or nothing."""
    if not headers:
        return b""
    return "".join([HEADER_LINE, *(f"{key}: {value}\r\n" for key, value in headers.items()), "\r\n"]).encode()


def message_size(payload: bytes | memoryview, headers: Mapping[str, str] | None) -> int:
    """What a message weighs against nats-server's ``max_payload``: its headers and its payload."""
    return len(header_block(headers)) + memoryview(payload).nbytes


async def send(
    nc: Client, subject: str, payload: bytes | memoryview, reply: str, headers: Mapping[str, str] | None = None
) -> None:
    """``nc.publish(subject, payload, reply=reply, headers=headers)``, without nats-py's two copies of the payload.

    nats-py makes each message one new bytes object (its protocol line, headers and payload, then plus CRLF):
    a 512 KiB chunk is copied twice into fresh memory. Here the payload itself joins nats-py's outgoing
    buffer (``_pending``, a list of bytes since nats-py 2.0) between its protocol line and CRLF, in one
    step (so a cancelled caller never leaves half a message), and the transport writes it from there. Only
    while connected over TCP; otherwise nats-py's own publish (which buffers or refuses while reconnecting).
    """
    if isinstance(payload, memoryview) and not (
        isinstance(payload.obj, bytes) and payload.c_contiguous and payload.itemsize == 1
    ):
        payload = payload.tobytes()  # written after this returns: never from a buffer its owner may reuse
    pending = getattr(nc, "_pending", None)
    over_tcp = isinstance(getattr(nc, "_transport", None), TcpTransport)  # TLS included; not websockets
    if type(pending) is not list or not over_tcp or not nc.is_connected or len(payload) > nc.max_payload:
        await nc.publish(subject, payload, reply=reply, headers=headers)  # type: ignore[arg-type]
        return
    if headers:
        head = header_block(headers)
        line = f"HPUB {subject} {reply} {len(head)} {len(head) + len(payload)}\r\n".encode() + head
    else:
        line = f"PUB {subject} {reply} {len(payload)}\r\n".encode()
    pending.extend((line, payload, CRLF))
    nc._pending_data_size += len(line) + len(payload) + len(CRLF)
    nc.stats["out_msgs"] += 1
    nc.stats["out_bytes"] += len(payload)
    # What nats-py's publish does next: flush at once when its buffer is over its limit, else kick its flusher.
    if 0 < nc._max_pending_size < nc._pending_data_size:
        await nc._flush_pending(force_flush=True)
    if nc._flush_queue is not None and nc._flush_queue.empty():
        await nc._flush_pending()


def drop_pending(nc: Client) -> None:
    """Forget what waits in the outgoing buffer of a connection that is not connected (before closing it)."""
    nc._pending, nc._pending_data_size = [], 0
