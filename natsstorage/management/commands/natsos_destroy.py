"""``manage.py natsos_destroy BUCKET``: delete a bucket and all its objects, for good."""

from __future__ import annotations

from typing import Any

from django.core.management.base import CommandError, CommandParser

from natsstorage.humanize import count, size
from natsstorage.management.base import NatsCommand


class Command(NatsCommand):
    help = (
        "Delete a NATS Object Store bucket and every object in it, for good. Shows what will be lost and asks "
        "for the bucket's name to be typed back, unless --noinput is given."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("bucket", help="The bucket to destroy.")
        parser.add_argument(
            "--noinput",
            "--no-input",
            action="store_false",
            dest="interactive",
            help="Do not ask for confirmation (for scripts).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        name = options["bucket"]
        storage = self.storage(name)
        status = storage.status()
        objects = count(status.objects, "object", "objects")
        loss = f"bucket {name!r} and its {objects} ({size(status.bytes)}, {status.bytes} bytes)"
        if options["interactive"]:
            self.stdout.write(self.style.WARNING(f"This deletes the NATS {loss} for good."))
            try:
                answer = input(f"Type the bucket's name ({name}) to destroy it: ")
            except EOFError:
                answer = ""
            if answer.strip() != name:
                raise CommandError(f"{answer.strip()!r} is not {name!r}: bucket {name!r} was not destroyed")
        storage.destroy()
        if options["verbosity"] >= 1:
            self.stdout.write(self.style.SUCCESS(f"Destroyed the {loss}."))
