"""Listings that live on the server (docs/design-listing.md), asyncio, Django-free.

Two companion streams per bucket: ``NSI_<bucket>`` holds one entry per name under a subject made of the name's
path segments (``names.index_tokens``), ``NSD_<bucket>`` one marker per directory and the state message. A
directory is then a subject filter the server answers in what the answer costs (``multi_last``, nats-server
2.12+ as this project gates batched direct gets). The Object Store's own stream is untouched; the truth stays
its metadata: every row a listing finds is checked against it, and ``fresh()`` first folds every metadata change
stored since the last fold (other clients' writes, deletes, repairs) into the index.

When the index cannot be used (an older server, streams absent or refused, a state not built), ``of()`` says so
once per process and bucket on the ``natsstorage`` logger and returns None: the caller lists the old way
(``natsstorage.index``).

This module keeps one index per process and bucket and is what the rest of the package calls; the index itself
is ``indexsubjects`` (subjects, payloads), ``indexwrites`` (streams, state, fold, what a save sends) and
``indexreads`` (``fresh()``, ``listdir``, directory ``exists``, the count); ``listingpages`` answers the admin.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Callable

from nats.aio.client import Client

from natsstorage.delivery import BATCH_GETS_SINCE, answers_batches
from natsstorage.exceptions import BucketNotFound, JetStreamError, NatsStorageError, NatsUnavailable, Unusable
from natsstorage.indexreads import INDEX_RECHECK, ServerIndex
from natsstorage.indexsubjects import DIRECTORIES_STREAM, ENTRIES_STREAM, FORMAT
from natsstorage.objectstore import Bucket

logger = logging.getLogger("natsstorage")

_indexes: weakref.WeakKeyDictionary[Client, dict[str, ServerIndex]] = weakref.WeakKeyDictionary()
_warned: set[str] = set()


async def _found(bucket: Bucket) -> ServerIndex:
    """This process's view of the bucket's index, looked for again when unusable for ``INDEX_RECHECK`` s."""
    nc = await bucket.connection()
    indexes = _indexes.setdefault(nc, {})
    index = indexes.get(bucket.name)
    if index is None:
        index = indexes[bucket.name] = ServerIndex(bucket)
    if _due(index):
        async with index._looking:
            if _due(index):
                await index.look()
    index.bucket = bucket
    return index


def _due(index: ServerIndex) -> bool:
    """Whether an index found unusable is to be looked for again."""
    return index.reason is not None and asyncio.get_running_loop().time() - index.checked >= INDEX_RECHECK


async def of(bucket: Bucket) -> ServerIndex | None:
    """The bucket's index, current as of this call (``fresh()``), for a listing; None: list the old way.

    ``listing="process"`` never uses it; ``"server"`` raises ``Unusable`` instead of falling back.
    """
    if bucket.listing == "process":
        return None
    index = await _found(bucket)
    if index.reason is None:
        try:
            await index.fresh()
            return index
        except Unusable as why:
            index.reason = str(why)
            index.checked = asyncio.get_running_loop().time()
        except BucketNotFound:
            if not await bucket.exists():
                raise
            index.present, index.reason = False, "its streams are gone"
            index.checked = asyncio.get_running_loop().time()
        except (NatsUnavailable, JetStreamError) as error:
            if not bucket.stream.replicated:  # one server: the bucket's too
                raise
            await bucket.stream_info()  # (raises when the bucket does not answer either)
            index.present, index.reason = False, f"its streams do not answer ({error})"  # their server is down
            index.checked = asyncio.get_running_loop().time()
    if bucket.listing == "server":
        raise Unusable(f"NATS bucket {bucket.name!r}: no server-side listing index ({index.reason})")
    await _warn(bucket, index.reason or "")
    return None


async def _warn(bucket: Bucket, reason: str) -> None:
    if bucket.name in _warned:
        return
    _warned.add(bucket.name)
    try:
        subjects = int((await bucket.stream_info())["state"].get("num_subjects", 0))
        holds = f"; this bucket's stream holds {subjects:,} subjects, about two per object"
    except NatsStorageError:
        holds = ""
    logger.warning(
        "NATS bucket %r: no server-side listing index (%s); listdir() and exists() of a missing name read every "
        "name into this process once (about 2 s and 24 MiB per 100,000 names%s). Run `manage.py natsos_index %s` "
        "with an account that may create streams %s and %s.",
        bucket.name,
        reason,
        holds,
        bucket.name,
        ENTRIES_STREAM.format(bucket=bucket.name),
        DIRECTORIES_STREAM.format(bucket=bucket.name),
    )


async def announce(bucket: Bucket, nc: Client, name: str, nuid: str, size: int) -> list[str]:
    """What a save sends to the index right before its metadata (nothing when the bucket has no index); the
    directories it marked, for ``marked`` after the metadata's acknowledgement."""
    if bucket.listing == "process":
        return []
    index = _indexes.get(nc, {}).get(bucket.name)
    if index is None or _due(index):  # else taken as found (or as absent, until due): a save asks nothing more
        index = await _found(bucket)
    if not index.present:
        return []
    return await index.announce(nc, name, nuid, size)


def marked(bucket: Bucket, nc: Client, directories: list[str]) -> None:
    """The metadata sent after ``announce``'s markers was acknowledged: they reached the server before it."""
    index = _indexes.get(nc, {}).get(bucket.name) if directories else None
    if index is not None:
        index.mark(directories)


async def forget(bucket: Bucket) -> None:
    """Forget what this process knows of the bucket's index: it is looked for again at the next use."""
    _warned.discard(bucket.name)
    for indexes in list(_indexes.values()):
        indexes.pop(bucket.name, None)


async def drop(bucket: Bucket) -> None:
    """Delete the bucket's companion streams (the bucket is destroyed, or goes back to the old way)."""
    await ServerIndex(bucket).drop()
    await forget(bucket)


async def build(bucket: Bucket, progress: Callable[[int, int], None] | None = None) -> int:
    """Make the bucket's index, or finish the one a previous run left: one pass over every name's metadata,
    resumable (``build_after`` moves on batch by batch); the number of entries it holds.
    ``progress(names, left)`` after each batch."""
    nc = await bucket.connection()
    if not answers_batches(nc):
        since = ".".join(map(str, BATCH_GETS_SINCE))
        raise Unusable(f"nats-server {nc.connected_server_version} cannot hold a listing index ({since} or later can)")
    index = ServerIndex(bucket)
    objects = await bucket.stream_info()
    try:
        found = await index.state(nc)
    except BucketNotFound:
        found = None
    state = found[0] if found else {}
    if state.get("v") != FORMAT or state.get("created") != objects.get("created"):
        await index.create(empty=True, built=False)
        state = {}
    if not state.get("built"):
        upto = int(state.get("build_upto") or objects["state"].get("last_seq", 0))
        await index.set_state(nc, {"build_upto": upto}, moves="build_upto")
        after = int(state.get("build_after") or 0)
        await index.fold(
            nc, after, upto, lambda seq: index.set_state(nc, {"build_after": seq}, moves="build_after"), progress
        )
        await index.set_state(nc, {"folded": upto, "built": True})
    await forget(bucket)
    await index.fresh()
    return await index.count()
