"""An ASGI application whose large request bodies reach the view as they arrive, as under WSGI.

Django's ``ASGIHandler`` awaits the whole body into a ``SpooledTemporaryFile`` (memory, then a file on disk)
before any view or upload handler runs: a 1 GiB upload is written to disk once more before
``NatsUploadHandler`` or a direct-upload link can stream it into the bucket. ``StreamingASGIHandler`` hands
such a request to the view at once, with a body that pulls the server's ``http.request`` messages as the
view's thread reads it: one message ahead at most, the server's flow control holding back the rest.

Which requests stream: a body Django would have spooled to disk (``Content-Length`` absent or over
``FILE_UPLOAD_MAX_MEMORY_SIZE``) for a sync view. Smaller bodies cost the same memory either way and keep
Django's behaviour exactly; an async view reads its body in the event loop's thread, where waiting for the
next message would block the loop, so it gets Django's spooled body.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import TimeoutError as FutureTimeout
from typing import IO, Any

import django
from asgiref.sync import iscoroutinefunction
from django.conf import settings
from django.core.exceptions import SynchronousOnlyOperation
from django.core.handlers.asgi import ASGIHandler, get_script_prefix
from django.http import UnreadablePostError
from django.urls import Resolver404, resolve

Message = Mapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

__all__ = ["StreamingASGIHandler", "StreamingBody", "get_asgi_application"]


class StreamingBody:
    """A request body read from the ASGI server as the view asks for it: the one reader of ``receive``.

    The view's thread reads it (``read``, ``readline``: what ``HttpRequest`` and the multipart parser call);
    each missing message is awaited on the server's event loop. Called, it is the ``receive`` the handler's
    disconnect listener awaits: that waits until the body is over, so that no body message goes astray.
    A disconnect before the body's end is an ``UnreadablePostError`` to the reader, what Django raises for a
    cut connection under WSGI; the listener is not told, so that the view's response, sent nowhere, still
    closes the request (which purges what ``NatsUploadHandler`` staged). A disconnect after the body is the
    listener's, as with Django's handler: the request is aborted.
    """

    def __init__(self, receive: Receive, *, timeout: float) -> None:
        self._receive = receive
        self._timeout = timeout  # seconds to wait for each message of the body, as a WSGI socket's timeout
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._buffer = b""  # what is left of the last message: at most one message is held
        self._more = True  # the server has more of the body to give
        self._cut: str | None = None  # why the body stopped before its end
        self._over = asyncio.Event()  # the body was read to its end, or cut off

    def read(self, size: int | None = -1) -> bytes:
        return self._take(size, line=False)

    def readline(self, size: int | None = -1) -> bytes:
        return self._take(size, line=True)

    def _take(self, size: int | None, *, line: bool) -> bytes:
        """Up to ``size`` bytes (all: None or negative), and with ``line`` no further than a newline."""
        wanted = None if size is None or size < 0 else size
        parts: list[bytes] = []
        got = 0
        while wanted is None or got < wanted:
            if not self._buffer and not self._fill():
                break
            end = (self._buffer.find(b"\n") + 1 or len(self._buffer)) if line else len(self._buffer)
            take = end if wanted is None else min(end, wanted - got)
            parts.append(self._buffer[:take])
            self._buffer = self._buffer[take:]
            got += take
            if line and parts[-1].endswith(b"\n"):
                break
        return b"".join(parts)

    def close(self) -> None:
        self._buffer = b""

    async def __call__(self) -> Message:
        await self._over.wait()
        if self._cut is not None:  # the reader was told: the view ends the request as under WSGI, and closes it
            await asyncio.get_running_loop().create_future()
        return await self._receive()

    def _fill(self) -> bool:
        """Wait for the body's next bytes; False at its end."""
        while self._more and not self._buffer:
            if self._cut is not None:
                raise UnreadablePostError(self._cut)
            if threading.get_ident() == self._loop_thread:
                raise SynchronousOnlyOperation(
                    "This request's body streams from the ASGI server: read it from a sync view or "
                    "middleware, or with sync_to_async(), not in the event loop's thread."
                )
            future = asyncio.run_coroutine_threadsafe(self._next(), self._loop)
            try:
                future.result(self._timeout)
            except FutureTimeout:
                future.cancel()
                self._cut = f"no request body received for {self._timeout:g} s"
                raise UnreadablePostError(self._cut) from None
        if self._cut is not None and not self._buffer:
            raise UnreadablePostError(self._cut)
        return bool(self._buffer)

    async def _next(self) -> None:
        """(On the server's loop.) The next message of the body, into the buffer."""
        message = await self._receive()
        if message["type"] == "http.disconnect":
            self._cut = "the client disconnected before the end of the request body"
            self._more = False
        else:
            self._buffer = bytes(message.get("body", b""))
            self._more = bool(message.get("more_body", False))
        if not self._more:
            self._over.set()


class StreamingASGIHandler(ASGIHandler):
    """Django's ``ASGIHandler``, but a sync view reads a large request body as it arrives (module docstring)."""

    async def handle(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if self.streams(scope):
            body = StreamingBody(receive, timeout=self.request_class.body_receive_timeout)
            await super().handle(scope, body, send)
        else:
            await super().handle(scope, receive, send)

    async def read_body(self, receive: Receive) -> IO[bytes]:
        if isinstance(receive, StreamingBody):
            return receive  # type: ignore[return-value]  # file-like enough: what HttpRequest reads
        return await super().read_body(receive)

    def streams(self, scope: dict[str, Any]) -> bool:
        """Whether this request's body should reach its view as it arrives."""
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        if length is None:
            if headers.get(b"transfer-encoding", b"").lower() != b"chunked":
                return False  # no body
        elif not length.isdigit() or int(length) <= settings.FILE_UPLOAD_MAX_MEMORY_SIZE:
            return False  # Django keeps it in memory: the same memory either way
        path = scope["path"]
        prefix = get_script_prefix(scope).rstrip("/")
        if prefix and path.startswith(prefix + "/"):
            path = path[len(prefix) :]
        try:
            view = resolve(path).func
        except Resolver404:
            return True  # nothing reads the body of a 404
        except Exception:  # a broken URLconf: Django's own path reports it
            return False
        return not iscoroutinefunction(view)


def get_asgi_application() -> StreamingASGIHandler:
    """Django's ``get_asgi_application()`` with ``StreamingASGIHandler``: the public entry point, in asgi.py."""
    django.setup(set_prefix=False)
    return StreamingASGIHandler()
