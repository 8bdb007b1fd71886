"""What the object pages share: reaching a bucket as they read it, the section they are shown in, their URLs,
and who asks in JSON."""

from __future__ import annotations

from typing import Any, ClassVar, Protocol

from django.http import Http404, HttpRequest
from django.urls import reverse
from django.utils.text import Truncator

from natsstorage.buckettools import BucketTools
from natsstorage.exceptions import BucketNotFound
from natsstorage.objectstore import BUCKET_NAME_RULE, Bucket, ObjectInfo, valid_bucket_name
from natsstorage.storage import NatsStorage


class Section(Protocol):
    """What a page asks of the section that shows it (``buckets.BucketAdmin``, which imports the pages)."""

    list_per_page: ClassVar[int]

    def context(self, request: HttpRequest, title: str, **context: Any) -> dict[str, Any]: ...
    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool: ...
    def has_edit_permission(self, request: HttpRequest) -> bool: ...
    def message_user(self, request: HttpRequest, message: str, level: int | str = ...) -> None: ...


def bucket_storage(bucket: str, **options: Any) -> NatsStorage:
    """The bucket as the pages read it: its own names, never created."""
    if not valid_bucket_name(bucket):
        raise Http404(f"“{Truncator(bucket).chars(100)}” is not a bucket name: bucket names have {BUCKET_NAME_RULE}.")
    return NatsStorage(bucket, create_bucket=False, location="", **options)


def any_bucket(bucket: str) -> Bucket | None:
    """Where a link may lead in the admin: any bucket (staff see them all), not only those storages serve."""
    return bucket_storage(bucket).bucket if valid_bucket_name(bucket) else None


def bucket_missing(bucket: str) -> Http404:
    return Http404(f"There is no bucket “{bucket}” on the NATS server.")


def find(bucket: str, name: str) -> tuple[NatsStorage, ObjectInfo]:
    storage = bucket_storage(bucket)
    try:
        return storage, BucketTools(storage).object_info(name)  # any name the bucket holds, a link as itself
    except BucketNotFound:
        raise bucket_missing(bucket) from None
    except FileNotFoundError:
        raise Http404(f"There is no object “{name}” in bucket “{bucket}”.") from None


def objects_url(bucket: str) -> str:
    return reverse("admin:natsstorage_bucket_objects", kwargs={"bucket": bucket})


def object_url(bucket: str, name: str) -> str:
    return reverse("admin:natsstorage_bucket_object", kwargs={"bucket": bucket, "name": name})


def wants_json(request: HttpRequest) -> bool:
    """The upload form's script asks with XMLHttpRequest and reads JSON answers."""
    return request.headers.get("X-Requested-With") == "XMLHttpRequest"
