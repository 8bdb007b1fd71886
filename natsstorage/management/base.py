"""What every ``natsos_*`` command shares: reaching a bucket, errors as ``CommandError`` that say what to fix,
Ctrl-C and a closed stdout handled as Unix tools handle them, and the progress bar."""

from __future__ import annotations

import os
import sys
from typing import Any

from django.core.exceptions import ImproperlyConfigured, SuspiciousFileOperation
from django.core.management.base import BaseCommand, CommandError, CommandParser

from natsstorage.buckettools import BucketTools
from natsstorage.exceptions import BucketNotFound, NatsUnavailable
from natsstorage.objectstore import BUCKET_NAME_RULE, valid_bucket_name
from natsstorage.progress import Progress
from natsstorage.storage import NatsStorage

LIST_HINT = "manage.py natsos_status lists the buckets"
SERVER_HINT = "is nats-server running there? NATS_URL or settings.NATSSTORAGE['servers'] says where it is"
INTERRUPTED_STATUS = 130  # 128 + SIGINT: what a shell reports for a job stopped by Ctrl-C
# A reader that stops reading (``| head``) is no error of ours: exit quietly and successfully, as ripgrep does.
CLOSED_STDOUT_STATUS = 0


def check_bucket_name(bucket: str) -> None:
    if not valid_bucket_name(bucket):
        raise CommandError(f"invalid bucket name {bucket!r}: use {BUCKET_NAME_RULE}")


def plain(text: str) -> str:
    return text


class NatsCommand(BaseCommand):
    """A command on a NATS bucket: natsstorage's errors become ``CommandError`` naming what to fix.

    From the shell, Ctrl-C ends it with status 130 and the one line ``interrupted`` (a command
    sets it to say what was left undone), and a closed stdout ends it quietly.
    """

    interrupted = "Interrupted."
    missing_bucket_hint = LIST_HINT

    def run_from_argv(self, argv: list[str]) -> None:
        try:
            super().run_from_argv(argv)
        except KeyboardInterrupt:
            sys.stderr.write(self.interrupted + "\n")
            sys.stderr.flush()
            raise SystemExit(INTERRUPTED_STATUS) from None
        except BrokenPipeError:
            # Python would flush stdout again at exit and complain: point it at /dev/null first.
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            raise SystemExit(CLOSED_STDOUT_STATUS) from None

    def execute(self, *args: Any, **options: Any) -> str | None:
        try:
            return super().execute(*args, **options)
        except BrokenPipeError:
            raise
        except BucketNotFound as error:
            raise CommandError(f"{error} ({self.missing_bucket_hint})") from error
        except NatsUnavailable as error:
            raise CommandError(f"{error} ({SERVER_HINT})") from error
        except (OSError, SuspiciousFileOperation, ImproperlyConfigured) as error:
            raise CommandError(str(error) or type(error).__name__) from error

    def storage(self, bucket: str, **options: Any) -> NatsStorage:
        """The bucket's storage, from the project's settings; it never creates the bucket unless told."""
        check_bucket_name(bucket)
        options.setdefault("create_bucket", False)
        options.setdefault("location", "")  # commands name objects as the bucket does
        return NatsStorage(bucket, **options)

    def tools(self, bucket: str, **options: Any) -> BucketTools:
        """The tools of ``storage(bucket, **options)``'s bucket: names as the bucket has them, the bucket as a whole."""
        return BucketTools(self.storage(bucket, **options))

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

    @staticmethod
    def add_json_argument(parser: CommandParser, item: str) -> None:
        """Every command's ``--json``: JSON Lines, one object per line per item, exact figures."""
        parser.add_argument(
            "--json",
            action="store_true",
            help=f"JSON Lines: one JSON object per {item}, sizes in bytes, times in ISO 8601, durations in seconds.",
        )

    def progress(self, options: dict[str, Any], total: int | None, label: str = "") -> Progress:
        enabled = not options["no_progress"] and self.stderr.isatty()
        return Progress(self.stderr, total, enabled=enabled, label=label)
