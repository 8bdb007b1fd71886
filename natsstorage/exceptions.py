"""Errors raised by natsstorage.

Every error is an ``OSError`` so code that already handles storage I/O
failures handles these too. Missing objects raise the built-in
``FileNotFoundError`` and bad names Django's ``SuspiciousFileOperation``.
Messages name the bucket, the object and the limit involved, never a secret.
"""

from __future__ import annotations


class NatsStorageError(OSError):
    """Base class of every natsstorage error."""


class NatsUnavailable(NatsStorageError):
    """No NATS server could be reached, or it stopped answering in time."""


class JetStreamError(NatsStorageError):
    """The NATS server refused a JetStream request; ``code`` is its JetStream error code (``err_code``)."""

    def __init__(self, message: str, *, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


class BucketNotFound(JetStreamError):
    """The bucket does not exist and this storage may not create it."""


class BucketFull(JetStreamError):
    """The bucket's ``max_bytes`` limit would be exceeded."""


class BucketSealed(JetStreamError):
    """The bucket is sealed: it can be read but never changed."""


class ObjectChanged(JetStreamError):
    """Another writer changed the object while this operation ran."""


class Unusable(NatsStorageError):
    """A bucket's listing index on the server cannot answer now (``listing="server"``); the message says why."""


class TooBroad(NatsStorageError):
    """A listing page that would read more of the bucket than its bound; the message says what to narrow."""


class CorruptObject(NatsStorageError):
    """The data read does not match the object's size, chunk count or SHA-256 digest."""


class TooLarge(NatsStorageError, ValueError):
    """A name, subject or message over what nats-server takes (its ``max_control_line``, ``max_payload``):
    refused before it is sent, for the server would close the connection, and every transfer on it, over it."""
