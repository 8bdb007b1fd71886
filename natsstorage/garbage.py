"""Garbage: chunks no object's metadata points to, and their removal (``natsos_gc``)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from natsstorage.objectstore import ALL_CHUNKS, CHUNK_SUBJECT, Bucket, parse_time


@dataclass(frozen=True)
class OrphanChunks:
    """The chunks of one upload that no live object's metadata points to (see ``Bucket.orphans``)."""

    subject: str
    nuid: str
    chunks: int
    bytes: int  # chunk data, counted as every client writes it: equal chunks but the last
    newest: datetime  # when its newest chunk was stored, by the server's clock


async def orphans(bucket: Bucket, *, min_age: timedelta) -> list[OrphanChunks]:
    """Chunk subjects no live object points to, whose newest chunk is at least ``min_age`` old.

    Left by writers killed (or cut off from the server) between their first
    chunk and their metadata, and by deletions and replacements whose purge
    failed. Chunk subjects are listed before the metadata is read, so an
    object committed meanwhile is seen as live; ``min_age`` spares uploads
    still in progress, whose newest chunk is always recent.
    """
    nc = await bucket.connection()
    counts: dict[str, int] = {}
    while True:  # the server pages the subjects of a large stream
        info = await bucket.stream.info(nc, subjects_filter=ALL_CHUNKS.format(bucket=bucket.name), offset=len(counts))
        page = info["state"].get("subjects") or {}
        counts.update(page)
        if not page or len(counts) >= info.get("total", 0):
            break
    live = {info.nuid async for info in bucket.objects()}
    prefix = CHUNK_SUBJECT.format(bucket=bucket.name, nuid="")
    now = datetime.now(UTC)
    found = []
    for subject, chunks in sorted(counts.items()):
        nuid = subject.removeprefix(prefix)
        if nuid in live:
            continue
        last = await bucket.stream.direct_get(nc, {"last_by_subj": subject})
        if last is None:  # purged meanwhile
            continue
        newest = parse_time(last["time"])
        if now - newest < min_age:
            continue
        size = len(last["data"])
        if chunks > 1:
            first = await bucket.stream.get_message(nc, {"seq": 0, "next_by_subj": subject})
            size += (chunks - 1) * len(first["data"]) if first is not None else 0
        found.append(OrphanChunks(subject=subject, nuid=nuid, chunks=chunks, bytes=size, newest=newest))
    return found


async def purge(bucket: Bucket, orphans: list[OrphanChunks]) -> int:
    """Purge what ``orphans`` found; the number of chunk messages removed."""
    nc = await bucket.connection()
    return sum([await bucket.stream.purge(nc, orphan.subject) for orphan in orphans])
