"""Object Store links (nats.go's ``AddLink``, the NATS CLI's ``nats object link``): followed once, as nats.go does."""

from __future__ import annotations

import errno
from collections.abc import Callable

from natsstorage.exceptions import NatsStorageError
from natsstorage.objectstore import Bucket, ObjectInfo


class LinkRefused(NatsStorageError):
    """A link that is not followed: to a whole bucket, to another link, or to a bucket this project does not serve."""


async def follow(
    bucket: Bucket, link: ObjectInfo, buckets: Callable[[str], Bucket | None]
) -> tuple[Bucket, ObjectInfo]:
    """The bucket and live metadata of the object ``link`` names.

    ``buckets(name)``: the bucket of that name this project serves, or None; a link into the
    same bucket needs none. A link to a missing or deleted object is ``FileNotFoundError``.
    """
    target = link.link
    assert target is not None, "follow() of an object that is not a link"
    target_bucket, target_name = target
    about = f"{link.name!r} in bucket {bucket.name!r}"
    if not target_name:
        raise LinkRefused(f"{about} links to the whole bucket {target_bucket!r}, not to an object")
    where = bucket if target_bucket in ("", bucket.name) else buckets(target_bucket)
    if where is None:
        raise LinkRefused(f"{about} links to bucket {target_bucket!r}, which no storage of this project serves")
    info = await where.info(target_name)
    if info is None:
        about = f"{about} links to {target_name!r} in bucket {where.name!r}, which is not there"
        raise FileNotFoundError(errno.ENOENT, about, link.name)
    if info.is_link:
        raise LinkRefused(f"{about} links to another link, {target_name!r}: a link is followed once, as nats.go does")
    return where, info
