"""The admin's objects page from the server-side listing index (docs/design-listing.md, "The admin's objects
page"), asyncio, Django-free: a page by name is a walk of directories in name order, a page by size or date one
pass over the entries under the prefix with a bounded heap, a count one request. Each is bounded, and says so
(``TooBroad``) rather than reading a bucket whole."""

from __future__ import annotations

import asyncio
import heapq
from collections.abc import AsyncIterator
from typing import Any, NamedTuple

from nats.aio.client import Client

from natsstorage.delivery import ANSWERS, BATCH_BYTES, Answers, Consumer
from natsstorage.exceptions import TooBroad
from natsstorage.indexreads import ServerIndex
from natsstorage.indexsubjects import (
    ENTRY_ROOT,
    OVERFLOW,
    directory_fits,
    entry_subject,
    marker_subject,
    overflow_home,
    parse_entry,
    subject,
)
from natsstorage.names import index_tokens
from natsstorage.objectstore import ObjectInfo

ADMIN_MAX_OFFSET = 10_000  # rows a page by name may skip: page 100 of 100 rows
ADMIN_SORT_LIMIT = 100_000  # entries a page by size or date may read (about 1 s on a 2-core box)
CHECKED_AT_ONCE = 1024  # rows checked against the metadata in one request (a multi_last's limit)


class Row(NamedTuple):
    """One entry of the index as a page shows it (its metadata is read for the rows shown)."""

    name: str
    size: int
    mtime_ns: int
    is_link: bool


def _row(data: bytes) -> Row | None:
    """An entry's payload as a row, None when it is not one (anyone may publish to the stream)."""
    found = parse_entry(data)
    if found is None or not isinstance(found.get("s"), int) or not isinstance(found.get("t"), int):
        return None
    return Row(found["n"], found["s"], found["t"], bool(found.get("l")))


def _split(prefix: str) -> tuple[str, list[str]]:
    """The directory part of a search prefix (``""`` or ending in ``/``) and its tokens."""
    directory = prefix[: prefix.rfind("/") + 1]
    return directory, index_tokens(directory[:-1]) if directory else []


def _subtree(index: ServerIndex, tokens: list[str]) -> str:
    """The filter of every entry under a directory of these tokens (its deepest ancestor that fits, if not it)."""
    if not directory_fits(index.bucket.name, tokens):
        tokens = tokens[: overflow_home(index.bucket.name, tokens)]
    return subject(ENTRY_ROOT.format(bucket=index.bucket.name), tokens) + ".>"


async def count(index: ServerIndex, prefix: str) -> int:
    """The names under ``prefix``: the stream's message count, the pending count of a consumer on a directory's
    subtree, or for a prefix ending inside a segment, the walk of it (at most ``ADMIN_SORT_LIMIT`` rows)."""
    if not prefix:
        return await index.count()
    nc = await index.bucket.connection()
    directory, tokens = _split(prefix)
    if directory == prefix and directory_fits(index.bucket.name, tokens):
        return await _count_subtree(index, nc, tokens)
    counted = 0
    handed = await _overflowing(index, nc, directory)
    async for _ in _walk(index, nc, directory, prefix, handed, reverse=False, skip=[0]):
        counted += 1
        if counted > ADMIN_SORT_LIMIT:
            raise TooBroad(
                f"counting the objects whose name starts with {prefix!r} reads more than {ADMIN_SORT_LIMIT:,} "
                "entries; search a prefix that ends with '/', or a narrower one"
            )
    return counted


async def objects(index: ServerIndex, prefix: str) -> AsyncIterator[list[ObjectInfo]]:
    """Every live object whose name starts with ``prefix``, by name, up to ``CHECKED_AT_ONCE`` at a time, each
    checked with its metadata: a walk of directories, so memory holds a directory's entries, not the bucket's."""
    nc = await index.bucket.connection()
    directory, _ = _split(prefix)
    handed = await _overflowing(index, nc, directory)
    rows: list[Row] = []
    async for row in _walk(index, nc, directory, prefix, handed, reverse=False, skip=[0]):
        rows.append(row)
        if len(rows) == CHECKED_AT_ONCE:
            yield await _checked(index, nc, rows)
            rows = []
    if rows:
        yield await _checked(index, nc, rows)


async def _checked(index: ServerIndex, nc: Client, rows: list[Row]) -> list[ObjectInfo]:
    alive = await index.live(nc, [row.name for row in rows])
    return [alive[row.name] for row in rows if row.name in alive]


async def _count_subtree(index: ServerIndex, nc: Client, tokens: list[str]) -> int:
    """The entries under a directory that fits: a consumer's pending count as created (the server walks the
    subjects under it), then deleted."""
    consumer = Consumer(index.entries, {"filter_subject": _subtree(index, tokens), "deliver_policy": "all"})
    try:
        return int((await consumer.create(nc))["num_pending"])
    finally:
        await consumer.close()


async def page(
    index: ServerIndex, prefix: str, order: str, descending: bool, offset: int, limit: int
) -> tuple[list[Row], int, int | None]:
    """Rows ``offset`` to ``offset + limit`` under ``prefix`` by ``order`` ("name", "size", "mtime"), the count,
    and the total size when the page read every entry (else None)."""
    total = await count(index, prefix)
    nc = await index.bucket.connection()
    if offset >= total:
        return [], total, None
    if order == "name":
        if offset > ADMIN_MAX_OFFSET:
            raise TooBroad(
                f"pages by name go {ADMIN_MAX_OFFSET:,} objects deep, and this one starts at object {offset + 1:,}; "
                "narrow the search"
            )
        rows: list[Row] = []
        directory, _ = _split(prefix)
        handed = await _overflowing(index, nc, directory)
        if limit:  # a full page stops the walk: the next row may be a directory away
            walk = _walk(index, nc, directory, prefix, handed, reverse=descending, skip=[offset], known=total)
            async for row in walk:
                rows.append(row)
                if len(rows) == limit:
                    break
        return rows, total, None
    if total > ADMIN_SORT_LIMIT:
        by = "size" if order == "size" else "date"
        raise TooBroad(
            f"sorting by {by} reads every object under this prefix ({total:,}), more than {ADMIN_SORT_LIMIT:,}; "
            "search a narrower one"
        )
    return await _sorted(index, nc, prefix, order, descending, offset + limit, offset)


async def _sorted(
    index: ServerIndex, nc: Client, prefix: str, order: str, descending: bool, keep: int, skip: int
) -> tuple[list[Row], int, int]:
    """One pass over the entries under ``prefix``, keeping the first ``keep`` by ``order`` (a bounded heap)."""
    _, tokens = _split(prefix)
    by_size = order == "size"
    sign = -1 if descending else 1
    heap: list[tuple[int, _Descending, Row]] = []  # the kept rows, the worst first: (-sign * key, negated name order)
    counted = size = 0
    subject_filter, seq = _subtree(index, tokens), 1
    while True:
        body = {"seq": seq, "next_by_subj": subject_filter, "batch": ANSWERS, "max_bytes": BATCH_BYTES}
        got = await Answers(index.entries).ask(nc, body)
        for message in got:
            row = _row(message.data)
            if row is None or not row.name.startswith(prefix):
                continue
            counted, size = counted + 1, size + row.size
            item = (-sign * (row.size if by_size else row.mtime_ns), _Descending(row.name), row)
            if len(heap) < keep:
                heapq.heappush(heap, item)
            elif keep and item > heap[0]:
                heapq.heapreplace(heap, item)
        if not got or not got[-1].pending:
            break
        seq = got[-1].seq + 1
    ranked = [row for *_, row in sorted(heap, reverse=True)]
    return ranked[skip:], counted, size


class _Descending(str):
    """A name that sorts backwards: ties on size or date go by name, from A, in a heap kept worst first."""

    __slots__ = ()

    def __lt__(self, other: str) -> bool:
        return str.__gt__(self, other)

    def __gt__(self, other: str) -> bool:
        return str.__lt__(self, other)


async def _overflowing(index: ServerIndex, nc: Client, directory: str) -> list[Row]:
    """The entries under a directory that does not fit, which its walk cannot read by its subject: the overflow
    entries at its home under it (none for a directory that fits)."""
    bucket = index.bucket.name
    tokens = index_tokens(directory[:-1]) if directory else []
    if directory_fits(bucket, tokens):
        return []
    home = subject(ENTRY_ROOT.format(bucket=bucket), tokens[: overflow_home(bucket, tokens)])
    rows = []
    for got in await index.read(nc, index.entries, [home + f".{OVERFLOW}.*"]):
        row = _row(got.data)
        if row is not None and row.name.startswith(directory) and entry_subject(bucket, row.name) == got.subject:
            rows.append(row)
    return rows


async def _walk(
    index: ServerIndex,
    nc: Client,
    directory: str,
    start: str,
    extra: list[Row],
    *,
    reverse: bool,
    skip: list[int],
    known: int | None = None,
) -> AsyncIterator[Row]:
    """The rows under ``directory`` whose names start with ``start``, in name order (``reverse``: backwards),
    after the first ``skip[0]`` (which it counts down): a subdirectory that holds no more than that is skipped
    by its count, unread. Given how many rows there are (``known``), the last subdirectory's count is what its
    siblings and the files leave, not asked: that one is often the largest (the server walks what it counts).

    A directory's files and overflow entries are read with its subdirectories' markers; overflow entries of
    deeper names (``extra``) are handed down to the subdirectory they are under."""
    bucket = index.bucket.name
    tokens = index_tokens(directory[:-1]) if directory else []
    rows = list(extra)
    subdirectories: set[str] = set()
    if directory_fits(bucket, tokens):
        root = subject(ENTRY_ROOT.format(bucket=bucket), tokens)
        entries, markers = await asyncio.gather(
            index.read(nc, index.entries, [root + ".*", root + f".{OVERFLOW}.*"]),
            index.read(nc, index.directories, [marker_subject(bucket, tokens) + ".*"]),
        )
        for got in entries:
            row = _row(got.data)
            if row is not None and row.name.startswith(directory) and entry_subject(bucket, row.name) == got.subject:
                rows.append(row)
        for got in markers:
            marked: Any = (parse_entry(got.data) or {}).get("n")
            head = marked[len(directory) :] if isinstance(marked, str) and marked.startswith(directory) else ""
            if head.endswith("/") and "/" not in head[:-1]:
                subdirectories.add(directory + head)
    files: dict[str, Row] = {}
    deeper: dict[str, list[Row]] = {}
    for row in rows:
        if not row.name.startswith(start):
            continue
        head, slash, _ = row.name[len(directory) :].partition("/")
        if slash:
            deeper.setdefault(directory + head + "/", []).append(row)
        else:
            files[row.name] = row
    subdirectories = {name for name in subdirectories | set(deeper) if name.startswith(start)}
    last = max(subdirectories, key=_Descending if reverse else str, default=None)
    left = None if known is None else known - len(files)  # the rows of the subdirectories not counted yet
    for name in sorted([*files, *subdirectories], reverse=reverse):
        if name in files:
            if skip[0]:
                skip[0] -= 1
                continue
            yield files[name]
            continue
        handed = deeper.get(name, [])
        tokens = index_tokens(name[:-1])
        under = None
        if skip[0] and directory_fits(bucket, tokens):
            if name == last and left is not None:
                under = max(left, len(handed))
            else:
                under = await _count_subtree(index, nc, tokens) + len(handed)
                left = None if left is None else left - under
            if under <= skip[0]:
                skip[0] -= under
                continue
        elif skip[0]:  # walked uncounted: what it holds is not taken off what is left
            left = None
        async for row in _walk(index, nc, name, name, handed, reverse=reverse, skip=skip, known=under):
            yield row
