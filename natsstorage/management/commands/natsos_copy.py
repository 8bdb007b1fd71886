"""``manage.py natsos_copy --from ALIAS --to ALIAS [PREFIX]``: copy a storage's files into another, resumably."""

from __future__ import annotations

import contextlib
import hashlib
import posixpath
from collections.abc import Iterator
from typing import Any

from django.core.exceptions import SuspiciousFileOperation
from django.core.files.storage import InvalidStorageError, Storage, storages
from django.core.management.base import CommandError, CommandParser

from natsstorage import humanize
from natsstorage.buckettools import BucketTools
from natsstorage.exceptions import NatsStorageError
from natsstorage.management.base import NatsCommand
from natsstorage.names import clean_name
from natsstorage.progress import Progress, ProgressFile
from natsstorage.storage import NatsStorage

HASH_CHUNK_SIZE = 1024 * 1024  # bytes read at a time to hash a file that is not in NATS


class Command(NatsCommand):
    help = (
        "Copy every file of one configured storage (settings.STORAGES alias) into another, e.g. FileSystemStorage "
        "media into a NatsStorage bucket or back. Files already at the destination with the same size and SHA-256 "
        "are skipped, so a second run resumes where the first stopped; a destination file that differs is replaced. "
        "Nothing is ever deleted from the source, and a copy cut short (Ctrl-C, an error) leaves no partial file."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--from", dest="source", required=True, metavar="ALIAS", help="The storage to copy from.")
        parser.add_argument("--to", dest="target", required=True, metavar="ALIAS", help="The storage to copy into.")
        parser.add_argument("prefix", nargs="?", default="", help="Only this directory of the source, e.g. 'docs'.")
        parser.add_argument("--dry-run", action="store_true", help="List what would be copied, and copy nothing.")
        self.add_progress_argument(parser)

    def handle(self, *args: Any, **options: Any) -> None:
        if options["source"] == options["target"]:
            raise CommandError("--from and --to name the same storage: there is nothing to copy")
        source, target = _storage(options["source"]), _storage(options["target"])
        dry_run, verbosity = options["dry_run"], options["verbosity"]
        directory = options["prefix"].strip("/")
        if isinstance(source, NatsStorage):
            files = list(self.bucket_walk(source, directory))
        else:
            files = list(_walk(source, directory))
        progress = self.progress(options, sum(size for _, size in files))
        # A dry run reads the destination, and reading never creates a bucket: a missing one holds nothing.
        target_is_empty = dry_run and isinstance(target, NatsStorage) and not BucketTools(target).bucket_exists()
        copied = skipped = copied_bytes = 0
        self.interrupted = "Interrupted before copying anything; run the command again to resume."
        try:
            for name, size in files:
                try:
                    there = None if target_is_empty else _size_in(target, name)
                    if there == size and _sha256(source, name) == _sha256(target, name):
                        skipped += 1
                        progress.update(size)
                        if verbosity >= 2:
                            self.stdout.write(f"skipped {name} (already there)")
                        continue
                    if dry_run:
                        self.stdout.write(f"would copy {name} ({humanize.size(size)})")
                    else:
                        _copy(source, target, name, progress, replace=there is not None)
                        if verbosity >= 2:
                            self.stdout.write(f"copied {name} ({humanize.size(size)})")
                    copied += 1
                    copied_bytes += size
                    self.interrupted = (
                        f"Interrupted after copying {humanize.count(copied, 'file', 'files')}; "
                        "run the command again to resume."
                    )
                except (OSError, NatsStorageError) as error:
                    raise CommandError(
                        f"copying {name!r} failed: {error}. Copied {copied} file(s) before it; "
                        "run the command again to resume."
                    ) from error
        finally:
            progress.close()
        if verbosity >= 1:
            verb, skip = ("Would copy", "would skip") if dry_run else ("Copied", "skipped")
            copied_files = humanize.count(copied, "file", "files")
            self.stdout.write(
                self.style.SUCCESS(
                    f"{verb} {copied_files} ({humanize.size(copied_bytes)}, {copied_bytes} bytes) "
                    f"from {options['source']!r} to {options['target']!r}; {skip} {skipped} already there."
                )
            )

    def bucket_walk(self, storage: NatsStorage, directory: str) -> Iterator[tuple[str, int]]:
        """(name, size) of every object under ``directory``, by name, from the bucket's listing index;
        names Django code may not use (another client's) are skipped, each with a warning."""
        location = f"{storage.location}/" if storage.location else ""
        for entry in BucketTools(storage).listing(location + (f"{directory}/" if directory else "")):
            name = entry.name[len(location) :]
            try:
                clean_name(name)
                if "\\" in name:
                    raise SuspiciousFileOperation("Django's save() reads a backslash as '/': the copy would be renamed")
            except SuspiciousFileOperation as error:
                self.stderr.write(f"skipped {name!r}: {error}", style_func=self.style.WARNING)
                continue
            yield name, entry.size


def _storage(alias: str) -> Storage:
    try:
        return storages[alias]
    except InvalidStorageError:
        known = ", ".join(repr(name) for name in storages.backends)
        raise CommandError(f"no storage {alias!r} in settings.STORAGES; the aliases are {known}") from None


def _walk(storage: Storage, directory: str) -> Iterator[tuple[str, int]]:
    """(name, size) of every file under ``directory``, depth first, in name order."""
    directories, files = storage.listdir(directory)
    for filename in sorted(files):
        name = posixpath.join(directory, filename)
        yield name, storage.size(name)
    for subdirectory in sorted(directories):
        yield from _walk(storage, posixpath.join(directory, subdirectory))


def _sha256(storage: Storage, name: str) -> bytes:
    if isinstance(storage, NatsStorage):
        return storage.info(name).sha256  # kept in the object's metadata: no need to read the data
    digest = hashlib.sha256()
    with storage.open(name, "rb") as file:
        for chunk in file.chunks(HASH_CHUNK_SIZE):
            digest.update(chunk)
    return digest.digest()


def _size_in(storage: Storage, name: str) -> int | None:
    """The size of the file ``name`` in ``storage``, or None when there is none: one metadata read in a
    NatsStorage (whose exists() of a missing name would read every name, looking for a directory)."""
    if isinstance(storage, NatsStorage):
        try:
            return storage.info(name).size
        except FileNotFoundError:
            return None
    return storage.size(name) if storage.exists(name) else None


def _copy(source: Storage, target: Storage, name: str, progress: Progress, *, replace: bool) -> None:
    if replace:
        target.delete(name)  # it differs; the source is what counts
    with source.open(name, "rb") as file:
        content = ProgressFile(file, name, progress, content_type=getattr(file, "content_type", None))
        try:
            saved = target.save(name, content)
        except BaseException:
            # A NatsStorage publishes nothing unfinished (what is there now is another writer's); a
            # FileSystemStorage writes in place, and leaves a part behind.
            if not isinstance(target, NatsStorage):
                with contextlib.suppress(Exception):
                    if target.exists(name):
                        target.delete(name)
            raise
    if saved != name:
        raise CommandError(f"{name!r} was saved as {saved!r}: the destination created {name!r} meanwhile")
