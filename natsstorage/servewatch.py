"""The view's watch of a bucket's metadata: what it keeps (``servecache``) serves with no round trip while it runs.

While a process serves a bucket (a request in the last ``IDLE`` seconds), it keeps one ephemeral consumer on the
bucket's metadata subjects, new changes only and headers only: the subject names the object (its base64 name),
so each change any client makes costs each serving process one message of about 200 bytes, and drops that name's
entry as it arrives. The consumer is a pull consumer with long pull requests and an idle heartbeat, as the
listing index's watch (nats-server 2.9 has them).

The entries count only while the watch is live and caught up: from the consumer's creation (it delivers every
change stored after it) for as long as every message arrives in sequence, a heartbeat comes within ``QUIET``
seconds and the connection is not lost. Anything else (a change missed, a server restarted, a consumer gone)
makes every entry count for nothing at once, so requests ask the server again, and a new consumer is made.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
import weakref
from functools import partial

import nats
from nats.aio.client import Client

from natsstorage.connections import when_lost
from natsstorage.delivery import Consumer
from natsstorage.exceptions import BucketNotFound, NatsUnavailable
from natsstorage.indexsubjects import name_of_meta
from natsstorage.jetstream import HEARTBEAT, REQUEST_EXPIRED
from natsstorage.objectstore import ALL_META, Bucket
from natsstorage.servecache import ServeCache

logger = logging.getLogger("natsstorage")

HEARTBEAT_SECONDS = 1.0  # the server's idle heartbeat: how late a change lost on the way is noticed, at most
QUIET = 3.0  # seconds with no change and no heartbeat before the watch is made again
EXPIRES = 30.0  # seconds one pull request lasts; the next follows at once
BATCH = 1024  # changes one pull request may deliver
IDLE = 600.0  # seconds with no request for the bucket before the watch stops (the next request starts it again)
RETRY = 1.0  # seconds between attempts while the watch cannot be made (no server, no permission), doubled
LONGEST_RETRY = 60.0  # each time up to this

_numbers = itertools.count(1)
# The caches watched on each connection, told when it loses its server.
_watching: weakref.WeakKeyDictionary[Client, weakref.WeakSet[ServeCache]] = weakref.WeakKeyDictionary()


class Follower:
    """The task that keeps one cache's watch, made again whenever it lapses."""

    def __init__(self, bucket: Bucket, cache: ServeCache) -> None:
        self.bucket = bucket
        self.cache = cache
        self.lost = False  # the connection lost its server since this watch began
        self.task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        wait = RETRY
        try:
            while time.monotonic() - self.cache.used < IDLE:
                began = time.monotonic()
                try:
                    await self._watch()
                    wait = RETRY
                except BucketNotFound:
                    return  # destroyed: the next request finds it so, and starts again if it is back
                except NatsUnavailable as error:  # no server (failing at once), or no answer within the timeout
                    logger.debug("the view's watch of bucket %r: %s", self.bucket.name, error)
                    wait = RETRY
                except (OSError, nats.errors.Error) as error:  # refused (a permission, say): ask less and less often
                    logger.debug("the view's watch of bucket %r: %s", self.bucket.name, error)
                    wait = min(wait * 2, LONGEST_RETRY)
                if time.monotonic() - began < wait:
                    await asyncio.sleep(wait)
        finally:
            self.cache.watching(None)
            if self.cache.follower is self:
                self.cache.follower = None  # (it holds the bucket, which the cache is kept for)

    async def _watch(self) -> None:
        """One consumer, followed until it lapses."""
        nc = await self.bucket.connection()
        caches = _watching.get(nc)
        if caches is None:  # one callback per connection, for every cache watched on it
            caches = _watching[nc] = weakref.WeakSet()
            when_lost(nc, partial(_lapse, caches))
        caches.add(self.cache)
        subjects = ALL_META.format(bucket=self.bucket.name)
        consumer = Consumer(
            self.bucket.stream, {"filter_subject": subjects, "deliver_policy": "new", "headers_only": True}
        )
        try:
            self.lost = False
            await consumer.create(nc)
            await consumer.request(BATCH, expires=EXPIRES, heartbeat=HEARTBEAT_SECONDS)
            if self.lost:
                return
            self.cache.watching(next(_numbers))
            delivered, left = 0, BATCH
            while not self.lost and time.monotonic() - self.cache.used < IDLE:
                try:
                    msg, status = await asyncio.wait_for(consumer.receive("a change"), QUIET)
                except TimeoutError:
                    return  # no heartbeat: the consumer or its server is gone
                if consumer.missed(msg, status, delivered):
                    return  # changes sent never arrived: start again
                if status is None:
                    delivered, left = delivered + 1, left - 1
                    name = name_of_meta(self.bucket.name, msg.subject)
                    if name is not None:  # else no name this process looks up (all are base64 that decodes)
                        self.cache.changed(name)
                        self.bucket.remember(name, None)
                elif status not in (HEARTBEAT, REQUEST_EXPIRED):
                    return  # anything else ends the consumer (deleted, a leader changed...)
                if status == REQUEST_EXPIRED or left == 0:
                    await consumer.request(BATCH, expires=EXPIRES, heartbeat=HEARTBEAT_SECONDS)
                    left = BATCH
        finally:
            self.cache.watching(None)
            await consumer.close()


def _lapse(caches: weakref.WeakSet[ServeCache]) -> None:
    """A connection lost its server: changes made while it is away never come, so no entry counts from now."""
    for cache in list(caches):
        cache.watching(None)
        if isinstance(cache.follower, Follower):
            cache.follower.lost = True


def follow(bucket: Bucket, cache: ServeCache) -> None:
    """Keep ``cache`` current by a watch of ``bucket`` from now on (started if it is not running); on the loop."""
    follower = cache.follower
    if not isinstance(follower, Follower) or follower.task.done():
        cache.follower = Follower(bucket, cache)
