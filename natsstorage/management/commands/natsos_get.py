"""``manage.py natsos_get BUCKET NAME [PATH|-]``: write an object to a local file or stdout."""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from typing import IO, Any

from django.core.management.base import CommandError, CommandParser

from natsstorage import humanize
from natsstorage.management.base import NatsCommand
from natsstorage.progress import Progress
from natsstorage.storage import NatsStorage

PART_SUFFIX = ".part"  # a download in progress, renamed to PATH once complete and verified


class Command(NatsCommand):
    help = (
        "Write the object NAME of a NATS Object Store bucket to PATH (default: NAME's last segment in the current "
        "directory; '-' for stdout), streaming with bounded memory and checking its size and SHA-256. The data goes "
        "to a temporary file beside PATH, renamed only once complete, so a failed download leaves nothing behind. "
        "An existing PATH is refused unless --overwrite is given."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("bucket", help="The bucket's name.")
        parser.add_argument("name", help="The object's name.")
        parser.add_argument("path", nargs="?", help="Where to write it, or '-' for stdout.")
        parser.add_argument("--overwrite", action="store_true", help="Replace PATH when it already exists.")
        self.add_progress_argument(parser)

    def handle(self, *args: Any, **options: Any) -> None:
        storage = self.storage(options["bucket"])
        name = options["name"]
        path = options["path"] or name.replace("\\", "/").rsplit("/", 1)[-1]
        if path == "-":
            out: Any = options.get("stdout") or sys.stdout
            self.copy(storage, name, getattr(out, "buffer", out), options)
            out.flush()
            return
        if os.path.isdir(path):
            path = os.path.join(path, name.replace("\\", "/").rsplit("/", 1)[-1])
        if os.path.exists(path) and not options["overwrite"]:
            raise CommandError(f"{path!r} already exists; use --overwrite to replace it")
        directory, filename = os.path.split(os.path.abspath(path))
        descriptor, part = tempfile.mkstemp(dir=directory, prefix=f".{filename}.", suffix=PART_SUFFIX)
        try:
            with os.fdopen(descriptor, "wb") as target:
                size = self.copy(storage, name, target, options)
            os.replace(part, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(part)
            raise
        if options["verbosity"] >= 1:
            self.stdout.write(f"Wrote {name!r} from bucket {options['bucket']!r} to {path} ({humanize.size(size)})")

    def copy(self, storage: NatsStorage, name: str, target: IO[bytes], options: dict[str, Any]) -> int:
        with storage.open_object(name) as source:  # any name the bucket holds
            progress: Progress = self.progress(options, source.size, label=name)
            try:
                for chunk in source.chunks(source.info.chunk_size if source.info else None):
                    target.write(chunk)
                    progress.update(len(chunk))
            finally:
                progress.close()
        return progress.done
