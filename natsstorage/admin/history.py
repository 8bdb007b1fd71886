"""Objects in the admin's "Recent actions" and history, as the admin's own additions, changes and deletions are.

Each entry is about a ``NatsObject`` ("NATS object") whose id and label are
``bucket/name``; its admin URL (``natsstorage_natsobject_change``) leads to
the object's page.
"""

from __future__ import annotations

from django.contrib.admin.models import ADDITION, CHANGE, DELETION, LogEntry
from django.contrib.contenttypes.models import ContentType
from django.http import HttpRequest

from natsstorage.models import NatsObject

ACTIONS = {
    ADDITION: "Uploaded the object “{name}” to the NATS bucket “{bucket}”.",
    CHANGE: "Changed {what} of the object “{name}” in the NATS bucket “{bucket}”.",
    DELETION: "Deleted the object “{name}” from the NATS bucket “{bucket}”.",
}


def object_id(bucket: str, name: str) -> str:
    return f"{bucket}/{name}"


def split_object_id(key: str) -> tuple[str, str]:
    """``bucket/name`` back into the bucket and the object's name (which may hold more slashes)."""
    bucket, _, name = key.partition("/")
    return bucket, name


def log(request: HttpRequest, action: int, bucket: str, name: str, *, what: str = "") -> None:
    key = object_id(bucket, name)
    LogEntry.objects.create(
        user=request.user,  # type: ignore[misc]  # signed in: admin_view lets no one else in
        content_type=ContentType.objects.get_for_model(NatsObject, for_concrete_model=False),
        object_id=key,
        object_repr=key[: LogEntry._meta.get_field("object_repr").max_length],
        action_flag=action,
        change_message=ACTIONS[action].format(bucket=bucket, name=name, what=what),
    )
