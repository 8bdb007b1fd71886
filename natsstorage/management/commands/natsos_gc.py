"""``manage.py natsos_gc BUCKET``: find (and with ``--purge`` remove) chunks no object points to."""

from __future__ import annotations

import argparse
import re
from datetime import UTC, datetime, timedelta
from typing import Any

from django.core.management.base import CommandParser

from natsstorage.humanize import count, duration, size
from natsstorage.management.base import NatsCommand

# Uploads still in progress publish a chunk every few milliseconds; an hour
# without one means the writer is gone, whatever the link or the file size.
DEFAULT_MIN_AGE = "1h"
AGE = re.compile(r"^(\d+(?:\.\d+)?)([smhd]?)$")
SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def age(value: str) -> timedelta:
    """``90``, ``90s``, ``15m``, ``1h``, ``2d``."""
    match = AGE.match(value.strip().lower())
    if match is None:
        raise argparse.ArgumentTypeError(f"{value!r} is not an age: use seconds or a number with s, m, h or d")
    return timedelta(seconds=float(match[1]) * SECONDS[match[2]])


class Command(NatsCommand):
    help = (
        "Find the chunks in a NATS Object Store bucket that no object's metadata points to (left by writers "
        "killed mid-upload, or cut off from the server) and report their count and bytes. Only chunks whose "
        "newest message is older than --min-age are considered, so uploads in progress are never touched. "
        "Removes nothing unless --purge is given."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("bucket", help="The bucket to clean.")
        parser.add_argument(
            "--min-age",
            type=age,
            default=age(DEFAULT_MIN_AGE),
            help=f"Leave chunks written more recently than this: seconds, or 30m, 2d... (default: {DEFAULT_MIN_AGE}).",
        )
        parser.add_argument("--purge", action="store_true", help="Remove what is found (default: only report it).")

    def handle(self, *args: Any, **options: Any) -> None:
        name = options["bucket"]
        tools = self.tools(name)
        orphans = tools.orphans(min_age=options["min_age"])
        chunks = sum(orphan.chunks for orphan in orphans)
        total = sum(orphan.bytes for orphan in orphans)
        if options["verbosity"] >= 2:
            now = datetime.now(UTC)
            for orphan in orphans:
                idle = duration((now - orphan.newest).total_seconds())
                self.stdout.write(f"{orphan.subject}  {orphan.chunks} chunks  {orphan.bytes} bytes  idle {idle}")
        found = (
            f"{count(len(orphans), 'orphaned upload', 'orphaned uploads')} in bucket {name!r}: "
            f"{count(chunks, 'chunk', 'chunks')}, {size(total)} ({total} bytes)"
        )
        if not options["purge"]:
            if options["verbosity"] >= 1:
                hint = "; run with --purge to remove them" if orphans else ""
                self.stdout.write(f"Found {found}{hint}.")
            return
        purged = tools.purge_orphans(orphans)
        if options["verbosity"] >= 1:
            self.stdout.write(self.style.SUCCESS(f"Purged {found}; {purged} messages removed."))
