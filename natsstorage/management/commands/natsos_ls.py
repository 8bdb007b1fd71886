"""``manage.py natsos_ls BUCKET [PREFIX]``: the objects in a bucket."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import CommandParser

from natsstorage import humanize
from natsstorage.humanize import count, size
from natsstorage.management.base import NatsCommand
from natsstorage.objectstore import ObjectInfo

TITLES = ("SIZE", "MODIFIED (UTC)", "CONTENT TYPE", "NAME")


class Command(NatsCommand):
    help = (
        "List the objects in a NATS Object Store bucket, with size, modification time and content type. "
        "PREFIX keeps only the names that start with it."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("bucket", help="The bucket's name.")
        parser.add_argument("prefix", nargs="?", default="", help="Only names starting with this, e.g. 'docs/'.")
        parser.add_argument("--json", action="store_true", help="One JSON object per line, sizes in bytes.")

    def handle(self, *args: Any, **options: Any) -> None:
        storage = self.storage(options["bucket"])
        objects = storage.objects(options["prefix"])
        if options["json"]:
            for info in objects:
                self.stdout.write(json.dumps(object_json(info)))
            return
        rows = [
            (size(info.size), info.mtime.strftime("%Y-%m-%d %H:%M:%S"), info.content_type or "-", _shown(info))
            for info in objects
        ]
        widths = [max([len(row[i]) for row in rows] + [len(title)]) for i, title in enumerate(TITLES[:3])]
        self.stdout.write(self.style.MIGRATE_HEADING(_line(TITLES, widths)))
        for row in rows:
            self.stdout.write(_line(row, widths))
        if options["verbosity"] >= 1:
            total = sum(info.size for info in objects)
            self.stdout.write(f"{count(len(objects), 'object', 'objects')}, {size(total)}")


def _line(row: tuple[str, ...], widths: list[int]) -> str:
    size, mtime, content_type, name = row
    return f"{size:>{widths[0]}}  {mtime:<{widths[1]}}  {content_type:<{widths[2]}}  {name}"


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
