"""As much of JetStream as the Object Store needs, in asyncio, Django-free: requests to one stream.

A ``Stream`` makes API requests, acknowledged publishes, message gets and
purges on one stream, and turns every refusal into a ``JetStreamError`` that
carries the server's JetStream error code. ``Replies`` is the one inbox per
connection that acknowledgements come back to. Receiving many messages
(consumers, batched direct gets) is ``delivery.py``'s. Every network wait has
a timeout.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import logging
import re
import weakref
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from typing import Any

import nats.errors
from nats.aio.client import Client
from nats.aio.msg import Msg

from natsstorage import background, connections, natspy
from natsstorage.exceptions import (
    BucketFull,
    BucketNotFound,
    BucketSealed,
    JetStreamError,
    NatsStorageError,
    NatsUnavailable,
    ObjectChanged,
    TooLarge,
)

API = "$JS.API."
STATUS_HEADER = "Status"
DESCRIPTION_HEADER = "Description"
ROLLUP_HEADER = "Nats-Rollup"
ROLLUP_SUBJECT = "sub"
EXPECTED_SUBJECT_SEQ_HEADER = "Nats-Expected-Last-Subject-Sequence"
EXPECTED_STREAM_HEADER = "Nats-Expected-Stream"  # the stream must have this name
MSG_ID_HEADER = "Nats-Msg-Id"
EXPECTED_LAST_MSG_ID_HEADER = "Nats-Expected-Last-Msg-Id"  # the stream's last message must carry this Msg-Id
SEQUENCE_HEADER = "Nats-Sequence"  # on a direct get's answer, with:
TIME_HEADER = "Nats-Time-Stamp"
NUM_PENDING_HEADER = "Nats-Num-Pending"  # and in a batch: how many more the subject holds after it
LAST_CONSUMER_HEADER = "Nats-Last-Consumer"  # on a pull consumer's heartbeat: the last consumer sequence it sent
LAST_SEQUENCE_HEADER = "Nats-Last-Sequence"  # on a batch's end: the last message's sequence
UP_TO_SEQUENCE_HEADER = "Nats-UpTo-Sequence"  # on a multi_last's end: the stream's last sequence where it was read
MESSAGE_SIZE_HEADER = "Nats-Msg-Size"  # what a headers-only consumer sends instead of the data
HEARTBEAT = "100"
END_OF_BATCH = "204"
NOT_FOUND = "404"  # a direct get's "no such message", a no-wait pull's "nothing more"
REQUEST_EXPIRED = "408"
NO_RESPONDERS = "503"

# JetStream API error codes acted on.
ERR_NO_MESSAGE = 10037
ERR_SEQUENCE_NOT_FOUND = 10043  # a message deleted by sequence that is not (or no longer) there
ERR_STREAM_STORE = 10049  # the server could not make the stream's store (its directory)
ERR_STREAM_NAME_IN_USE = 10058
ERR_WRONG_LAST_MSG_ID = 10070
ERR_STREAM_NOT_FOUND = 10059
ERR_WRONG_LAST_SEQUENCE = 10071
ERR_MAX_BYTES = 10077
ERR_SEALED = 10109

SEND_AS_IS_BYTES = 64 * 1024  # a payload at least this big is published without nats-py's copies (natspy.send)
CREATE_ATTEMPTS = 4  # a stream create the server failed to make a store for, tried again after CREATE_AGAIN_AFTER
CREATE_AGAIN_AFTER = 0.05

# nats-server closes a connection that sends a longer protocol line (its default max_control_line; INFO does
# not say it), or a message whose headers and payload together exceed its max_payload: every transfer on it fails.
MAX_CONTROL_LINE = 4096
# What a protocol line holds besides its subject and reply subject: "HPUB", spaces, two sizes, CRLF, with room.
CONTROL_LINE_ROOM = 48
REPLY_ROOM = 128  # nats-py's request inboxes (``_INBOX.<nuid>.<nuid>``), for requests whose reply it makes

# Before nats-server 2.10.26 a direct get that no stream takes (the stream deleted, or its allow_direct turned off
# since we looked) is not answered at all, not even with a 503: a silence that cannot be told from an outage.
# Older servers are asked through the stream leader's API instead (STREAM.MSG.GET), which says which it is.
DIRECT_GETS_REFUSED_SINCE = (2, 10, 26)
KNOWN_VERSIONS = 16  # server versions whose answer is kept (a process meets one or two)
_refusing: dict[str, bool] = {}
NANOSECONDS = 1_000_000_000
PROBE_STREAM = "natsstorage-probe"  # no stream's name: a publish expecting it is refused, and stores nothing
LEADER_WAIT = 0.05  # seconds between looks for a new replicated stream's first leader

logger = logging.getLogger("natsstorage")


def refuse_oversized(nc: Client, subject: str, reply: str | None, size: int, about: str) -> None:
    """``TooLarge`` for a message nats-server would close the connection over: a protocol line longer than its
    ``max_control_line``, or headers and payload (``size``) over its ``max_payload``."""
    line = len(subject.encode()) + (REPLY_ROOM if reply is None else len(reply.encode())) + CONTROL_LINE_ROOM
    if line > MAX_CONTROL_LINE:
        raise TooLarge(f"{about}: its subject makes a {line}-byte protocol line; NATS takes {MAX_CONTROL_LINE}")
    if size > nc.max_payload:
        raise TooLarge(f"{about} is {size} bytes; the NATS server takes messages up to {nc.max_payload}")


def header_block(headers: Mapping[str, str] | None) -> bytes:
    """A message's headers as NATS sends them, or nothing: with its payload, what ``max_payload`` bounds."""
    if not headers:
        return b""
    return "".join(["NATS/1.0\r\n", *(f"{key}: {value}\r\n" for key, value in headers.items()), "\r\n"]).encode()


def refuses_direct_gets(nc: Client) -> bool:
    """Whether the server on the other end of ``nc`` answers a direct get no stream takes (503), not silence."""
    version = nc.connected_server_version
    # Learnt once per version ("<nats server v2.10.26>"): nats-py parses it anew (a regex) each time, 8 µs a get.
    known = _refusing.get(name := repr(version))
    if known is None:
        try:
            known = (version.major, version.minor, version.patch) >= DIRECT_GETS_REFUSED_SINCE
        except ValueError:  # not a semantic version: assume the oldest
            known = False
        if len(_refusing) < KNOWN_VERSIONS:
            _refusing[name] = known
    return known


def nanoseconds(seconds: float) -> int:
    return int(seconds * NANOSECONDS)


class ConnectionLost(Exception):
    """What a reply still awaited when its connection lost its server gets: the answer will not come."""


def let_go(future: asyncio.Future[Any] | None) -> None:
    """Stop waiting for ``future`` and let its outcome go (nothing waits for it): never "never retrieved"."""
    if future is not None:
        future.cancel()
        future.add_done_callback(lambda done: done.cancelled() or done.exception())


def seconds_until(due: float) -> float:
    """What is left until ``due``, a time of the running loop: none once it has passed."""
    return max(0.0, due - asyncio.get_running_loop().time())


async def reply_by(reply: asyncio.Future[Msg], due: float) -> Msg:
    """``reply``'s message, or ``TimeoutError`` at ``due`` (a time of the running loop). Awaited under a
    deadline, not through ``asyncio.wait_for``, whose own future costs Python 3.11 a loop turn per answer; none
    for an answer already in (a one-chunk save's metadata, answered with its chunk)."""
    if reply.done():
        return reply.result()
    async with asyncio.timeout_at(due):
        return await reply


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
        self.made_here = False  # this process created the stream (the listing index is made with it)
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
                info = await self.create(nc, self._create)  # (which waits until it takes publishes)
                self.made_here = True
                made: dict[str, Any] = info["config"]
                return made
            except JetStreamError as error:
                if error.code != ERR_STREAM_NAME_IN_USE:
                    raise
                info = await self.api(nc, f"STREAM.INFO.{self.name}")  # created meanwhile
        config: dict[str, Any] = info["config"]
        await self._led(nc, info)
        return config

    async def create(self, nc: Client, config: Mapping[str, Any]) -> dict[str, Any]:
        """Create this stream with ``config``. nats-server removes an account's empty stream directory in the
        background once its last stream is deleted, and a stream created meanwhile fails to make its own
        (10049, "error creating store"): seen 1 time in 60 for a bucket destroyed and made again on a server
        holding nothing else. That failure is tried again, a few times."""
        for _ in range(CREATE_ATTEMPTS - 1):
            try:
                info = await self.api(nc, f"STREAM.CREATE.{self.name}", config)
                break
            except JetStreamError as error:
                if error.code != ERR_STREAM_STORE:
                    raise
            await asyncio.sleep(CREATE_AGAIN_AFTER)
        else:
            info = await self.api(nc, f"STREAM.CREATE.{self.name}", config)
        await self._led(nc, info)
        return info

    async def _led(self, nc: Client, info: Mapping[str, Any]) -> None:
        """Wait, within the timeout, until a stream of a cluster has a leader to take publishes, and the server
        ``nc`` is on knows it: until then a publish meets no responders (seen in CI, once, right after a cluster
        formed; and for a stream of one replica just created, 1 time in about 30 on a loaded machine, where the
        publish's "no responders" then read as the stream gone)."""
        if int(info["config"].get("num_replicas", 1)) <= 1 and not info.get("cluster"):
            return  # one server: its stream takes publishes once created
        clock = asyncio.get_running_loop()
        deadline = clock.time() + self.timeout
        probe = re.sub(r"(?<=\.)[*>]", "probe", info["config"]["subjects"][0])  # a subject of the stream's
        while not ((info.get("cluster") or {}).get("leader") and await self._answers(nc, probe, deadline)):
            if clock.time() > deadline:
                raise NatsUnavailable(f"NATS {self.label}: no leader took publishes within {self.timeout:g} s")
            await asyncio.sleep(LEADER_WAIT)
            info = await self.api(nc, f"STREAM.INFO.{self.name}")

    async def _answers(self, nc: Client, subject: str, deadline: float) -> bool:
        """Whether a publish to ``subject`` meets the stream: one it refuses, for naming another stream."""
        remaining = max(deadline - asyncio.get_running_loop().time(), LEADER_WAIT)
        try:
            await nc.request(subject, b"", timeout=remaining, headers={EXPECTED_STREAM_HEADER: PROBE_STREAM})
        except nats.errors.NoRespondersError:
            return False
        except nats.errors.Error as error:
            raise self.unavailable("no answer to a publish", error) from None
        return True

    # -- errors ------------------------------------------------------------------

    def unavailable(self, what: str, error: BaseException) -> NatsUnavailable:
        detail = str(error) or type(error).__name__
        return NatsUnavailable(f"NATS {self.label}: {what} within {self.timeout:g} s ({detail})")

    def missing(self) -> BucketNotFound:
        """The stream is gone: forget its configuration, so that the next use looks (or creates) again."""
        self.config = None
        return BucketNotFound(f"{self.label} does not exist on the NATS server", code=ERR_STREAM_NOT_FOUND)

    async def unanswered(self, name: str, about: str) -> NatsStorageError:
        """No responder took a publish: a stream that is gone, a replicated one electing its leader, or a server
        whose JetStream is stopping (it ends before the server closes its connections). Only the server's own
        answer about the stream makes it a missing bucket, which a save may create again and send to once more."""
        if self.replicated:
            return NatsUnavailable(f"NATS {self.label}: no stream leader took {name!r} (an election under way?)")
        try:
            await self.api(await self.connect(), f"STREAM.INFO.{self.name}")
        except BucketNotFound as missing:
            return missing
        except NatsUnavailable:
            return NatsUnavailable(
                f"NATS {self.label}: no responder for {about}, nor for the stream's info, within {self.timeout:g} s"
                " (JetStream is stopping, or not enabled)"
            )
        return self.missing()  # made again since the publish (by this process's next request, say): send again

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
        about = f"{subject.split('.')[0].lower()} request"
        # Through the shared reply inbox, which fails what waits when the connection loses its server: an
        # answer nats-py's own request waits for would never come, and the caller would wait its whole timeout.
        due = asyncio.get_running_loop().time() + self.timeout
        answer = await self.start_publish(nc, API + subject, payload, None, f"the {about}")
        try:
            reply = await reply_by(answer, due)
        except (TimeoutError, ConnectionLost) as error:
            raise self.unavailable(f"no answer to {about}", error) from None
        if reply.headers and reply.headers.get(STATUS_HEADER) == NO_RESPONDERS:
            raise NatsUnavailable(f"JetStream is not enabled on the NATS server ({self.label})")
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
        return await self.settle(await self.start_publish(nc, subject, payload, headers, repr(name)), name)

    async def start_publish(
        self, nc: Client, subject: str, payload: bytes | memoryview, headers: dict[str, str] | None, about: str
    ) -> asyncio.Future[Msg]:
        """Publish one message without waiting: the future of its acknowledgement, for ``settle``.

        It is queued before this returns, so what is published next follows it, in the same write to
        the socket when nothing waits in between.
        """
        reply, ack = (await Replies.of(nc)).expect()
        try:
            if isinstance(payload, memoryview) and not (payload.c_contiguous and payload.itemsize == 1):
                payload = payload.tobytes()  # nats-py sizes a message by len(): bytes, not items
            head = header_block(headers)
            refuse_oversized(nc, subject, reply, len(head) + len(payload), about)
            if len(payload) >= SEND_AS_IS_BYTES:  # a chunk: nats-py would copy it twice
                await natspy.send(nc, subject, payload, reply, headers, head)
            else:
                await nc.publish(subject, payload, reply=reply, headers=headers)  # type: ignore[arg-type]
        except BaseException as error:
            ack.cancel()
            if isinstance(error, nats.errors.Error):
                raise self.unavailable(f"could not send {about}", error) from None
            raise
        return ack

    async def tell(self, nc: Client, subject: str, payload: bytes, reply: str, about: str) -> None:
        """Publish what is answered elsewhere (a pull request, on its inbox); nats-py's refusal as NatsUnavailable."""
        refuse_oversized(nc, subject, reply, len(payload), about)
        try:
            await nc.publish(subject, payload, reply=reply)
        except nats.errors.Error as error:  # over its buffer while reconnecting, say
            raise self.unavailable(f"could not send {about}", error) from None

    async def settle(self, ack: asyncio.Future[Msg], name: str, about: str = "", *, due: float | None = None) -> int:
        """The sequence of ``name``'s message that ``ack`` acknowledges (``about``: what it was, for messages).

        ``due``: the loop time by which it must have come (the timeout after it was sent); else a timeout from now.
        """
        if due is None:
            due = asyncio.get_running_loop().time() + self.timeout
        try:
            reply = await reply_by(ack, due)
        except (TimeoutError, ConnectionLost) as error:
            raise self.unavailable(f"no acknowledgement for {about or repr(name)}", error) from None
        if reply.headers and reply.headers.get(STATUS_HEADER) == NO_RESPONDERS:
            raise await self.unanswered(name, about or repr(name))
        answer = json.loads(reply.data)
        if "error" in answer:
            raise self.refused(answer["error"], name)
        return int(answer["seq"])

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
        if not (self.direct and refuses_direct_gets(nc)):
            return await self.get_message(nc, request)
        # Through the shared reply inbox: nats-py's request draws a random token from the OS for each.
        subject = f"{API}DIRECT.GET.{self.name}"
        due = asyncio.get_running_loop().time() + self.timeout  # sending counts: it may wait for a full socket
        answer = await self.start_publish(nc, subject, json.dumps(request).encode(), None, "a direct get")
        try:
            reply = await reply_by(answer, due)
        except (TimeoutError, ConnectionLost) as error:
            raise self.unavailable("no answer to a direct get", error) from None
        headers = reply.headers or {}
        if headers.get(STATUS_HEADER) == NOT_FOUND and not self.replicated:
            return None
        if STATUS_HEADER in headers or SEQUENCE_HEADER not in headers:  # no responders: allow_direct is off
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
        background.start(self.name, work)

    async def settled(self) -> None:
        """Wait for this process's background work on the stream, so its figures and limits count it."""
        await background.settled(self.name)


PRUNE_AT = 1024  # awaited replies at which those given up on are dropped (then twice those left, at least this)


class Replies:
    """One wildcard inbox per connection whose replies go to the futures waiting for them, by token.

    What every publish that awaits its acknowledgement shares: a subscription per upload would
    cost a SUB and an UNSUB (and nats-py a task) per object. nats-py's own ``publish_async``
    never settles a future whose acknowledgement is an error, hence this.
    """

    def __init__(self, nc: Client) -> None:
        self.nc = nc
        self.prefix = nc.new_inbox() + "."
        # Answered futures leave at their reply; those given up on, when the next prune finds them (not by a done
        # callback: one per message is a loop turn after the answer, while the caller's thread wants the GIL).
        self._waiting: dict[str, asyncio.Future[Msg]] = {}
        self._prune_at = PRUNE_AT
        self._tokens = itertools.count()
        self._sub: Any = None
        self._subscribing = asyncio.Lock()
        connections.when_lost(nc, self._lost)

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
        if len(self._waiting) >= self._prune_at:  # futures given up on before their reply came
            self._waiting = {token: future for token, future in self._waiting.items() if not future.done()}
            self._prune_at = max(PRUNE_AT, 2 * len(self._waiting))
        token = str(next(self._tokens))
        future: asyncio.Future[Msg] = asyncio.get_running_loop().create_future()
        self._waiting[token] = future
        return self.prefix + token, future

    async def _on_reply(self, msg: Msg) -> None:
        future = self._waiting.pop(msg.subject[len(self.prefix) :], None)
        if future is not None and not future.done():
            future.set_result(msg)

    def _lost(self) -> None:
        """The connection lost its server: what was asked of it will not be answered (nats-py keeps no
        request across a reconnect), so what waits for it fails now rather than at its timeout."""
        waiting, self._waiting = self._waiting, {}
        for future in waiting.values():
            if not future.done():
                future.set_exception(ConnectionLost("the connection to NATS was lost"))


_replies: weakref.WeakKeyDictionary[Client, Replies] = weakref.WeakKeyDictionary()


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
