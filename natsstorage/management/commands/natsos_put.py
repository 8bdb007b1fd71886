"""``manage.py natsos_put BUCKET NAME PATH``: store a local file (or stdin) as an object."""

from __future__ import annotations

import os
import sys
from typing import Any

from django.core.management.base import CommandError, CommandParser

from natsstorage import NatsStorage, humanize
from natsstorage.buckettools import BucketTools
from natsstorage.management.base import NatsCommand
from natsstorage.progress import ProgressFile


class Command(NatsCommand):
    stealth_options = ("stdin",)
    help = (
        "Store the file at PATH ('-' for stdin) as the object NAME in a NATS Object Store bucket, streaming with "
        "bounded memory. An existing NAME is refused unless --overwrite is given; a missing bucket is an error "
        "unless --create-bucket is given. Interrupted (Ctrl-C), it stores nothing."
    )
    missing_bucket_hint = "use --create-bucket to create it; manage.py natsos_status lists the buckets"

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("bucket", help="The bucket's name.")
        parser.add_argument("name", help="The object's name, e.g. 'docs/report.pdf'.")
        parser.add_argument("path", help="The local file to store, or '-' for stdin.")
        parser.add_argument("--overwrite", action="store_true", help="Replace NAME when it already exists.")
        parser.add_argument(
            "--create-bucket", action="store_true", help="Create the bucket (from the project's settings) if missing."
        )
        parser.add_argument("--content-type", help="The object's Content-Type (default: guessed from NAME).")
        self.add_progress_argument(parser)

    def handle(self, *args: Any, **options: Any) -> None:
        storage = self.storage(
            options["bucket"], create_bucket=options["create_bucket"], file_overwrite=options["overwrite"]
        )
        name, path = options["name"], options["path"]
        self.interrupted = f"Interrupted: nothing was stored as {name!r}."
        if not options["overwrite"] and _stored(storage, name):
            raise CommandError(
                f"{name!r} already exists in bucket {options['bucket']!r}; use --overwrite to replace it"
            )
        if path == "-":
            source, total = options.get("stdin") or sys.stdin.buffer, None
            saved = self.save(storage, name, source, total, options)
        else:
            if os.path.isdir(path):
                raise CommandError(f"{path!r} is a directory; natsos_copy copies whole directories")
            with open(path, "rb") as source:
                saved = self.save(storage, name, source, os.fstat(source.fileno()).st_size, options)
        size = storage.size(saved)
        if options["verbosity"] >= 1:
            message = f"Stored {saved!r} in bucket {options['bucket']!r} ({humanize.size(size)})"
            if path == "-":  # stdout may be the next command's input
                self.note(message)
            else:
                self.stdout.write(message)
        if saved != name:
            self.stderr.write(f"{name!r} was taken meanwhile: stored as {saved!r}", style_func=self.style.WARNING)

    def save(self, storage: Any, name: str, source: Any, total: int | None, options: dict[str, Any]) -> str:
        progress = self.progress(options, total, label=name)
        try:
            return str(storage.save(name, ProgressFile(source, name, progress, content_type=options["content_type"])))
        finally:
            progress.close()


def _stored(storage: NatsStorage, name: str) -> bool:
    """Whether an object holds ``name``: one metadata read (``exists()`` would also look for a directory,
    which in a fresh process means reading every name in the bucket)."""
    try:
        BucketTools(storage).object_info(storage.key(name))  # a link is an object too: not followed
    except FileNotFoundError:
        return False
    return True
