"""The one event loop, and the one rule about it: only the loop thread runs the loop.

nats-py is asyncio and Django's Storage API is synchronous. A connection is bound to the loop that made it, so
one daemon thread per process runs one loop (uvloop's where it is built) for as long as the process lives, and
that loop owns every NATS connection (``connections.py``). docs/event-loop.md says what it means for callers.

Every other thread only hands it work. A synchronous call (``run``, or ``submit`` then ``wait``) waits for the
result in slices of ``WAIT_SLICE``; Python runs the main thread's signal handlers between them, so Ctrl-C, a
``SIGTERM`` or Celery's soft time limit ends the call with the handler's own exception and cancels its work on
the loop. natsstorage installs no signal handler. An async caller awaits the same work (``arun``); code on the
loop calls coroutines directly, or starts work nothing waits for (``background``). After a fork the child's
first call starts a loop thread; at exit the loop's tasks are cancelled and it is closed.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import logging
import os
import signal
import threading
import time
from collections.abc import AsyncGenerator, Callable, Coroutine, Iterator
from typing import Any, Generic, TypeVar

try:  # imported now, not at the first call: a Ctrl-C landing in an import's clean-up is printed, never raised
    import uvloop
except ImportError:  # pragma: no cover - uvloop is not built for every platform
    uvloop = None  # type: ignore[assignment]

T = TypeVar("T")
logger = logging.getLogger("natsstorage")

# Seconds a waiting caller sleeps at a time: a signal another thread caught is handled by the next slice's end.
WAIT_SLICE = 0.25
CLOSE_TIMEOUT = 2.0  # seconds for what is left on the loop to end at exit
# Raised by a fault in the loop thread itself; all others go to the program's threads (abort()'s SIGABRT too).
FAULT_SIGNALS = {getattr(signal, name) for name in ("SIGSEGV", "SIGBUS", "SIGFPE", "SIGILL") if hasattr(signal, name)}


def new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop where it is built: it wakes across threads and moves bytes much faster than asyncio's loop."""
    return asyncio.new_event_loop() if uvloop is None else uvloop.new_event_loop()


class LoopThread:
    """The loop and the daemon thread that runs it, started together."""

    def __init__(self) -> None:
        self.loop = new_event_loop()
        self.thread = threading.Thread(target=self._run, name="natsstorage", daemon=True)
        try:
            self.thread.start()
        except BaseException:  # Ctrl-C while it starts: no open loop left for a collection to log
            if not self.thread.is_alive():
                self.loop.close()
            raise

    def _run(self) -> None:
        # The kernel hands a signal sent to the process to any thread not blocking it; blocked here, it goes to
        # a thread that runs Python (Python runs handlers in the main thread, which then wakes at once).
        if hasattr(signal, "pthread_sigmask"):
            signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals() - FAULT_SIGNALS)
        asyncio.set_event_loop(self.loop)
        while not self.loop.is_closed():
            try:
                self.loop.run_forever()
                return  # stopped at exit
            except BaseException:  # a task's SystemExit, say: the loop goes on for everyone else
                logger.exception("natsstorage: the NATS loop stopped on an error; running it again")

    def stop(self) -> None:
        """End what runs on the loop (a connection's reconnect attempts, say), then the loop and its thread."""
        if self.loop.is_closed():
            return
        try:
            asyncio.run_coroutine_threadsafe(_cancel_every_task(), self.loop).result(CLOSE_TIMEOUT)
        except Exception as error:  # noqa: BLE001 - best effort at interpreter exit
            logger.debug("natsstorage: ending the NATS loop's tasks at exit: %r", error)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(CLOSE_TIMEOUT)
        if not self.thread.is_alive():
            self.loop.close()


async def _cancel_every_task() -> None:
    tasks = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
    for task in tasks:
        task.cancel()
    if tasks:
        await asyncio.wait(tasks, timeout=CLOSE_TIMEOUT)


_loop_thread: LoopThread | None = None
_start_lock = threading.Lock()


def _loop_thread_started() -> LoopThread:
    global _loop_thread
    if _loop_thread is None:
        with _start_lock:
            if _loop_thread is None:
                _loop_thread = LoopThread()
    return _loop_thread


def _forget_in_child() -> None:
    """In a forked child the loop thread does not exist: the first call starts one."""
    global _loop_thread, _start_lock
    _loop_thread, _start_lock = None, threading.Lock()
    _background.clear()


def _stop_at_exit() -> None:
    if _loop_thread is not None:
        _loop_thread.stop()


os.register_at_fork(after_in_child=_forget_in_child)
atexit.register(_stop_at_exit)  # registered first, so run last: after connections.py's close at exit


def started() -> bool:
    """Whether this process has a loop thread yet (nothing to close at exit without one)."""
    return _loop_thread is not None


def on_the_loop() -> bool:
    """Whether the caller is code running on the loop."""
    try:
        return _loop_thread is not None and asyncio.get_running_loop() is _loop_thread.loop
    except RuntimeError:  # no loop runs in this thread
        return False


class Call(Generic[T]):
    """Work handed to the loop, and its outcome.

    The caller's thread only writes an attribute, hands the loop a callback and takes a plain lock: safe
    wherever a signal handler raises. Not ``concurrent.futures.Future``, whose ``Condition`` a handler raising
    right after its ``with`` took the lock leaves taken, and the loop thread would wait for it for ever."""

    def __init__(self, coro: Coroutine[Any, Any, T], loop: asyncio.AbstractEventLoop) -> None:
        self._coro = [coro]  # taken (list.pop, atomic) by the loop to start it, or by a caller who gave up first
        self._loop = loop
        self._finished = threading.Lock()  # held until the outcome is in
        self._finished.acquire()
        self._task: asyncio.Task[None] | None = None  # until it is done: the task is freed on the loop, not here
        self._value: T | None = None
        self._error: BaseException | None = asyncio.CancelledError()  # (until it has an outcome)
        self._cancelled = self._over = False  # (over: its outcome is in)
        self._then: list[Callable[[], object]] = []  # run on the loop once the outcome is in

    def _start(self) -> None:  # on the loop
        if self._cancelled or not self._coro:  # cancelled, or dropped by its caller, before it started
            self._finish()
            return
        self._task = self._loop.create_task(self._outcome())
        self._task.add_done_callback(self._finish)  # (a task cancelled before its first step never runs it)

    async def _outcome(self) -> None:  # the caller is let go in the task's last step, not a loop turn later
        try:
            self._value, self._error = await self._coro.pop(), None
        except (asyncio.CancelledError, GeneratorExit):  # (or closed unfinished, at exit)
            pass  # its error stays a CancelledError
        except BaseException as error:  # a SystemExit too: the caller's, not the loop's
            self._error = error
        finally:
            self._finish()

    def _finish(self, _: object = None) -> None:  # on the loop; once
        if not self._over:
            self._over, self._task = True, None
            if self._coro:  # never started: no "never awaited" warning (its caller may take it meanwhile)
                with contextlib.suppress(IndexError):
                    self._coro.pop().close()
            self._finished.release()
            for then in self._then:
                then()

    def _stop(self) -> None:  # on the loop
        if self._task is not None:
            self._task.cancel()

    def cancel(self) -> None:
        """Cancel the work (no-op once it is done); safe from any thread."""
        self._cancelled = True
        if not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._stop)

    def done(self) -> bool:
        return not self._finished.locked()

    def result(self) -> T:
        """The outcome, once done (see ``done`` and ``wait``)."""
        if self._error is not None:
            raise self._error
        return self._value  # type: ignore[return-value]  # (T, when there is no error)


def submit(coro: Coroutine[Any, Any, T], *, blocking: bool = False) -> Call[T]:
    """Start ``coro`` on the loop without waiting, from any thread; ``wait`` gives its result.
    ``blocking``: the caller will wait for it, which code on the loop must never do."""
    call = None
    try:
        if blocking and on_the_loop():
            raise RuntimeError("a blocking natsstorage call was made from its own event loop")
        call = Call(coro, _loop_thread_started().loop)
        call._loop.call_soon_threadsafe(call._start)
        return call
    except BaseException:  # Ctrl-C before the loop took the work, say: it never starts (no "never awaited")
        taken = call._coro if call is not None else [coro]
        with contextlib.suppress(IndexError):
            taken.pop().close()
        raise


def wait(call: Call[T], timeout: float | None = None) -> T:
    """The result of work started with ``submit``, waited for in slices so that signal handlers run. Whatever
    interrupts the wait (a handler's ``KeyboardInterrupt``, ``SystemExit``, Celery's ``SoftTimeLimitExceeded``;
    ``TimeoutError`` after ``timeout`` seconds) cancels the work and is raised unchanged."""
    try:
        deadline = None if timeout is None else time.monotonic() + timeout
        while not call._finished.acquire(timeout=WAIT_SLICE):
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError
    except BaseException:
        call.cancel()
        raise
    return call.result()


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` on the loop and wait for its result, from any thread but the loop's
    (every coroutine given here bounds its own network waits)."""
    return wait(submit(coro, blocking=True))


def iterate(batches: AsyncGenerator[list[T], None]) -> Iterator[T]:
    """The items of ``batches`` (run on the loop) for a synchronous caller: one hop to the loop per batch.
    Leaving a ``for`` over it early closes ``batches`` on the loop."""
    try:
        while (batch := run(_next_batch(batches))) is not None:
            yield from batch
    finally:
        run(batches.aclose())


async def _next_batch(batches: AsyncGenerator[list[T], None]) -> list[T] | None:
    return await anext(batches, None)


async def arun(coro: Coroutine[Any, Any, T]) -> T:
    """Await ``coro`` on the loop from any other event loop (an async view's, say); cancelling cancels it."""
    if on_the_loop():
        return await coro
    call = submit(coro)
    here = asyncio.get_running_loop()
    finished = here.create_future()

    call._then.append(lambda: here.is_closed() or here.call_soon_threadsafe(_mark_done, finished))
    if call.done():  # finished before the line above
        _mark_done(finished)
    try:
        await finished
    except asyncio.CancelledError:
        call.cancel()
        raise
    return call.result()


def _mark_done(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


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


async def settled(about: str | None = None) -> None:
    """Wait for the background work about ``about`` (None: all of it), started by any caller in this process;
    at most ``CLOSE_TIMEOUT`` for all of it."""
    loop = asyncio.get_running_loop()
    groups = _background.values() if about is None else [_background.get(about, set())]
    if pending := [task for tasks in groups for task in tasks if task.get_loop() is loop]:
        await asyncio.wait(pending, timeout=CLOSE_TIMEOUT if about is None else None)


async def cancel_and_wait(task: asyncio.Future[Any]) -> None:
    """Cancel ``task`` and wait, within CLOSE_TIMEOUT, for it to end. nats-py swallows a cancellation that
    lands while it closes a failed connect attempt (which would retry for ever) or waits for its flusher:
    cancel again."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + CLOSE_TIMEOUT
    while not task.done() and loop.time() < deadline:
        task.cancel()
        await asyncio.wait({task}, timeout=0.05)
    if task.done() and not task.cancelled():
        task.exception()  # retrieved: no "exception was never retrieved" at exit
