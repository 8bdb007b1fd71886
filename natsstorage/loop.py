"""The one event loop, and the one rule about it: the main thread never runs the loop; another thread runs it
for its own calls while no other thread does, and hands its work over otherwise.

nats-py is asyncio and Django's Storage API is synchronous; a connection is bound to the loop that made it, so
one loop per process, kept for as long as the process lives, owns every NATS connection (``connections.py``).
A worker thread calling alone runs the loop itself: no thread wakes another. The main thread (where Python runs
signal handlers, never inside the loop's code), async code and threads calling by turns hand their work over
(``calls.py`` waits for it). The loop thread, a daemon named ``natsstorage``, runs the loop for handed work and
whenever no call has run it for ``IDLE`` seconds. docs/event-loop.md says what this means for callers.
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
from collections.abc import AsyncGenerator, Coroutine, Iterator
from typing import Any, TypeVar

from natsstorage.calls import Call as Call  # (callers hand work over and wait through this module)
from natsstorage.calls import wait as wait

try:  # imported now, not at the first call: a Ctrl-C landing in an import's clean-up is printed, never raised
    import uvloop
except ImportError:  # pragma: no cover - uvloop is not built for every platform
    uvloop = None  # type: ignore[assignment]

T = TypeVar("T")
logger = logging.getLogger("natsstorage")

CLOSE_TIMEOUT = 2.0  # seconds for what is left on the loop to end at exit
# Seconds the loop may go unrun between calls before the loop thread runs it: what runs on the loop by itself
# (a watch's messages, a purge nobody waits for) waits at most this long after a thread's last call.
IDLE = 0.02
GIVE_BACK = 0.05  # seconds a caller waits for the loop thread to give the loop back before handing its work over
# Raised by a fault in the loop thread itself; all others go to the program's threads (abort()'s SIGABRT too).
FAULT_SIGNALS = {getattr(signal, name) for name in ("SIGSEGV", "SIGBUS", "SIGFPE", "SIGILL") if hasattr(signal, name)}


def new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop where it is built: it wakes across threads and moves bytes much faster than asyncio's loop."""
    return asyncio.new_event_loop() if uvloop is None else uvloop.new_event_loop()


class LoopThread:
    """The loop, the daemon thread that runs it when no caller's thread does, and who runs it now.

    The main thread's side (``submit``) takes no lock: a signal handler raising there would leave a lock taken
    for ever, and one calling the storage would wait for the lock its own thread holds."""

    def __init__(self) -> None:
        self.loop = new_event_loop()
        self.running = threading.Lock()  # held by the thread that runs the loop
        self.runner: threading.Thread | None = None  # that thread
        self.handed: set[Call[Any]] = set()  # work handed to the loop and not finished (set.add: no lock)
        self.wake = threading.Lock()  # released to wake the loop thread for handed work
        self.wake.acquire()
        self.last_run = time.monotonic()  # when a caller's thread last stopped running the loop
        self.callers = 0  # calls under way from threads that may run the loop (under callers_lock)
        self.last_caller: threading.Thread | None = None  # the thread of the last call (any thread but the main)
        self.callers_lock = threading.Lock()
        self.asking = False  # a caller's thread waits for the loop thread to give the loop back
        self.closing = False
        self.thread = threading.Thread(target=self._serve, name="natsstorage", daemon=True)
        try:
            self.thread.start()
        except BaseException:  # Ctrl-C while it starts: no open loop left for a collection to log
            if not self.thread.is_alive():
                self.loop.close()
            raise

    def _serve(self) -> None:
        # The kernel hands a signal sent to the process to any thread not blocking it; blocked here, it goes to
        # a thread that runs Python (Python runs handlers in the main thread, which then wakes at once).
        if hasattr(signal, "pthread_sigmask"):
            signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals() - FAULT_SIGNALS)
        asyncio.set_event_loop(self.loop)
        while not self.closing:
            idle = not self.running.locked() and time.monotonic() - self.last_run >= IDLE
            if self.asking or not (self.handed or idle):  # (a thread that asked for the loop serves what came)
                self.wake.acquire(timeout=IDLE)
                continue
            with self.running:  # (waits while a caller's thread finishes its call)
                self.runner = self.thread
                try:
                    if not self.closing:
                        self.loop.run_forever()  # until a caller's thread asks for the loop (_let_go), or exit
                except BaseException:  # a task's SystemExit, say: the loop goes on for everyone else
                    logger.exception("natsstorage: the NATS loop stopped on an error; running it again")
                finally:
                    self.runner, self.last_run = None, time.monotonic()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """``coro``'s result, the loop run in this thread (not the main one) when no other thread runs it."""
        if threading.current_thread() is threading.main_thread() or _running_loop() is not None:
            return wait(self.submit(coro, blocking=True))  # (on another loop, or on this one: submit refuses)
        me = threading.current_thread()
        with self.callers_lock:
            self.callers += 1
            alone = self.callers == 1 and self.last_caller is me  # and its last call was this thread's
            self.last_caller = me
        try:
            if not (alone and self._take()):  # several threads calling by turns: the loop thread serves them all
                return wait(self.submit(coro, blocking=True))
            try:
                call = Call(coro, self.loop, self.finished, catch_up=True)
                self.loop.run_until_complete(call._outcome())
                return call.result()
            finally:
                self.last_run = time.monotonic()
                self.running.release()
        finally:
            with self.callers_lock:
                self.callers -= 1

    def _take(self) -> bool:
        """Take the loop to run it in this thread: it is free, or the loop thread runs it with no handed work and
        gives it back. Work already handed over is left to the loop thread."""
        if self.handed:
            return False
        if self.running.acquire(blocking=False):
            return True
        if self.runner is not self.thread:
            return False
        self.asking = True
        try:
            self.loop.call_soon_threadsafe(self._let_go)  # (what is under way, this thread serves)
            return self.running.acquire(timeout=GIVE_BACK)
        finally:
            self.asking = False

    def _let_go(self) -> None:  # on the loop: the loop thread stops running it (a caller's thread finishes its call)
        if self.runner is self.thread:
            self.loop.stop()

    def submit(self, coro: Coroutine[Any, Any, T], *, blocking: bool = False) -> Call[T]:
        """Hand ``coro`` to the loop (see the module's ``submit``)."""
        call = None
        try:
            if blocking and on_the_loop():
                raise RuntimeError("a blocking natsstorage call was made from its own event loop")
            call = Call(coro, self.loop, self.finished, catch_up=not self.running.locked())
            self.handed.add(call)
            self.loop.call_soon_threadsafe(call._start)
            if self.runner is not self.thread:  # nobody, or a caller's thread that may stop first: wake it
                with contextlib.suppress(RuntimeError):  # (already woken)
                    self.wake.release()
            return call
        except BaseException:  # Ctrl-C before the loop took the work, say: it never starts (no "never awaited")
            taken = call._coro if call is not None else [coro]
            with contextlib.suppress(IndexError):
                taken.pop().close()
            if call is not None:
                self.handed.discard(call)
            raise

    def finished(self, call: Call[Any]) -> None:  # on the loop
        self.handed.discard(call)

    def stop(self) -> None:
        """End what runs on the loop (a connection's reconnect attempts, say), then the loop and its thread."""
        if self.loop.is_closed():
            return
        try:
            wait(self.submit(_cancel_every_task()), CLOSE_TIMEOUT)
        except Exception as error:  # noqa: BLE001 - best effort at interpreter exit
            logger.debug("natsstorage: ending the NATS loop's tasks at exit: %r", error)
        self.closing = True
        self.loop.call_soon_threadsafe(self._let_go)
        with contextlib.suppress(RuntimeError):
            self.wake.release()
        self.thread.join(CLOSE_TIMEOUT)
        if not self.thread.is_alive() and self.running.acquire(blocking=False):  # (kept: nobody runs it again)
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


def _stop_at_exit() -> None:
    if _loop_thread is not None:
        _loop_thread.stop()


os.register_at_fork(after_in_child=_forget_in_child)
atexit.register(_stop_at_exit)  # registered first, so run last: after connections.py's close at exit


def started() -> bool:
    """Whether this process has a loop thread yet (nothing to close at exit without one)."""
    return _loop_thread is not None


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:  # no loop runs in this thread
        return None


def on_the_loop() -> bool:
    """Whether the caller is code running on the loop."""
    return _loop_thread is not None and _running_loop() is _loop_thread.loop


def _started(coro: Coroutine[Any, Any, Any]) -> LoopThread:
    try:
        return _loop_thread_started()
    except BaseException:  # Ctrl-C while the loop thread starts: ``coro`` never starts (no "never awaited")
        coro.close()
        raise


def submit(coro: Coroutine[Any, Any, T], *, blocking: bool = False) -> Call[T]:
    """Hand ``coro`` to the loop without waiting, from any thread; ``wait`` gives its result.
    ``blocking``: the caller will wait for it, which code on the loop must never do."""
    return _started(coro).submit(coro, blocking=blocking)


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` on the loop and wait for its result, from any thread; never from code on the loop
    (every coroutine given here bounds its own network waits)."""
    return _started(coro).run(coro)


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
