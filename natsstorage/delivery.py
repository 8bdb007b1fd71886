"""Receiving many messages of a stream, with a bounded number in flight and every wait bounded.

An ``Inbox`` is a subscription whose messages are waited for within the stream's
timeout. A ``Consumer`` is an ephemeral pull consumer on one (reads and watches
share it); ``Pull`` reads one with a window of messages in flight. A
``DirectBatch`` asks the stream itself for a run of messages (batched direct
gets, nats-server 2.12+), with no consumer to create and delete.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from nats.aio.client import Client
from nats.aio.msg import Msg

from natsstorage.exceptions import CorruptObject, JetStreamError, NatsUnavailable
from natsstorage.jetstream import (
    API,
    DESCRIPTION_HEADER,
    END_OF_BATCH,
    HEARTBEAT,
    LAST_CONSUMER_HEADER,
    NO_RESPONDERS,
    NOT_FOUND,
    NUM_PENDING_HEADER,
    SEQUENCE_HEADER,
    STATUS_HEADER,
    TIME_HEADER,
    UP_TO_SEQUENCE_HEADER,
    Stream,
    nanoseconds,
)

# Ephemeral consumers are deleted when a read ends; this is the server's
# safety net for readers that never finish (a client killed mid-read).
CONSUMER_INACTIVE_THRESHOLD = timedelta(seconds=30)
SLOW_START = 4  # messages an exact read asks for first; it doubles up to the window
# In a cluster a new consumer's pull requests may reach a server that has not yet
# heard of it (no responders, 503) for a moment: ask again this often, within the timeout.
PULL_RETRY_WAIT = 0.05
REPLICA_WAIT = 0.005  # seconds before asking again a replica that had not caught up
REPLICA_TRIES = 10  # times, before asking the leader
ANSWERS = 1024  # messages one multi_last or batched direct get answers at most (nats-server's maxAllowedResponses)
TOO_MANY = "413"  # a multi_last whose filters match more subjects than that
BATCH_BYTES = 4 * 1024 * 1024  # bytes one batched answer of small messages may carry
BATCH_GETS_SINCE = (2, 12)  # batched direct gets (ADR-31) came in 2.11; the suite's reads fail on 2.11.x: 2.12 on


def answers_batches(nc: Client) -> bool:
    """Whether the server on the other end of ``nc`` answers batched direct gets (nats-server 2.12+)."""
    try:
        version = nc.connected_server_version
        return (version.major, version.minor) >= BATCH_GETS_SINCE
    except ValueError:  # not a semantic version: assume the oldest
        return False


def ephemeral(config: Mapping[str, Any]) -> dict[str, Any]:
    """``config`` for a reader's own consumer: no acks, in memory, gone when left idle."""
    return {
        **config,
        "ack_policy": "none",
        "mem_storage": True,
        "num_replicas": 1,
        "inactive_threshold": nanoseconds(CONSUMER_INACTIVE_THRESHOLD.total_seconds()),
    }


class Inbox:
    """Messages that arrive on an inbox of one's own, each waited for within the stream's timeout."""

    def __init__(self, stream: Stream) -> None:
        self.stream = stream
        self.nc: Client | None = None
        self._queue: asyncio.Queue[Msg] = asyncio.Queue()
        self._sub: Any = None

    async def listen(self, nc: Client) -> None:
        """Subscribe to a fresh inbox on ``nc``."""
        self.nc, self._queue = nc, asyncio.Queue()
        self._sub = await nc.subscribe(nc.new_inbox(), cb=self._deliver)

    async def _deliver(self, msg: Msg) -> None:
        self._queue.put_nowait(msg)

    def ready(self) -> bool:
        """Whether ``receive`` can answer without waiting on the network."""
        return not self._queue.empty()

    async def receive(self, what: str) -> tuple[Msg, str | None]:
        """The next message and its status header (None for a stored message), within the timeout.

        ``what`` says what was waited for, in the ``NatsUnavailable`` raised when nothing comes.
        """
        try:
            msg = self._queue.get_nowait()
        except asyncio.QueueEmpty:
            try:
                msg = await asyncio.wait_for(self._queue.get(), self.stream.timeout)
            except TimeoutError:
                raise self.stream.unavailable(what, TimeoutError()) from None
        return msg, msg.headers.get(STATUS_HEADER) if msg.headers else None

    @staticmethod
    def status_text(msg: Msg, status: str) -> str:
        return f"{status} {msg.headers.get(DESCRIPTION_HEADER, '') if msg.headers else ''}".strip()

    async def close(self) -> None:
        if self._sub is not None:
            sub, self._sub = self._sub, None
            if not (self.nc is not None and self.nc.is_closed):  # a closed connection has dropped it already
                await sub.unsubscribe()


class Consumer(Inbox):
    """An ephemeral pull consumer and the inbox its messages arrive on: what reads and watches share."""

    def __init__(self, stream: Stream, config: Mapping[str, Any]) -> None:
        super().__init__(stream)
        self.config = ephemeral(config)
        self.name = ""

    async def create(self, nc: Client) -> dict[str, Any]:
        """Create the consumer (a fresh one, if there was one); the server's answer."""
        await self.close()
        await self.listen(nc)
        try:
            created = await self.stream.api(
                nc, f"CONSUMER.CREATE.{self.stream.name}", {"stream_name": self.stream.name, "config": self.config}
            )
        except BaseException:
            await self.close()
            raise
        self.name = created["name"]
        return created

    @staticmethod
    def missed(msg: Msg, status: str | None, delivered: int) -> bool:
        """Whether a consumer that takes no acks sent messages that never arrived (it never sends them again),
        ``delivered`` having arrived: ``msg`` is not the next, or a heartbeat counts more than arrived (the last
        ones before a quiet spell went astray)."""
        if status is None:
            return bool(msg.metadata.sequence.consumer != delivered + 1)
        return status == HEARTBEAT and int((msg.headers or {}).get(LAST_CONSUMER_HEADER, 0)) > delivered

    async def request(
        self, batch: int, *, expires: float, no_wait: bool = False, heartbeat: float | None = None
    ) -> None:
        """Ask for up to ``batch`` more messages; the request lasts ``expires`` seconds."""
        assert self.nc is not None and self._sub is not None, "request() before create()"
        body: dict[str, Any] = {"batch": batch, "expires": nanoseconds(expires)}
        if no_wait:
            body["no_wait"] = True  # end the request when nothing more is there
        if heartbeat:
            body["idle_heartbeat"] = nanoseconds(heartbeat)
        subject = f"{API}CONSUMER.MSG.NEXT.{self.stream.name}.{self.name}"
        await self.stream.tell(self.nc, subject, json.dumps(body).encode(), self._sub.subject, "a pull request")

    async def close(self) -> None:
        await super().close()
        if self.name and self.nc is not None and not self.nc.is_closed:
            # No need to wait for the answer: the inactive threshold is the safety net.
            subject = f"{API}CONSUMER.DELETE.{self.stream.name}.{self.name}"
            self.name = ""
            with contextlib.suppress(NatsUnavailable):
                await self.stream.tell(self.nc, subject, b"", self.nc.new_inbox(), "a consumer's deletion")


class Pull(Consumer):
    """A consumer read with explicit flow: at most ``window`` messages in flight.

    ``exact``: exactly the messages pending at creation must arrive (an
    object's chunks), and fewer is an error. Otherwise (listing metadata while
    others write) it reads at most those, ending early when the consumer has
    nothing more to deliver.
    """

    def __init__(self, stream: Stream, nc: Client, config: Mapping[str, Any], *, exact: bool, window: int) -> None:
        super().__init__(stream, config)
        self.nc = nc
        self.exact = exact
        self.window = window
        self._limit = min(window, SLOW_START) if exact else window
        self.pending = 0  # messages the consumer had to deliver when created
        self._requested = 0
        self._received = 0
        self._done = False
        self._retry_until = 0.0  # set by the first 503
        self.next_seq = int(self.config.get("opt_start_seq", 0))  # the stream sequence to go on from; 0: the start

    async def __aenter__(self) -> Pull:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def start(self) -> None:
        assert self.nc is not None
        created = await self.create(self.nc)
        self.pending = int(created["num_pending"])
        self._done = self.pending == 0
        await self._ask()

    async def _ask(self) -> None:
        """Keep up to ``window`` messages requested, topping up once half have arrived.

        Exact reads start with a few messages and double up to the window: a read
        of a few bytes after a seek fetches about one chunk, not a window's worth.
        """
        in_flight = self._requested - self._received
        wanted = min(self._limit - in_flight, self.pending - self._requested)
        if self._done or wanted <= 0 or in_flight > self._limit // 2:
            return
        self._requested += wanted
        self._limit = min(self.window, 2 * self._limit)
        await self.request(wanted, expires=self.stream.timeout, no_wait=not self.exact)

    async def next(self) -> Msg | None:
        """The next message; None once a non-exact read has nothing more to deliver."""
        while not self._done:
            msg, status = await self.receive("no data from the server")
            if status is None:
                self._received += 1
                sequence = msg.metadata.sequence
                if sequence.consumer != self._received:  # no acks: one that went astray is never sent again
                    raise Astray(f"NATS {self.stream.label}: a message the server sent never arrived (a reconnect?)")
                self.next_seq = sequence.stream + 1
                # Past what was pending at creation, a listing is a snapshot; fewer (a name
                # rolled up meanwhile) end with the no-wait request's 404/408 below.
                self._done = self._received >= self.pending
                await self._ask()
                return msg
            if status == HEARTBEAT:
                continue
            if status == NO_RESPONDERS:
                await self._ask_again()
                continue
            if not self.exact:  # 404/408: the consumer has nothing more
                self._done = True
                break
            raise CorruptObject(
                f"{self.stream.label}: the server ended the read early: {self.status_text(msg, status)}"
            )
        return None

    async def _ask_again(self) -> None:
        """After a 503 nothing asked for is coming (only a first request, before any message, meets one)."""
        now = asyncio.get_running_loop().time()
        self._retry_until = self._retry_until or now + self.stream.timeout
        if now > self._retry_until:
            raise self.stream.unavailable("no server answered for the read's consumer", TimeoutError())
        await asyncio.sleep(PULL_RETRY_WAIT)
        self._requested = self._received
        await self._ask()


class Astray(NatsUnavailable):
    """A message a ``Pull``'s consumer sent never arrived: read on from its ``next_seq``, another way."""


class NoBatch(Exception):
    """What a ``DirectBatch`` asked for cannot be read by batched direct gets: read it another way."""


class DirectBatch(Inbox):
    """``count`` messages on one subject from ``start_seq`` (0: its first), by batched direct gets: no consumer.

    nats-server 2.12+ (ADR-31) answers ``{"seq", "next_by_subj", "batch", "max_bytes"}``
    on ``$JS.API.DIRECT.GET.<stream>`` with the subject's messages from ``seq`` on, up
    to ``batch`` of them and stopping after the one that reaches ``max_bytes``, each
    with ``Nats-Num-Pending`` (how many more the subject holds after it), then a
    ``204 EOB`` status; a ``404`` alone when there is no first one. At most ``window``
    messages are asked for at a time: the next batch once the last one has ended and
    at most half a window is left unread.

    ``start`` asks for the first batch and sets ``pending``, the messages the subject
    holds from ``start_seq`` on the server that answered (a replica may lag: fewer is
    for the caller to judge). ``start`` and ``next`` raise ``NoBatch`` when the rest
    must be read another way, from ``next_seq``: the stream answers no direct gets
    (503), a server took the request for a plain direct get (before 2.11: one message
    without ``Nats-Num-Pending``; a cluster being upgraded may mix versions), an
    error status, or a later batch finds fewer messages than are left to read.
    """

    def __init__(
        self, stream: Stream, nc: Client, subject: str, *, start_seq: int, count: int, window: int, max_bytes: int
    ) -> None:
        super().__init__(stream)
        self.nc = nc
        self.subject = subject
        self.count = count
        self.window = window
        self.max_bytes = max_bytes
        self.next_seq = start_seq  # where the messages not yet returned start
        self.pending = 0
        self._asked = 0  # messages asked for; once a batch has ended, those it delivered
        self._arrived = 0
        self._taken = 0
        self._ask_from = start_seq  # where the next batch starts
        self._open = False  # a batch was asked for and has not ended
        self._batch_starts = True  # the next message is a batch's first
        self._held: Msg | None = None  # the first message, kept by start for next

    async def start(self) -> None:
        assert self.nc is not None
        await self.listen(self.nc)
        try:
            await self._ask()
            self._held = await self._take()
        except BaseException:
            await self.close()
            raise

    async def _deliver(self, msg: Msg) -> None:
        headers = msg.headers or {}
        if STATUS_HEADER not in headers:
            self._arrived += 1
            if SEQUENCE_HEADER in headers:
                self._ask_from = int(headers[SEQUENCE_HEADER]) + 1
        else:
            self._open = False
            self._asked = self._arrived  # a batch may end early, at max_bytes
        self._queue.put_nowait(msg)

    async def _ask(self) -> None:
        unread = self._asked - self._taken
        wanted = min(self.window - unread, self.count - self._asked)
        if self._open or wanted <= 0 or unread > self.window // 2:
            return
        assert self.nc is not None and self._sub is not None
        self._open = True
        self._asked += wanted
        body = {"seq": self._ask_from, "next_by_subj": self.subject, "batch": wanted, "max_bytes": self.max_bytes}
        subject = f"{API}DIRECT.GET.{self.stream.name}"
        await self.stream.tell(self.nc, subject, json.dumps(body).encode(), self._sub.subject, "a batched direct get")

    def ready(self) -> bool:
        return self._held is not None or super().ready()

    async def next(self) -> bytes:
        """The next message's data."""
        msg, self._held = self._held, None
        if msg is None and self._taken:  # else start found none at all
            msg = await self._take()
        if msg is None:
            raise NoBatch(f"0 of the {self.count - self._taken} messages left are on the server")
        await self._ask()
        return msg.data

    async def _take(self) -> Msg | None:
        """The next stored message, None when the subject has none from where the batch started (404)."""
        while True:
            msg, status = await self.receive("no data from the server")
            if status == END_OF_BATCH:
                self._batch_starts = True
                await self._ask()
                continue
            if status == NOT_FOUND:
                return None
            if status == NO_RESPONDERS:
                raise NoBatch("the stream answers no direct gets (503)")
            if status is not None:
                raise NoBatch(f"the server answered {self.status_text(msg, status)}")
            headers = msg.headers or {}
            if NUM_PENDING_HEADER not in headers:
                raise NoBatch("the server answered a plain direct get (nats-server before 2.11)")
            if self._batch_starts:
                self._batch_starts = False
                there, left = 1 + int(headers[NUM_PENDING_HEADER]), self.count - self._taken
                if not self._taken:
                    self.pending = there
                elif there < left:
                    raise NoBatch(f"{there} of the {left} messages left are on the server")
            self._taken += 1
            self.next_seq = int(headers[SEQUENCE_HEADER]) + 1
            return msg


class TooMany(Exception):
    """A ``multi_last`` matched more than ``ANSWERS`` subjects (413): page through it instead."""


@dataclass(frozen=True)
class Got:
    """One message of a direct get's answer."""

    subject: str
    seq: int
    time: str  # the server's, RFC 3339
    data: bytes
    pending: int = 0  # in a batch: how many more messages match after this one


class Answers(Inbox):
    """Every message of one direct get (a ``multi_last`` or a batch), on an inbox of its own."""

    up_to = 0  # a multi_last's: the last sequence of the stream (its replica) that answered; 0: not said

    async def ask(self, nc: Client, body: dict[str, Any]) -> list[Got]:
        await self.listen(nc)
        try:
            assert self._sub is not None
            subject = f"{API}DIRECT.GET.{self.stream.name}"
            await self.stream.tell(nc, subject, json.dumps(body).encode(), self._sub.subject, "a batched direct get")
            found: list[Got] = []
            while True:
                msg, status = await self.receive("no answer to a batched direct get")
                if status is None:
                    found.append(_got(msg))
                    continue
                if status in (END_OF_BATCH, NOT_FOUND):
                    self.up_to = int(msg.headers.get(UP_TO_SEQUENCE_HEADER) or 0) if msg.headers else 0
                    return found
                if status == TOO_MANY:
                    raise TooMany()
                if status == NO_RESPONDERS:
                    raise self.stream.missing()
                raise JetStreamError(
                    f"NATS {self.stream.label}: a direct get was answered {self.status_text(msg, status)}"
                )
        finally:
            await self.close()


def _got(msg: Msg) -> Got:
    headers = msg.headers or {}
    subject, seq, stored = (
        headers.get("Nats-Subject", ""),
        int(headers.get(SEQUENCE_HEADER, 0)),
        headers.get(TIME_HEADER, ""),
    )
    return Got(subject, seq, stored, msg.data, int(headers.get(NUM_PENDING_HEADER, 0)))


class Behind(Exception):
    """No replica that answered had caught up with the sequence asked for (or it found nothing, which says
    nothing of where it stood): ask the stream leader instead."""


async def last_of(stream: Stream, nc: Client, filters: list[str], *, as_of: int = 0) -> list[Got]:
    """The latest message of every subject matching ``filters`` (at most ``ANSWERS``, else ``TooMany``).

    ``as_of``: a replicated stream's sequence the answer must include. Any replica answers a direct get, and one
    that lags would miss what was just written (ADR-31): an answer counts only when its end says the replica
    had reached ``as_of``; asked again a few times, then ``Behind``."""
    body = {"multi_last": filters, "batch": ANSWERS}
    if not (as_of and stream.replicated):
        return await Answers(stream).ask(nc, body)
    for _ in range(REPLICA_TRIES):
        answers = Answers(stream)
        found = await answers.ask(nc, body)
        if answers.up_to >= as_of:
            return found
        if not found:  # a 404 does not say where its replica stood
            break
        await asyncio.sleep(REPLICA_WAIT)
    raise Behind()


async def every_of(stream: Stream, nc: Client, subject_filter: str, *, batch: int = ANSWERS) -> list[Got]:
    """Every message on ``subject_filter``, by batched ``next_by_subj``: in a stream of one message a subject,
    every subject's."""
    found: list[Got] = []
    seq = 1
    while True:
        body = {"seq": seq, "next_by_subj": subject_filter, "batch": batch, "max_bytes": BATCH_BYTES}
        page = await Answers(stream).ask(nc, body)
        found.extend(page)
        if not page or not page[-1].pending:
            return found
        seq = page[-1].seq + 1


async def last_of_literals(stream: Stream, nc: Client, subjects: list[str], *, as_of: int = 0) -> dict[str, Got]:
    """The latest message of each of ``subjects`` (literal), by subject: one request per ``ANSWERS``."""
    limit = nc.max_payload // 2
    chunks = _chunks_of(subjects, limit)
    pages = await asyncio.gather(*(last_of(stream, nc, chunk, as_of=as_of) for chunk in chunks))
    return {got.subject: got for page in pages for got in page}


def _chunks_of(subjects: list[str], limit: int) -> Iterable[list[str]]:
    """``subjects`` in lists of at most ``ANSWERS`` whose JSON stays under ``limit`` bytes."""
    chunk: list[str] = []
    size = 0
    for subject in subjects:
        if chunk and (len(chunk) >= ANSWERS or size + len(subject) + 4 > limit):
            yield chunk
            chunk, size = [], 0
        chunk.append(subject)
        size += len(subject) + 4
    if chunk:
        yield chunk
