"""``manage.py natsos_get BUCKET NAME [PATH|-]``: write an object to a local file or stdout."""

from __future__ import annotations

import contextlib
import os
import stat
import sys
import tempfile
from typing import IO, Any

from django.core.management.base import CommandError, CommandParser

from natsstorage import humanize
from natsstorage.buckettools import BucketTools
from natsstorage.management.base import NatsCommand
from natsstorage.progress import Progress

PART_SUFFIX = ".part"  # a download in progress, renamed to PATH once complete and verified


class Command(NatsCommand):
    help = (
        "Write the object NAME of a NATS Object Store bucket to PATH (default: NAME's last segment in the current "
        "directory; '-' for stdout), streaming with bounded memory and checking its size and SHA-256. The data goes "
        "to a temporary file beside PATH, renamed only once complete, so a failed or interrupted download leaves "
        "nothing behind. A new file's mode follows the umask; an existing PATH is refused unless --overwrite is "
        "given, and keeps its mode."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("bucket", help="The bucket's name.")
        parser.add_argument("name", help="The object's name.")
        parser.add_argument("path", nargs="?", help="Where to write it, or '-' for stdout.")
        parser.add_argument("--overwrite", action="store_true", help="Replace PATH when it already exists.")
        self.add_progress_argument(parser)

    def handle(self, *args: Any, **options: Any) -> None:
        tools = self.tools(options["bucket"])
        name = options["name"]
        path = options["path"] or name.replace("\\", "/").rsplit("/", 1)[-1]
        self.interrupted = "Interrupted." if path == "-" else f"Interrupted: nothing was written to {path}."
        if path == "-":
            out: Any = options.get("stdout") or sys.stdout
            self.copy(tools, name, getattr(out, "buffer", out), options)
            out.flush()
            return
        if os.path.isdir(path):
            path = os.path.join(path, name.replace("\\", "/").rsplit("/", 1)[-1])
        if os.path.exists(path) and not options["overwrite"]:
            raise CommandError(f"{path!r} already exists; use --overwrite to replace it")
        directory, filename = os.path.split(os.path.abspath(path))
        mode = file_mode(path)
        descriptor, part = tempfile.mkstemp(dir=directory, prefix=f".{filename}.", suffix=PART_SUFFIX)
        try:
            with os.fdopen(descriptor, "wb") as target:
                size = self.copy(tools, name, target, options)
            os.chmod(part, mode)  # mkstemp's 0600 was for the download in progress, not for the file
            os.replace(part, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(part)
            raise
        if options["verbosity"] >= 1:
            self.stdout.write(f"Wrote {name!r} from bucket {options['bucket']!r} to {path} ({humanize.size(size)})")

    def copy(self, tools: BucketTools, name: str, target: IO[bytes], options: dict[str, Any]) -> int:
        try:
            source = tools.open_object(name)  # any name the bucket holds
        except FileNotFoundError as error:
            bucket = tools.bucket.name
            raise CommandError(f"{error} (manage.py natsos_ls {bucket} lists its objects)") from error
        with source:
            progress: Progress = self.progress(options, source.size, label=name)
            try:
                for chunk in source.chunks(source.info.chunk_size if source.info else None):
                    target.write(chunk)
                    progress.update(len(chunk))
            finally:
                progress.close()
        return progress.done


def file_mode(path: str) -> int:
    """The mode ``path`` gets: an existing file's own (as ``cp`` keeps it), else what ``open()`` gives, 0666 less
    the umask."""
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        umask = os.umask(0)  # the only way to read it; set back at once
        os.umask(umask)
        return 0o666 & ~umask
