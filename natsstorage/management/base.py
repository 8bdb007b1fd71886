"""What every ``natsos_*`` command shares: reaching a bucket, errors as ``CommandError``, the progress bar."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ImproperlyConfigured, SuspiciousFileOperation
from django.core.management.base import BaseCommand, CommandError, CommandParser

from natsstorage.exceptions import BucketNotFound
from natsstorage.objectstore import BUCKET_NAME_RULE, valid_bucket_name
from natsstorage.progress import Progress
from natsstorage.storage import NatsStorage

LIST_HINT = "manage.py natsos_status lists the buckets"


def check_bucket_name(bucket: str) -> None:
    if not valid_bucket_name(bucket):
        raise CommandError(f"invalid bucket name {bucket!r}: use {BUCKET_NAME_RULE}")


def plain(text: str) -> str:
    return text


class NatsCommand(BaseCommand):
    """A command on a NATS bucket: natsstorage's errors become ``CommandError`` naming what to fix."""

    def execute(self, *args: Any, **options: Any) -> str | None:
        try:
            return super().execute(*args, **options)
        except BucketNotFound as error:
            raise CommandError(f"{error} ({LIST_HINT})") from error
        except (OSError, SuspiciousFileOperation, ImproperlyConfigured) as error:
            raise CommandError(str(error) or type(error).__name__) from error

    def storage(self, bucket: str, **options: Any) -> NatsStorage:
        """The bucket's storage, from the project's settings; it never creates the bucket unless told."""
        check_bucket_name(bucket)
        options.setdefault("create_bucket", False)
        options.setdefault("location", "")  # commands name objects as the bucket does
        return NatsStorage(bucket, **options)

    def note(self, message: str) -> None:
        """Say something on stderr, which Django otherwise colours as an error on a terminal."""
        self.stderr.write(message, style_func=plain)

    @staticmethod
    def add_progress_argument(parser: CommandParser) -> None:
        parser.add_argument(
            "--no-progress",
            action="store_true",
            help="Draw no progress bar (none is drawn anyway when stderr is not a terminal).",
        )

    def progress(self, options: dict[str, Any], total: int | None, label: str = "") -> Progress:
        enabled = not options["no_progress"] and self.stderr.isatty()
        return Progress(self.stderr, total, enabled=enabled, label=label)
