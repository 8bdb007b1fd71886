"""NATS connections: one per distinct set of connection settings, made lazily on the loop and shared by
every thread, async view and management command of the process (``loop.py`` runs them).

When NATS cannot be reached, one caller waits ``connect_timeout`` to find out;
then the connection is in an outage: every call on the same settings fails at
once with that caller's ``NatsUnavailable`` while one background attempt every
``connect_backoff`` seconds (nats-py's own reconnect loop, for a connection
that was up) brings it back. A page that touches fifty files answers in about
one ``connect_timeout``, not fifty.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import os
import ssl
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field, fields

import nats
from nats.aio.client import Client

from natsstorage import background, loop, natspy
from natsstorage.exceptions import NatsUnavailable
from natsstorage.redaction import redact_url

logger = logging.getLogger("natsstorage")

# Once connected, keep reconnecting for as long as the process lives: a server
# restart must not need a Django restart. Operations during an outage fail by
# their own timeouts.
RECONNECT_FOREVER = -1
RECONNECT_WAIT = 0.5  # seconds between reconnect attempts to one server
CLOSE_TIMEOUT = 2.0  # seconds to flush and close connections at exit
RECONNECTED_POLL = 0.05  # seconds between looks at a lost connection that a caller waits for


@dataclass(frozen=True)
class ConnectionSettings:
    """What makes two connections different; the key of the connection cache. Its repr shows no secret."""

    servers: tuple[str, ...] = field(repr=False)  # URLs may carry a user and password, or a token
    user: str | None = field(default=None, repr=False)
    password: str | None = field(default=None, repr=False)
    token: str | None = field(default=None, repr=False)
    credentials: str | None = field(default=None, repr=False)
    tls_ca_file: str | None = None
    tls_cert_file: str | None = None
    tls_key_file: str | None = field(default=None, repr=False)
    connect_timeout: float = 2.0
    connect_backoff: float = 1.0  # seconds between background attempts during an outage

    def __repr__(self) -> str:
        shown = [f"{each.name}={getattr(self, each.name)!r}" for each in fields(self) if each.repr]
        return f"ConnectionSettings(servers={self.where!r}, {', '.join(shown)})"

    @property
    def where(self) -> str:
        """The servers, without any user info, for error messages."""
        return ", ".join(redact_url(url) for url in self.servers)

    def tls_context(self) -> ssl.SSLContext | None:
        if not (self.tls_ca_file or self.tls_cert_file):
            return None
        context = ssl.create_default_context(cafile=self.tls_ca_file)
        if self.tls_cert_file:
            context.load_cert_chain(self.tls_cert_file, self.tls_key_file)
        return context


def _one_line(error: BaseException) -> str:
    """An error on one line; nats-py's own texts carry no credentials."""
    return " ".join((str(error) or type(error).__name__).split())


@dataclass
class _SharedConnection:
    """The connection of one set of settings, and whether calls on it fail at once (an outage)."""

    nc: Client | None = None
    outage: str | None = None  # what every call raises at once until the connection is back
    asked: bool = False  # whether a call failed at once since the background attempt before
    retry: asyncio.Task[None] | None = None  # the one background attempt of an outage with no connection
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)  # one caller at a time finds out the hard way

    def usable(self) -> Client | None:
        """The connection, when it is up; ends an outage that nats-py's reconnect loop has ended."""
        if self.nc is not None and self.nc.is_connected:
            self.outage = None
            return self.nc
        if self.outage is not None:
            self.asked = True
            raise NatsUnavailable(self.outage)
        return None


# Only code on the loop touches these.
_shared: dict[ConnectionSettings, _SharedConnection] = {}
# What runs (on the loop) each time a connection loses its server, by connection.
_when_lost: weakref.WeakKeyDictionary[Client, list[Callable[[], None]]] = weakref.WeakKeyDictionary()


def when_lost(nc: Client, callback: Callable[[], None]) -> None:
    """Call ``callback`` on the loop each time ``nc`` loses its server (or is closed)."""
    _when_lost.setdefault(nc, []).append(callback)


async def connection(settings: ConnectionSettings) -> Client:
    """The shared connection for ``settings``; call on the loop."""
    shared = _shared.get(settings) or _shared.setdefault(settings, _SharedConnection())
    if nc := shared.usable():
        return nc
    async with shared.lock:
        if nc := shared.usable():  # another caller connected, or found the outage, meanwhile
            return nc
        if shared.nc is not None and not shared.nc.is_closed:  # lost, and nats-py is reconnecting
            if await _reconnected(shared.nc, settings.connect_timeout):
                return shared.nc
            shared.outage = (
                f"lost the connection to NATS at {settings.where}; "
                f"not back within {settings.connect_timeout:g} s (reconnecting in the background)"
            )
            raise NatsUnavailable(shared.outage)
        try:
            shared.nc = await _connect(settings)
        except NatsUnavailable as error:
            shared.outage, shared.asked = str(error), False
            shared.retry = asyncio.get_running_loop().create_task(_retry_in_background(settings, shared))
            raise
        return shared.nc


async def _retry_in_background(settings: ConnectionSettings, shared: _SharedConnection) -> None:
    """The background attempts of an outage; given up when no call asked during one back-off,
    so that no one keeps knocking on a server nobody uses: the next call tries itself."""
    try:
        while True:
            await asyncio.sleep(settings.connect_backoff)
            asked, shared.asked = shared.asked, False
            try:
                nc = await _connect(settings)
            except NatsUnavailable as error:
                if not (asked or shared.asked):
                    shared.outage = None
                    return
                shared.outage = str(error)
                continue
            shared.nc, shared.outage = nc, None
            logger.info("connected to NATS at %s", settings.where)
            return
    finally:
        shared.retry = None


async def _reconnected(nc: Client, timeout: float) -> bool:
    """Whether nats-py's reconnect loop brings ``nc`` back within ``timeout`` seconds."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not nc.is_connected:
        if nc.is_closed or asyncio.get_running_loop().time() >= deadline:
            return False
        await asyncio.sleep(RECONNECTED_POLL)
    return True


async def _connect(settings: ConnectionSettings) -> Client:
    errors: list[Exception] = []  # why the first attempt failed, for the message if none succeeds
    connected = asyncio.Event()  # a failed attempt's client "disconnects" as it is closed: not worth a warning

    async def on_error(error: Exception) -> None:
        # Every failed (re)connect attempt lands here, twice a second in an outage: keep it quiet.
        # The first failure says most ("Authorization Violation"); later ones are often only EOFs.
        if not errors:
            errors.append(error)
        logger.debug("NATS connection to %s: %s", settings.where, _one_line(error))

    async def on_disconnect() -> None:
        for callback in _when_lost.get(nc, ()):
            callback()
        # nats-py calls this when it closes the connection too (at exit, say): it is closed first then.
        if connected.is_set() and not nc.is_closed:
            logger.warning("lost the connection to NATS at %s; reconnecting", settings.where)

    async def on_reconnect() -> None:
        logger.info("reconnected to NATS at %s", settings.where)

    nc = Client()
    natspy.parse_headers_faster(nc)
    connecting = asyncio.ensure_future(
        nc.connect(
            servers=list(settings.servers),
            name="natsstorage",
            user=settings.user,
            password=settings.password,
            token=settings.token,
            user_credentials=settings.credentials,
            tls=settings.tls_context(),
            connect_timeout=settings.connect_timeout,  # type: ignore[arg-type]
            # A publish that fills nats-py's buffer waits for its flusher, which a lost connection can leave
            # waiting forever (a flush queued behind a write the reconnect cancels): bound it. What did not
            # go out waits in the buffer, and the caller's acknowledgement times out as it should.
            flush_timeout=settings.connect_timeout,
            # Its flusher's queue unbounded: each forced flush, SUB and UNSUB adds to it, and while a server stops
            # reading, a bounded one fills and every later command waits for room, without a timeout.
            flusher_queue_size=0,
            allow_reconnect=True,
            max_reconnect_attempts=RECONNECT_FOREVER,
            reconnect_time_wait=RECONNECT_WAIT,  # type: ignore[arg-type]
            error_cb=on_error,
            disconnected_cb=on_disconnect,
            reconnected_cb=on_reconnect,
        )
    )
    try:
        # nats-py retries the initial connect on its own; bound the whole of it.
        done, _ = await asyncio.wait({connecting}, timeout=settings.connect_timeout)
        if not done:
            raise TimeoutError
        connecting.result()
        connected.set()
    except BaseException as error:  # a failure, or closing down during a background attempt
        await background.cancel_and_wait(connecting)
        await _close_one(nc)
        if not isinstance(error, TimeoutError | OSError | nats.errors.Error):
            raise
        if not errors and not isinstance(error, TimeoutError):
            errors.append(error)
        reason = f": {_one_line(errors[0])}" if errors else ""
        raise NatsUnavailable(
            f"cannot connect to NATS at {settings.where} within {settings.connect_timeout:g} s{reason}"
        ) from None
    return nc


async def _close_one(nc: Client) -> None:
    """Close one connection within CLOSE_TIMEOUT, even one still trying to reconnect."""
    if nc.is_closed:
        return
    if not nc.is_connected:  # what waits for a reconnect: nats-py would write it into the closed socket, and raise
        natspy.drop_pending(nc)
    try:
        await asyncio.wait_for(nc.close(), CLOSE_TIMEOUT)
    except (TimeoutError, OSError, nats.errors.Error) as error:
        logger.debug("natsstorage: closing a NATS connection: %s", _one_line(error))
    except asyncio.CancelledError:
        # nats-py closing while a reconnect attempt is under way waits for that attempt's transport, which the
        # cut-short attempt left cancelled (seen on Python 3.12+). Closed all the same; only our own cancel ends us.
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise
        logger.debug("natsstorage: closing a NATS connection: a reconnect attempt was cut short")


async def close_all() -> None:
    """Close every connection, once the background work sent on them has its answers; end outages."""
    await background.settled()
    every = list(_shared.values())
    _shared.clear()
    retries = [shared.retry for shared in every if shared.retry is not None]
    for retry in retries:
        retry.cancel()
    await asyncio.gather(*retries, return_exceptions=True)
    await asyncio.gather(*(_close_one(shared.nc) for shared in every if shared.nc is not None))


def close_connections() -> None:
    """Close every connection now (tests, code about to fork, and at exit); the next call connects again."""
    if loop.started():
        loop.run(close_all())


def _close_at_exit() -> None:
    if not loop.started():
        return
    try:
        loop.wait(loop.submit(close_all()), 2 * CLOSE_TIMEOUT)
    except Exception as error:  # noqa: BLE001 - best effort at interpreter exit
        logger.debug("natsstorage: closing NATS connections at exit: %s", _one_line(error))


os.register_at_fork(after_in_child=_shared.clear)  # the parent's connections belong to the parent's loop
atexit.register(_close_at_exit)  # runs before loop.py's, registered earlier: connections close, then the loop stops
