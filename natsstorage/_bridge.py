"""The one place that runs asyncio.

nats-py is asyncio and Django's Storage API is synchronous. A connection is
bound to the event loop that made it, so a fresh loop per call (what a naive
``async_to_sync`` does outside a loop) could never reuse one. Instead one
loop per process owns every NATS connection, one per distinct set of
connection settings, made lazily and shared by all threads, async views and
management commands.

A daemon thread runs that loop, except while a caller's own thread does: a
call finding the loop free runs it itself until its work is done, and keeps
it for ``HAND_BACK_AFTER`` between calls. Handing work to another thread and
back costs two thread wake-ups, about a third of a small object's save on a
two-core machine. When several threads call at once, the loop thread serves
them all, batched. The main thread, where Python runs signal handlers, runs
the loop with those handlers deferred (``_Deferred``): a
KeyboardInterrupt raised inside nats-py's reader task would break the
connection, and an exception a handler raises inside one of uvloop's own
callbacks would only be logged.

When NATS cannot be reached, one caller waits ``connect_timeout`` to find out;
then the connection is in an outage: every call on the same settings fails at
once with that caller's ``NatsUnavailable`` while one background attempt every
``connect_backoff`` seconds (nats-py's own reconnect loop, for a connection
that was up) brings it back. A page that touches fifty files answers in about
one ``connect_timeout``, not fifty.
"""

from __future__ import annotations

import _signal  # type: ignore[import-not-found]  # signal's C layer: signal.getsignal() costs 20 µs a scan
import asyncio
import atexit
import concurrent.futures
import contextlib
import logging
import os
import signal
import ssl
import threading
import time
import weakref
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from types import FrameType
from typing import Any, TypeVar

import nats
from nats.aio.client import Client

from natsstorage.exceptions import NatsUnavailable

T = TypeVar("T")
logger = logging.getLogger("natsstorage")

# Once connected, keep reconnecting for as long as the process lives: a server
# restart must not need a Django restart. Operations during an outage fail by
# their own timeouts.
RECONNECT_FOREVER = -1
RECONNECT_WAIT = 0.5  # seconds between reconnect attempts to one server
CLOSE_TIMEOUT = 2.0  # seconds to flush and close connections at exit
RECONNECTED_POLL = 0.05  # seconds between looks at a lost connection that a caller waits for
# A signal that arrives just before a thread goes to sleep on a lock does not wake it: waits
# are sliced so that Ctrl-C is handled within this many seconds whatever the timing.
SIGNAL_CHECK_INTERVAL = 0.25
# Seconds a caller's thread that ran the loop leaves it unrun before the loop thread takes it back (to read
# what arrives unasked: watched changes, pings, background purges' answers). The loop thread looks this often.
HAND_BACK_AFTER = 0.005
# Signals raised by a fault in the thread itself; every other one belongs to the main thread.
FAULT_SIGNALS = {
    getattr(signal, name) for name in ("SIGSEGV", "SIGBUS", "SIGFPE", "SIGILL", "SIGABRT") if hasattr(signal, name)
}
SIGNALS: tuple[int, ...] = tuple(sorted(signal.valid_signals()))

Handler = Callable[[int, FrameType | None], Any]


@dataclass(frozen=True)
class ConnectionSettings:
    """What makes two connections different; the key of the connection cache."""

    servers: tuple[str, ...]
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    token: str | None = field(default=None, repr=False)
    credentials: str | None = None
    tls_ca_file: str | None = None
    tls_cert_file: str | None = None
    tls_key_file: str | None = None
    connect_timeout: float = 2.0
    connect_backoff: float = 1.0  # seconds between background attempts during an outage

    @property
    def where(self) -> str:
        """The servers, without any user info, for error messages."""
        return ", ".join(_redact(url) for url in self.servers)

    def tls_context(self) -> ssl.SSLContext | None:
        if not (self.tls_ca_file or self.tls_cert_file):
            return None
        context = ssl.create_default_context(cafile=self.tls_ca_file)
        if self.tls_cert_file:
            context.load_cert_chain(self.tls_cert_file, self.tls_key_file)
        return context


def _describe(error: Exception) -> str:
    """An error on one line; nats-py's own texts carry no credentials."""
    return " ".join((str(error) or type(error).__name__).split())


def _redact(url: str) -> str:
    scheme, sep, rest = url.rpartition("://")
    host = rest.rsplit("@", 1)[-1]
    return f"{scheme}{sep}{host}"


def new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop where it is built: it wakes across threads and moves bytes much faster than asyncio's loop."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is not built for every platform
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


@dataclass
class _Link:
    """One set of connection settings: its connection, and whether calls on it fail at once (an outage)."""

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


class _Runtime:
    """The loop, the thread that runs it when no caller's thread does, and the connections it owns."""

    def __init__(self) -> None:
        self.loop = new_event_loop()
        try:
            self.links: dict[ConnectionSettings, _Link] = {}
            self.thread = threading.Thread(target=self._serve, name="natsstorage", daemon=True)
            # Who runs the loop is decided under this condition; the loop thread waits on it for its turn.
            self.turns = threading.Condition()
            self.driver: threading.Thread | None = None  # the thread running the loop now
            self.handed = 0  # work handed to the loop by callers that do not run it, so the loop thread must
            self.takers = 0  # callers' threads waiting for the loop thread to let go of the loop
            self.calling = 0  # calls under way from threads that may run the loop
            self.let_go = 0.0  # when a caller's thread last stopped running the loop (time.monotonic())
            self.handing_over = False  # whether the loop thread's run was asked to end
            self.closing = False
            self.deferred: _Deferred | None = None  # the main thread's signal handlers, while it is in a call
            self.thread.start()
        except BaseException:  # Ctrl-C while the runtime was being made: no open loop left for a collection to log
            thread = getattr(self, "thread", None)  # (not made yet, when the signal came before it)
            if thread is None or not thread.is_alive():
                self.loop.close()
            raise

    def _serve(self) -> None:
        # Linux hands a signal sent to the process to any thread not blocking it. Python runs
        # handlers only in the main thread, which, asleep in wait(), would not wake for one caught
        # here. Threads started from here (libuv's, an executor's) inherit the mask; those a worker
        # thread's run starts do not, and a signal one of them catches reaches the main thread within
        # a wait slice (SIGNAL_CHECK_INTERVAL), as one caught by any thread of the project's would.
        if hasattr(signal, "pthread_sigmask"):
            signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals() - FAULT_SIGNALS)
        while True:
            with self.turns:
                while not self._loop_threads_turn():
                    if self.closing:
                        return
                    self.turns.wait(HAND_BACK_AFTER)
                self.driver, self.handing_over = self.thread, False
            try:
                self.loop.run_forever()
            except BaseException:  # a task's SystemExit, say: the loop must go on for everyone else
                logger.exception("natsstorage: the NATS loop stopped on an error; running it again")
            finally:
                with self.turns:
                    self.driver = None
                    self.let_go = time.monotonic()  # it let go because a caller asked (or at exit)
                    self.turns.notify_all()

    def _loop_threads_turn(self) -> bool:
        """Whether the loop thread should run the loop now; call holding ``turns``."""
        if self.driver is not None or self.takers or self.closing:
            return False
        return self.handed > 0 or time.monotonic() - self.let_go >= HAND_BACK_AFTER

    def _hand_over(self) -> None:
        """End the loop thread's run, so that a caller's thread may run the loop (called on the loop).

        Once per run: uvloop's stop() is itself a callback, and a second one would end the next run early.
        """
        if self.driver is self.thread and not self.handing_over:
            self.handing_over = True
            self.loop.stop()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """``coro``'s result, running the loop in this thread when that is allowed and the loop is free."""
        me = threading.current_thread()
        if _loop_running_here():
            return wait(self._submit(coro))
        if me is not threading.main_thread() or self.deferred is not None:  # (a call from a deferred handler)
            return self._call(me, coro)
        # Plain try/finally, no generator-based context managers on the way out: contextlib's keeps the exception
        # it passes on in a frame of that exception's traceback, a cycle that a later collection frees at any
        # point of the program, and the call's task with it (a signal's handler raising in the task's weakref
        # callback there would only be logged).
        self.deferred = deferred = _Deferred(me.ident)
        try:
            deferred.install()
            try:
                return self._call(me, coro)
            finally:
                self.deferred = None  # before the program's handlers are back: one may call again
        finally:
            self.deferred = None  # (a handler raised before they were swapped)
            deferred.put_back()
            deferred.run_caught()

    def _call(self, me: threading.Thread, coro: Coroutine[Any, Any, T]) -> T:
        with self.turns:
            self.calling += 1
            # Only a thread calling alone runs the loop: when several call at once, the loop thread serves
            # them all, batched, rather than the loop going from thread to thread.
            alone = self.calling == 1 and not self.handed and not self.closing
            free = alone and self.driver is None
            if free:
                self.driver = me
            # The loop thread took the loop back while this thread was away: ask for it (and keep the
            # loop thread from taking it again once it let go).
            ask = alone and self.driver is self.thread
            if ask:
                self.takers += 1
        try:
            if free:
                return self._drive(coro)
            if ask:
                return self._take_over(me, coro)
            return wait(self._submit(coro))
        finally:
            with self.turns:
                self.calling -= 1

    def _take_over(self, me: threading.Thread, coro: Coroutine[Any, Any, T]) -> T:
        """Ask the loop thread to let go of the loop, then run it here until ``coro`` is done (or return its
        result, when the loop thread finished it first). ``run()`` counted this thread among the takers."""
        future = self._submit(coro, handed=False)
        try:
            future.add_done_callback(self._notify)
            self.loop.call_soon_threadsafe(self._hand_over)
            # Not a place for the main thread's handlers: one calling the storage would wait for the loop thread,
            # which leaves the loop alone while a thread waits to take it over. They run once this is over.
            with self.turns:
                while self.driver is not None and not future.done():
                    self.turns.wait(SIGNAL_CHECK_INTERVAL)
                mine = not future.done()
                if mine:
                    self.driver = me
        except BaseException:  # Ctrl-C in the main thread, say
            future.cancel()
            raise
        finally:
            with self.turns:
                self.takers -= 1
        if not mine:
            return future.result()
        return self._drive(asyncio.wrap_future(future, loop=self.loop))

    def _drive(self, work: Coroutine[Any, Any, T] | asyncio.Future[T]) -> T:
        """Run the loop in the calling thread until ``work`` is done; the caller made it the driver.

        In the main thread, a signal stops the loop early: the loop thread carries on with the work while
        the signal's handler runs here (and cancels the work if it raises, as in ``wait()``)."""
        deferred = _deferred_here()  # (not a worker thread's while the main thread starts a call)
        try:
            if isinstance(work, Coroutine):
                coro, work = work, self.loop.create_task(_caught_up(work))
                # Cancelled before it started, the wrapper never starts ``coro``: closed, it warns of nothing.
                work.add_done_callback(lambda _: coro.close())
            if deferred is None:
                return self.loop.run_until_complete(work)
            deferred.run_loop_until_done(self.loop, work)
            if work.done():
                return work.result()
            rest = self._submit(_awaited(work))
        finally:
            with self.turns:
                self.driver = None
                self.let_go = time.monotonic()
                if self.handed or self.takers:  # others wait for the loop to be run
                    self.turns.notify_all()
        return wait(rest)

    def _submit(self, coro: Coroutine[Any, Any, T], *, handed: bool = True) -> concurrent.futures.Future[T]:
        """Start ``coro`` on the loop; ``handed``: its caller does not run the loop, so the loop thread must."""
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        if handed:
            with self.turns:
                self.handed += 1
                if self.driver is None:
                    self.turns.notify_all()
            future.add_done_callback(self._served)
        return future

    def _served(self, _: concurrent.futures.Future[Any]) -> None:
        with self.turns:
            self.handed -= 1

    def _notify(self, _: concurrent.futures.Future[Any]) -> None:
        with self.turns:
            self.turns.notify_all()

    async def connection(self, settings: ConnectionSettings) -> Client:
        link = self.links.get(settings) or self.links.setdefault(settings, _Link())
        if nc := link.usable():
            return nc
        async with link.lock:
            if nc := link.usable():  # another caller connected, or found the outage, meanwhile
                return nc
            if link.nc is not None and not link.nc.is_closed:  # lost, and nats-py is reconnecting
                if await _reconnected(link.nc, settings.connect_timeout):
                    return link.nc
                link.outage = (
                    f"lost the connection to NATS at {settings.where}; "
                    f"not back within {settings.connect_timeout:g} s (reconnecting in the background)"
                )
                raise NatsUnavailable(link.outage)
            try:
                link.nc = await _connect(settings)
            except NatsUnavailable as error:
                link.outage, link.asked = str(error), False
                link.retry = asyncio.get_running_loop().create_task(self._retry(settings, link))
                raise
            return link.nc

    async def _retry(self, settings: ConnectionSettings, link: _Link) -> None:
        """The background attempts of an outage; given up when no call asked during one back-off,
        so that no one keeps knocking on a server nobody uses: the next call tries itself."""
        try:
            while True:
                await asyncio.sleep(settings.connect_backoff)
                asked, link.asked = link.asked, False
                try:
                    nc = await _connect(settings)
                except NatsUnavailable as error:
                    if not (asked or link.asked):
                        link.outage = None
                        return
                    link.outage = str(error)
                    continue
                link.nc, link.outage = nc, None
                logger.info("connected to NATS at %s", settings.where)
                return
        finally:
            link.retry = None

    async def close(self) -> None:
        """Close every connection, once the background work sent on them has its answers; end outages."""
        if pending := _under_way():
            await asyncio.wait(pending, timeout=CLOSE_TIMEOUT)
        links, self.links = list(self.links.values()), {}
        retries = [link.retry for link in links if link.retry is not None]
        for retry in retries:
            retry.cancel()
        await asyncio.gather(*retries, return_exceptions=True)
        await asyncio.gather(*(_close(link.nc) for link in links if link.nc is not None))

    async def _finish(self) -> None:
        """Close the connections, then end whatever tasks nats-py still runs (reconnect loops)."""
        await self.close()
        tasks = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=CLOSE_TIMEOUT)

    def shutdown(self) -> None:
        if self.loop.is_closed():
            return
        try:
            self._submit(self._finish()).result(2 * CLOSE_TIMEOUT)
        except Exception as error:  # noqa: BLE001 - best effort at interpreter exit
            logger.debug("natsstorage: closing NATS connections at exit: %s", _describe(error))
        with self.turns:
            self.closing = True
            self.turns.notify_all()
        self.loop.call_soon_threadsafe(self._hand_over)
        self.thread.join(CLOSE_TIMEOUT)
        with self.turns:  # a daemon thread of the program's may still be running a call: never close under it
            self.turns.wait_for(lambda: self.driver is None, CLOSE_TIMEOUT)
            if self.driver is None and not self.thread.is_alive():
                self.loop.close()


class _Deferred:
    """The main thread's Python signal handlers while it is in a call: run at once where the call waits
    (raising there cancels the work, as it always did), and elsewhere noted and run once the call can take
    it. A handler raising in the bridge's own bookkeeping would leave it broken, in nats-py's reader task
    would lose the connection, and in one of uvloop's callbacks would only be logged."""

    def __init__(self, thread: int | None) -> None:
        self.thread = thread
        self.handlers: dict[int, Handler] = {}  # the program's, by signal, swapped out
        self.caught: list[tuple[int, FrameType | None]] = []
        self.safe = False  # whether the main thread is where a handler may raise: waiting
        self.stop: Callable[[], None] | None = None  # ends the loop's run, while the main thread runs it

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        if self.safe:
            self.handlers[signum](signum, frame)
            return
        self.caught.append((signum, frame))
        if self.stop is not None:
            self.stop()

    def run_caught(self) -> None:
        """Each noted signal's handler, once; the first exception one raised is raised after all have run
        (Python too runs every signal that arrived, not only those before a handler that raised)."""
        raised: BaseException | None = None
        while self.caught:
            signum, frame = self.caught.pop(0)
            try:
                self.handlers[signum](signum, frame)
            except BaseException as error:
                raised = raised or error
        if raised is not None:
            try:
                raise raised
            finally:
                raised = None  # no cycle: see put_back

    def install(self) -> None:
        """Every Python handler swapped for this one (the default action, and ignoring, stay: they run no
        Python); ``put_back`` puts them back, also after a handler that raised half-way through this."""
        for signum in SIGNALS:
            handler = _signal.getsignal(signum)
            if isinstance(handler, _Deferred):  # left behind by a call cut short: the program's is under it
                handler = handler.handlers.get(signum, handler)
            if callable(handler):
                self.handlers[signum] = handler
                _signal.signal(signum, self)

    def put_back(self) -> None:
        """The program's handlers back; one put back early that raises (its signal arriving meanwhile) is
        raised once all are back, not left to leave the rest as this one."""
        raised: BaseException | None = None
        while True:
            try:
                for signum, handler in self.handlers.items():
                    if _signal.getsignal(signum) is self:  # not changed meanwhile
                        _signal.signal(signum, handler)
                break
            except BaseException as error:
                raised = error
        if raised is not None:
            try:
                raise raised
            finally:
                # No cycle (it, its traceback, this frame) for a later collection to free at any point of the
                # program, and the call's task with it: a signal's handler raising there would only be logged.
                raised = None

    def run_here(self) -> _RunHere:
        """Where the main thread waits: what was caught runs first, then handlers run as signals arrive."""
        return _RunHere(self)

    def run_loop_until_done(self, loop: asyncio.AbstractEventLoop, task: asyncio.Future[Any]) -> None:
        """Run ``loop`` until ``task`` is done or a signal was caught."""
        stopped = False

        def stop(_: object = None) -> None:
            nonlocal stopped
            if not stopped:  # once: uvloop's stop() is a callback, and a second would end the next run early
                stopped = True
                loop.stop()

        if self.caught:
            return
        task.add_done_callback(stop)
        self.stop = stop
        try:
            loop.run_forever()
        except BaseException:  # raised inside the loop (a callback's SystemExit, say)
            stopped = True
            task.cancel()  # the loop thread finishes it
            raise
        finally:
            self.stop = None


class _RunHere:
    """``_Deferred.run_here``; a class, not a generator (see ``_Runtime.run``)."""

    def __init__(self, deferred: _Deferred) -> None:
        self.deferred = deferred

    def __enter__(self) -> None:
        self.deferred.safe = True
        try:
            self.deferred.run_caught()
        except BaseException:
            self.deferred.safe = False
            raise

    def __exit__(self, *exc_info: object) -> None:
        self.deferred.safe = False


def _deferred_here() -> _Deferred | None:
    """The main thread's deferred handlers, when the caller is the main thread's call under way."""
    deferred = _runtime.deferred if _runtime is not None else None
    return deferred if deferred is not None and deferred.thread == threading.get_ident() else None


def _handlers_run_here() -> contextlib.AbstractContextManager[None]:
    """``_Deferred.run_here`` of the main thread's call under way, when the caller is that call."""
    deferred = _deferred_here()
    return contextlib.nullcontext() if deferred is None else deferred.run_here()


async def _awaited(task: asyncio.Future[T]) -> T:
    return await task


async def _close(nc: Client) -> None:
    """Close one connection within CLOSE_TIMEOUT, even one still trying to reconnect."""
    if nc.is_closed:
        return
    if not nc.is_connected:  # what waits for a reconnect: nats-py would write it into the closed socket, and raise
        nc._pending, nc._pending_data_size = [], 0
    try:
        await asyncio.wait_for(nc.close(), CLOSE_TIMEOUT)
    except (TimeoutError, OSError, nats.errors.Error) as error:
        logger.debug("natsstorage: closing a NATS connection: %s", _describe(error))
    except asyncio.CancelledError:
        # nats-py closing while a reconnect attempt is under way waits for that attempt's transport, which the
        # cut-short attempt left cancelled (seen on Python 3.12+). Closed all the same; only our own cancel ends us.
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise
        logger.debug("natsstorage: closing a NATS connection: a reconnect attempt was cut short")


async def _caught_up(coro: Coroutine[Any, Any, T]) -> T:
    """``coro``, once the loop has read what arrived while no thread ran it: a connection the server
    closed meanwhile is then known lost (nats-py's reader marks it), not used for a request that would
    wait its whole timeout for an answer."""
    await asyncio.sleep(0)  # what arrived is read...
    await asyncio.sleep(0)  # ...and the tasks waiting for it have run
    return await coro


async def _reconnected(nc: Client, timeout: float) -> bool:
    """Whether nats-py's reconnect loop brings ``nc`` back within ``timeout`` seconds."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not nc.is_connected:
        if nc.is_closed or asyncio.get_running_loop().time() >= deadline:
            return False
        await asyncio.sleep(RECONNECTED_POLL)
    return True


async def stop_task(task: asyncio.Future[Any]) -> None:
    """Cancel ``task`` and wait, within CLOSE_TIMEOUT, for it to end. nats-py swallows a cancellation that
    lands while it closes a failed connect attempt (which would retry for ever) or waits for its flusher:
    cancel again."""
    deadline = asyncio.get_running_loop().time() + CLOSE_TIMEOUT
    while not task.done() and asyncio.get_running_loop().time() < deadline:
        task.cancel()
        await asyncio.wait({task}, timeout=RECONNECTED_POLL)
    if task.done() and not task.cancelled():
        task.exception()  # retrieved: no "exception was never retrieved" at exit


async def _connect(settings: ConnectionSettings) -> Client:
    errors: list[Exception] = []  # why the first attempt failed, for the message if none succeeds
    connected = asyncio.Event()  # a failed attempt's client "disconnects" as it is closed: not worth a warning

    async def on_error(error: Exception) -> None:
        # Every failed (re)connect attempt lands here, twice a second in an outage: keep it quiet.
        # The first failure says most ("Authorization Violation"); later ones are often only EOFs.
        if not errors:
            errors.append(error)
        logger.debug("NATS connection to %s: %s", settings.where, _describe(error))

    async def on_disconnect() -> None:
        for callback in _when_lost.get(nc, ()):
            callback()
        if connected.is_set():
            logger.warning("lost the connection to NATS at %s; reconnecting", settings.where)

    async def on_reconnect() -> None:
        logger.info("reconnected to NATS at %s", settings.where)

    nc = Client()
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
        await stop_task(connecting)
        await _close(nc)
        if not isinstance(error, TimeoutError | OSError | nats.errors.Error):
            raise
        if not errors and not isinstance(error, TimeoutError):
            errors.append(error)
        reason = f": {_describe(errors[0])}" if errors else ""
        raise NatsUnavailable(
            f"cannot connect to NATS at {settings.where} within {settings.connect_timeout:g} s{reason}"
        ) from None
    return nc


# What runs (on the loop) each time a connection loses its server, by connection.
_when_lost: weakref.WeakKeyDictionary[Client, list[Callable[[], None]]] = weakref.WeakKeyDictionary()


def when_lost(nc: Client, callback: Callable[[], None]) -> None:
    """Call ``callback`` on the loop each time ``nc`` loses its server (or is closed)."""
    _when_lost.setdefault(nc, []).append(callback)


_runtime: _Runtime | None = None
_runtime_lock = threading.Lock()


def _get_runtime() -> _Runtime:
    global _runtime
    if _runtime is None:
        with _runtime_lock:
            if _runtime is None:
                _runtime = _Runtime()
    return _runtime


def _forget_runtime() -> None:
    """In a forked child the loop thread does not exist: start afresh."""
    global _runtime, _runtime_lock
    _runtime, _runtime_lock = None, threading.Lock()
    _background.clear()


def _shutdown() -> None:
    if _runtime is not None:
        _runtime.shutdown()


os.register_at_fork(after_in_child=_forget_runtime)
atexit.register(_shutdown)


def _loop_running_here() -> bool:
    """Whether an event loop (ours or another) runs in the calling thread."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def on_the_loop() -> bool:
    """Whether the caller is code running on the loop (in whichever thread runs it now)."""
    return _runtime is not None and _loop_running_here() and asyncio.get_running_loop() is _runtime.loop


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` on the loop and wait for it from a synchronous caller (in this thread, see ``_Runtime.run``).

    Every coroutine given here bounds its own network waits, so no timeout is
    needed at this level.
    """
    if on_the_loop():
        coro.close()
        raise RuntimeError("a blocking natsstorage call was made from its own event loop")
    try:
        runtime = _get_runtime()
    except BaseException:  # Ctrl-C before the loop was made: the work never starts (no "never awaited" warning)
        coro.close()
        raise
    return runtime.run(coro)


def wait(future: concurrent.futures.Future[T]) -> T:
    """The result of work started with ``submit``, waited for in slices so that Ctrl-C is never missed.

    Cancels the work when the wait is interrupted.
    """
    try:
        with _handlers_run_here():
            while not future.done():
                try:
                    return future.result(SIGNAL_CHECK_INTERVAL)
                except TimeoutError:
                    continue  # this slice ran out, or the work failed with its own TimeoutError: done() tells
        return future.result()
    except BaseException:
        future.cancel()
        raise


async def arun(coro: Coroutine[Any, Any, T]) -> T:
    """Await ``coro`` on the loop from any other event loop (an async view's, say)."""
    runtime = _get_runtime()
    if on_the_loop():
        return await coro
    return await asyncio.wrap_future(runtime._submit(coro))


def submit(coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
    """Start ``coro`` on the loop without waiting (the loop thread runs it); safe from any thread."""
    return _get_runtime()._submit(coro)


# Work started on the loop that no caller waits for (purging a replaced version's chunks), by what
# it concerns (a stream). Only code on the loop touches it.
_background: dict[str, set[asyncio.Task[Any]]] = {}


def background(about: str, coro: Coroutine[Any, Any, Any]) -> None:
    """Start ``coro`` on the running loop without waiting; ``settled(about)`` waits for it, and so
    does closing the connections, so that work sent is work done. Call on the loop."""
    task = asyncio.get_running_loop().create_task(coro)
    tasks = _background.setdefault(about, set())
    tasks.add(task)
    task.add_done_callback(tasks.discard)


async def settled(about: str) -> None:
    """Wait for the background work about ``about``, started by any caller in this process."""
    if pending := _under_way(about):
        await asyncio.wait(pending)


def _under_way(about: str | None = None) -> list[asyncio.Task[Any]]:
    loop = asyncio.get_running_loop()
    groups = _background.values() if about is None else [_background.get(about, set())]
    return [task for tasks in groups for task in tasks if task.get_loop() is loop]


async def connection(settings: ConnectionSettings) -> Client:
    """The shared connection for ``settings``; call on the loop."""
    return await _get_runtime().connection(settings)


def close_connections() -> None:
    """Close every connection now (tests, and code about to fork)."""
    if _runtime is not None:
        run(_runtime.close())
