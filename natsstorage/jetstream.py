"""As much of JetStream as the Object Store needs, asyncio and Django-free.

A ``Stream`` makes API requests, acknowledged publishes, message gets and
purges on one stream, and turns every refusal into a ``JetStreamError`` that
carries the server's JetStream error code. A ``Consumer`` is an ephemeral
pull consumer; ``Pull`` reads one with a bounded window of messages in
flight. A ``DirectBatch`` reads a subject's messages by batched direct gets,
without a consumer, where the server and the stream allow it. Every network
wait has a timeout.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import logging
import weakref
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from datetime import timedelta
from typing import Any

import nats.errors
from nats.aio.client import Client
from nats.aio.msg import Msg

from natsstorage import _bridge
from natsstorage.exceptions import (
    BucketFull,
    BucketNotFound,
    BucketSealed,
    CorruptObject,
    JetStreamError,
    NatsStorageError,
    NatsUnavailable,
    ObjectChanged,
)

API = "$JS.API."
STATUS_HEADER = "Status"
DESCRIPTION_HEADER = "Description"
ROLLUP_HEADER = "Nats-Rollup"
ROLLUP_SUBJECT = "sub"
EXPECTED_SUBJECT_SEQ_HEADER = "Nats-Expected-Last-Subject-Sequence"
MSG_ID_HEADER = "Nats-Msg-Id"
EXPECTED_LAST_MSG_ID_HEADER = "Nats-Expected-Last-Msg-Id"  # the stream's last message must carry this Msg-Id
SEQUENCE_HEADER = "Nats-Sequence"  # on a direct get's answer, with:
TIME_HEADER = "Nats-Time-Stamp"
NUM_PENDING_HEADER = "Nats-Num-Pending"  # and in a batch: how many more the subject holds after it
LAST_SEQUENCE_HEADER = "Nats-Last-Sequence"  # on a batch's end: the last message's sequence
MESSAGE_SIZE_HEADER = "Nats-Msg-Size"  # what a headers-only consumer sends instead of the data
HEARTBEAT = "100"
END_OF_BATCH = "204"
NOT_FOUND = "404"  # a direct get's "no such message", a no-wait pull's "nothing more"
REQUEST_EXPIRED = "408"
NO_RESPONDERS = "503"

# JetStream API error codes acted on.
ERR_NO_MESSAGE = 10037
ERR_STREAM_NAME_IN_USE = 10058
ERR_WRONG_LAST_MSG_ID = 10070
ERR_STREAM_NOT_FOUND = 10059
ERR_WRONG_LAST_SEQUENCE = 10071
ERR_MAX_BYTES = 10077
ERR_SEALED = 10109

NANOSECONDS = 1_000_000_000
# Ephemeral consumers are deleted when a read ends; this is the server's
# safety net for readers that never finish (a client killed mid-read).
CONSUMER_INACTIVE_THRESHOLD = timedelta(seconds=30)
SLOW_START = 4  # messages an exact read asks for first; it doubles up to the window
# In a cluster a new consumer's pull requests may reach a server that has not yet
# heard of it (no responders, 503) for a moment: ask again this often, within the timeout.
PULL_RETRY_WAIT = 0.05
BATCH_GETS_SINCE = (2, 11)  # the nats-server version that answers batched direct gets (ADR-31)

logger = logging.getLogger("natsstorage")


def nanoseconds(seconds: float) -> int:
    return int(seconds * NANOSECONDS)


def answers_batches(nc: Client) -> bool:
    """Whether the server on the other end of ``nc`` answers batched direct gets (nats-server 2.11+)."""
    try:
        version = nc.connected_server_version
        return (version.major, version.minor) >= BATCH_GETS_SINCE
    except ValueError:  # not a semantic version: assume the oldest
        return False


class Stream:
    """One stream on a shared connection; its configuration is read (or the stream created) once.

    ``label`` names what the stream holds in error messages (``bucket 'media'``).
    ``create``: the configuration to create a missing stream with; None: never create it.
    """

    def __init__(
        self,
        name: str,
        connect: Callable[[], Awaitable[Client]],
        *,
        timeout: float,
        label: str,
        create: Mapping[str, Any] | None = None,
    ) -> None:
        self.name = name
        self.timeout = timeout
        self.label = label
        self.connect = connect
        self.config: dict[str, Any] | None = None  # None until known, and again once the stream is gone
        self._create = create
        self._ready = asyncio.Lock()

    @property
    def replicated(self) -> bool:
        return int((self.config or {}).get("num_replicas", 1)) > 1

    @property
    def direct(self) -> bool:
        """Whether the stream answers direct gets (``allow_direct``, which Object Store buckets set)."""
        return bool((self.config or {}).get("allow_direct"))

    async def connection(self) -> Client:
        """The connection, with the stream made sure of once per process."""
        nc = await self.connect()
        if self.config is None:
            async with self._ready:
                if self.config is None:
                    self.config = await self._ensure(nc)
        return nc

    async def _ensure(self, nc: Client) -> dict[str, Any]:
        try:
            info = await self.api(nc, f"STREAM.INFO.{self.name}")
        except BucketNotFound:
            if self._create is None:
                raise
            try:
                info = await self.api(nc, f"STREAM.CREATE.{self.name}", self._create)
            except JetStreamError as error:
                if error.code != ERR_STREAM_NAME_IN_USE:
                    raise
                info = await self.api(nc, f"STREAM.INFO.{self.name}")  # created meanwhile
        config: dict[str, Any] = info["config"]
        return config

    # -- errors ------------------------------------------------------------------

    def unavailable(self, what: str, error: BaseException) -> NatsUnavailable:
        detail = str(error) or type(error).__name__
        return NatsUnavailable(f"NATS {self.label}: {what} within {self.timeout:g} s ({detail})")

    def missing(self) -> BucketNotFound:
        """The stream is gone: forget its configuration, so that the next use looks (or creates) again."""
        self.config = None
        return BucketNotFound(f"{self.label} does not exist on the NATS server", code=ERR_STREAM_NOT_FOUND)

    def refused(self, error: Mapping[str, Any], name: str | None = None) -> JetStreamError:
        """The typed error for an API error answer; ``name``: the object it was about."""
        code = error.get("err_code")
        if code == ERR_STREAM_NOT_FOUND:
            return self.missing()
        if code == ERR_MAX_BYTES:
            limit = (self.config or {}).get("max_bytes", "?")
            return BucketFull(f"{self.label} is full: writing {name!r} would exceed max_bytes {limit}", code=code)
        if code == ERR_SEALED:
            return BucketSealed(f"{self.label} is sealed: {name or 'it'!r} cannot be changed", code=code)
        about = f"{name!r} in {self.label}" if name else self.label
        if code == ERR_WRONG_LAST_SEQUENCE:
            return ObjectChanged(f"{about} was changed by another writer", code=code)
        description = error.get("description")
        return JetStreamError(f"NATS refused the request for {about}: {description} ({code})", code=code)

    # -- requests ----------------------------------------------------------------

    async def api(self, nc: Client, subject: str, body: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """One JetStream API request (``subject`` after ``$JS.API.``); its answer, or the typed error."""
        payload = json.dumps(body).encode() if body is not None else b""
        try:
            reply = await nc.request(API + subject, payload, timeout=self.timeout)
        except nats.errors.NoRespondersError:
            raise NatsUnavailable(f"JetStream is not enabled on the NATS server ({self.label})") from None
        except nats.errors.Error as error:
            raise self.unavailable(f"no answer to {subject.split('.')[0].lower()} request", error) from None
        response: dict[str, Any] = json.loads(reply.data)
        if "error" in response:
            raise self.refused(response["error"])
        return response

    async def info(self, nc: Client, **request: Any) -> dict[str, Any]:
        """The stream's info: ``config`` and ``state`` (with ``subjects_filter``, per-subject counts)."""
        await self.settled()
        return await self.api(nc, f"STREAM.INFO.{self.name}", request or None)

    async def delete(self, nc: Client) -> None:
        await self.settled()
        await self.api(nc, f"STREAM.DELETE.{self.name}")
        self.config = None

    async def publish(self, nc: Client, subject: str, payload: bytes, headers: dict[str, str], name: str) -> int:
        """Publish one message and wait for the stream's acknowledgement; its sequence."""
        try:
            reply = await nc.request(subject, payload, timeout=self.timeout, headers=headers)
        except nats.errors.NoRespondersError:
            raise self.missing() from None
        except nats.errors.Error as error:
            raise self.unavailable(f"no acknowledgement for {name!r}", error) from None
        return self.acknowledged(reply, name)

    def acknowledged(self, reply: Msg, name: str) -> int:
        """The sequence a publish's acknowledgement gives, or its refusal as the typed error."""
        if reply.headers and reply.headers.get(STATUS_HEADER) == NO_RESPONDERS:
            raise self.missing()
        ack = json.loads(reply.data)
        if "error" in ack:
            raise self.refused(ack["error"], name)
        return int(ack["seq"])

    async def get_message(self, nc: Client, request: Mapping[str, Any]) -> dict[str, Any] | None:
        """One stored message (from the stream leader, so never stale), or None when there is none."""
        try:
            response = await self.api(nc, f"STREAM.MSG.GET.{self.name}", request)
        except JetStreamError as error:
            if error.code == ERR_NO_MESSAGE:
                return None
            raise
        message: dict[str, Any] = response["message"]
        message["data"] = base64.b64decode(message.get("data", ""))
        return message

    async def direct_get(self, nc: Client, request: Mapping[str, Any]) -> dict[str, Any] | None:
        """Like ``get_message``, but raw (no JSON, no base64) through a direct get when it can.

        A direct get may be answered by a replica that has not caught up yet, so
        "not found" there is asked again of the stream leader, unless there are no replicas.
        """
        try:
            reply = await nc.request(f"{API}DIRECT.GET.{self.name}", json.dumps(request).encode(), timeout=self.timeout)
        except nats.errors.NoRespondersError:  # allow_direct is off on this stream
            return await self.get_message(nc, request)
        except nats.errors.Error as error:
            raise self.unavailable("no answer to a direct get", error) from None
        headers = reply.headers or {}
        if headers.get(STATUS_HEADER) == NOT_FOUND and not self.replicated:
            return None
        if STATUS_HEADER in headers or SEQUENCE_HEADER not in headers:
            return await self.get_message(nc, request)
        return {"data": reply.data, "seq": int(headers[SEQUENCE_HEADER]), "time": headers.get(TIME_HEADER, "")}

    async def purge(self, nc: Client, subject: str) -> int:
        """Remove every message on ``subject``; how many there were."""
        response = await self.api(nc, f"STREAM.PURGE.{self.name}", {"filter": subject})
        return int(response.get("purged", 0))

    async def purge_or_warn(self, nc: Client, subject: str, what: str) -> None:
        try:
            await self.purge(nc, subject)
        except NatsStorageError as error:
            logger.warning("could not remove the chunks of %s at %s (natsos_gc will): %s", what, subject, error)

    def purge_soon(self, nc: Client, subject: str, what: str) -> None:
        """Purge garbage without keeping the caller waiting; ``settled`` waits for it."""
        self.background(self.purge_or_warn(nc, subject, what))

    def background(self, work: Coroutine[Any, Any, Any]) -> None:
        _bridge.background(self.name, work)

    async def settled(self) -> None:
        """Wait for this process's background work on the stream, so its figures and limits count it."""
        await _bridge.settled(self.name)


class Replies:
    """One wildcard inbox per connection whose replies go to the futures waiting for them, by token.

    What every publish that awaits its acknowledgement shares: a subscription per upload would
    cost a SUB and an UNSUB (and nats-py a task) per object. nats-py's own ``publish_async``
    never settles a future whose acknowledgement is an error, hence this.
    """

    def __init__(self, nc: Client) -> None:
        self.nc = nc
        self.prefix = nc.new_inbox() + "."
        self._waiting: dict[str, asyncio.Future[Msg]] = {}
        self._tokens = itertools.count()
        self._sub: Any = None
        self._subscribing = asyncio.Lock()

    @classmethod
    async def of(cls, nc: Client) -> Replies:
        replies = _replies.get(nc)
        if replies is None:
            replies = _replies.setdefault(nc, cls(nc))
        if replies._sub is None:
            async with replies._subscribing:
                if replies._sub is None:
                    replies._sub = await nc.subscribe(replies.prefix + "*", cb=replies._on_reply)
        return replies

    def expect(self) -> tuple[str, asyncio.Future[Msg]]:
        """A reply subject and the future its reply will settle."""
        token = str(next(self._tokens))
        future: asyncio.Future[Msg] = asyncio.get_running_loop().create_future()
        future.add_done_callback(lambda _: self._waiting.pop(token, None))  # answered, or given up on
        self._waiting[token] = future
        return self.prefix + token, future

    async def _on_reply(self, msg: Msg) -> None:
        future = self._waiting.pop(msg.subject[len(self.prefix) :], None)
        if future is not None and not future.done():
            future.set_result(msg)


_replies: weakref.WeakKeyDictionary[Client, Replies] = weakref.WeakKeyDictionary()


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
        await self.nc.publish(subject, json.dumps(body).encode(), reply=self._sub.subject)

    async def close(self) -> None:
        await super().close()
        if self.name and self.nc is not None and not self.nc.is_closed:
            # No need to wait for the answer: the inactive threshold is the safety net.
            subject = f"{API}CONSUMER.DELETE.{self.stream.name}.{self.name}"
            self.name = ""
            await self.nc.publish(subject, b"", reply=self.nc.new_inbox())


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


class NoBatch(Exception):
    """What a ``DirectBatch`` asked for cannot be read by batched direct gets: read it another way."""


class DirectBatch(Inbox):
    """``count`` messages on one subject from ``start_seq`` (0: its first), by batched direct gets: no consumer.

    nats-server 2.11+ (ADR-31) answers ``{"seq", "next_by_subj", "batch", "max_bytes"}``
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
        await self.nc.publish(subject, json.dumps(body).encode(), reply=self._sub.subject)

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


async def stream_names(nc: Client, *, timeout: float) -> list[str]:
    """The names of every stream on the server, page after page."""
    names: list[str] = []
    while True:
        try:
            reply = await nc.request(f"{API}STREAM.NAMES", json.dumps({"offset": len(names)}).encode(), timeout=timeout)
        except nats.errors.NoRespondersError:
            raise NatsUnavailable("JetStream is not enabled on the NATS server") from None
        except nats.errors.Error as error:
            raise NatsUnavailable(f"NATS: no answer to a stream names request within {timeout:g} s ({error})") from None
        response = json.loads(reply.data)
        if "error" in response:
            refusal = response["error"]
            description, code = refusal.get("description"), refusal.get("err_code")
            raise JetStreamError(f"NATS refused to list streams: {description}", code=code)
        page = response.get("streams") or []
        names.extend(page)
        if not page or len(names) >= response.get("total", 0):
            return names
