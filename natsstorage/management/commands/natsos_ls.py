"""``manage.py natsos_ls BUCKET [PREFIX]``: the objects in a bucket."""

from __future__ import annotations

import json
from itertools import islice
from typing import Any

from django.core.management.base import CommandParser
from django.utils import timezone

from natsstorage import humanize
from natsstorage.humanize import count, size
from natsstorage.management.base import NatsCommand
from natsstorage.objectstore import ObjectInfo

TITLES = ("SIZE", "MODIFIED", "CONTENT TYPE", "NAME")
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"  # the admin's object list writes times alike
PAGE = 1024  # objects printed at a time


class Command(NatsCommand):
    help = (
        "List the objects in a NATS Object Store bucket, with size, modification time (in the project's TIME_ZONE, "
        "as the admin shows it) and content type. PREFIX keeps only the names that start with it."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("bucket", help="The bucket's name.")
        parser.add_argument("prefix", nargs="?", default="", help="Only names starting with this, e.g. 'docs/'.")
        self.add_json_argument(parser, "object")

    def handle(self, *args: Any, **options: Any) -> None:
        objects = self.tools(options["bucket"]).objects(options["prefix"])
        if options["json"]:
            for info in objects:
                self.stdout.write(json.dumps(object_json(info)))
            return
        # Printed as the listing comes, a page at a time: a bucket of millions never waits, nor sits in memory.
        # Columns are as wide as the widest value seen so far.
        titles = (TITLES[0], f"{TITLES[1]} ({timezone.get_current_timezone_name()})", *TITLES[2:])
        widths = [len(title) for title in titles[:3]]
        listed = total = 0
        while page := list(islice(objects, PAGE)):
            rows = [(size(info.size), _when(info), info.content_type or "-", _shown(info)) for info in page]
            widths = [max([len(row[i]) for row in rows] + [widths[i]]) for i in range(3)]
            if not listed:
                self.stdout.write(self.style.MIGRATE_HEADING(_line(titles, widths)))
            for row in rows:
                self.stdout.write(_line(row, widths))
            listed, total = listed + len(page), total + sum(info.size for info in page)
        if not listed:
            self.stdout.write(self.style.MIGRATE_HEADING(_line(titles, widths)))
        if options["verbosity"] >= 1:
            self.stdout.write(f"{count(listed, 'object', 'objects')}, {size(total)}")


def _line(row: tuple[str, ...], widths: list[int]) -> str:
    size, mtime, content_type, name = row
    return f"{size:>{widths[0]}}  {mtime:<{widths[1]}}  {content_type:<{widths[2]}}  {name}"


def _when(info: ObjectInfo) -> str:
    return timezone.localtime(info.mtime).strftime(TIME_FORMAT)


def _shown(info: ObjectInfo) -> str:
    """The name, escaped onto one line; a link as ``ls -l`` shows one: ``name -> bucket/target``."""
    if info.link is None:
        return humanize.name(info.name)
    bucket, target = info.link
    return f"{humanize.name(info.name)} -> {humanize.name(bucket)}/{humanize.name(target)}"


def object_json(info: ObjectInfo) -> dict[str, Any]:
    link = info.link
    return {
        "name": info.name,
        "size": info.size,
        "mtime": info.mtime.isoformat(),
        "content_type": info.content_type,
        "digest": info.digest,
        "description": info.description,
        "metadata": dict(info.metadata),
        "link": {"bucket": link[0], "name": link[1]} if link else None,
    }
