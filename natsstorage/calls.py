"""Work for the loop from another thread, and waiting for its outcome (``loop.py`` says who runs the loop).

A caller waits in slices of ``WAIT_SLICE``: Python runs the main thread's signal handlers between them, so
Ctrl-C, a ``SIGTERM`` or Celery's soft time limit ends the call with the handler's own exception, and the work
is cancelled on the loop. Nothing here takes a lock a signal handler raising could leave taken.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any, Generic, TypeVar

T = TypeVar("T")

# Seconds a waiting caller sleeps at a time: a signal another thread caught is handled by the next slice's end.
WAIT_SLICE = 0.25

# Calls on the loop waiting two loop turns before they start (on the loop only). A call that finds nobody running
# the loop waits them: the loop reads what arrived meanwhile, so a connection the server closed during a pause is
# known lost (nats-py's reader marks it) and not sent a request that could only fail. A call started while others
# wait waits too, so calls start in the order they were handed over: a streamed save's pieces, handed one after
# another, keep their order whoever ran the loop a moment before. (Every call waiting would cost the others: each
# turn lets go of the interpreter's lock, 0.87x the calls/s of 4 threads' exists().)
_catching_up = 0


def _none_in_child() -> None:
    """A forked child has none of its parent's calls, nor its loop (``loop.py`` starts another)."""
    global _catching_up
    _catching_up = 0


os.register_at_fork(after_in_child=_none_in_child)


class Call(Generic[T]):
    """Work for the loop, and its outcome.

    The caller's thread only writes an attribute, hands the loop a callback and takes a plain lock: safe
    wherever a signal handler raises. Not ``concurrent.futures.Future``, whose ``Condition`` a handler raising
    right after its ``with`` took the lock leaves taken, and the loop thread would wait for it for ever."""

    def __init__(
        self,
        coro: Coroutine[Any, Any, T],
        loop: asyncio.AbstractEventLoop,
        over: Callable[[Call[Any]], object],
        *,
        catch_up: bool = False,
    ) -> None:
        self._coro = [coro]  # taken (list.pop, atomic) by the loop to start it, or by a caller who gave up first
        self._loop = loop
        self._catch_up = catch_up  # nobody ran the loop a moment ago: it reads what arrived before ``coro`` starts
        self._over_then = over  # told on the loop once the outcome is in, before the caller is let go
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
        global _catching_up
        try:
            if self._catch_up or _catching_up:
                _catching_up += 1
                try:
                    await asyncio.sleep(0)
                    await asyncio.sleep(0)
                finally:
                    _catching_up -= 1
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
            self._over_then(self)
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
