"""The one event loop, and the one rule about it: the main thread never runs the loop; another thread runs it
for its own call while no other thread does, and hands its work over otherwise.

nats-py is asyncio and Django's Storage API is synchronous. A connection is bound to the loop that made it, so
one loop per process, made once and kept for as long as the process lives, owns every NATS connection
(``connections.py``). docs/event-loop.md says what the rule means for callers, and what it buys.

- **A thread other than the main one** (a threaded server's worker, ``sync_to_async``'s, a Celery thread) that
  calls while no other thread runs the loop runs it itself until its work is done: no thread wakes another.
- **Otherwise a call hands its work to the loop and waits** for the result: from the main thread always (Python
  runs signal handlers there, between any two bytecodes: never inside the loop's code), while another thread
  runs the loop, and from async code (``arun``). The wait is in slices of ``WAIT_SLICE``: Ctrl-C, a ``SIGTERM``
  or Celery's soft time limit ends the call with the handler's own exception and cancels its work on the loop.
  natsstorage installs no signal handler.
- **The loop thread** (a daemon named ``natsstorage``) runs the loop whenever work was handed over and nobody
  runs it, and whenever no call has run it for ``IDLE`` seconds (so that what runs on the loop by itself,
  nats-py's pings, watches, reconnects, never waits longer); a thread that calls while the loop thread runs it
  with no handed work under way asks for it back.

After a fork the child's first call makes a new loop; at exit the loop's tasks are cancelled and it is closed.
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
                        self.loop.run_forever()  # until a caller's thread asks for the loop (_give_back), or exit
                except BaseException:  # a task's SystemExit, say: the loop goes on for everyone else
                    logger.exception("natsstorage: the NATS loop stopped on an error; running it again")
                finally:
                    self.runner, self.last_run = None, time.monotonic()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """``coro``'s result, the loop run in this thread (not the main one) when no other thread runs it."""
        if threading.current_thread() is threading.main_thread() or _a_loop_runs_here():
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
                call = Call(_caught_up(coro), self)
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
            self.loop.call_soon_threadsafe(self._give_back)
            return self.running.acquire(timeout=GIVE_BACK)
        finally:
            self.asking = False

    def _give_back(self) -> None:  # on the loop: the asking thread serves what is under way while it runs it
        if self.runner is self.thread:
            self.loop.stop()

    def submit(self, coro: Coroutine[Any, Any, T], *, blocking: bool = False) -> Call[T]:
        """Hand ``coro`` to the loop (see the module's ``submit``)."""
        call = None
        try:
            if blocking and on_the_loop():
                raise RuntimeError("a blocking natsstorage call was made from its own event loop")
            call = Call(coro, self)
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
        self.loop.call_soon_threadsafe(self._stop_if_mine)
        with contextlib.suppress(RuntimeError):
            self.wake.release()
        self.thread.join(CLOSE_TIMEOUT)
        if not self.thread.is_alive() and self.running.acquire(blocking=False):  # (kept: nobody runs it again)
            self.loop.close()

    def _stop_if_mine(self) -> None:  # on the loop, at exit: a caller's thread running it finishes its call
        if self.runner is self.thread:
            self.loop.stop()


async def _caught_up(coro: Coroutine[Any, Any, T]) -> T:
    """``coro``, once the loop has read what arrived while no thread ran it: a connection the server closed
    meanwhile is then known lost (nats-py's reader marks it), not sent a request that could only fail."""
    await asyncio.sleep(0)  # what arrived is read...
    await asyncio.sleep(0)  # ...and the tasks waiting for it have run
    return await coro


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


def _a_loop_runs_here() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def on_the_loop() -> bool:
    """Whether the caller is code running on the loop."""
    try:
        return _loop_thread is not None and asyncio.get_running_loop() is _loop_thread.loop
    except RuntimeError:  # no loop runs in this thread
        return False


class Call(Generic[T]):
    """Work for the loop, and its outcome.

    The caller's thread only writes an attribute, hands the loop a callback and takes a plain lock: safe
    wherever a signal handler raises. Not ``concurrent.futures.Future``, whose ``Condition`` a handler raising
    right after its ``with`` took the lock leaves taken, and the loop thread would wait for it for ever."""

    def __init__(self, coro: Coroutine[Any, Any, T], owner: LoopThread) -> None:
        self._coro = [coro]  # taken (list.pop, atomic) by the loop to start it, or by a caller who gave up first
        self._owner = owner
        self._loop = owner.loop
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
            for then in self._then:
                then()
            self._owner.finished(self)
            self._finished.release()  # last: the caller's thread wants the GIL as soon as it wakes

    def _stop(self) -> None:  # on the loop
        if self._task is not None:
            self._task.cancel()
            # A task cancelled before its first step never runs ``_outcome``'s ``finally``. (Not added at the
            # start: a done callback costs a loop turn after the caller was let go, in which the loop thread
            # would take the interpreter's lock back from the caller's thread.)
            self._task.add_done_callback(self._finish)

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
