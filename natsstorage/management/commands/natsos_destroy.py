"""``manage.py natsos_destroy BUCKET``: delete a bucket and all its objects, for good."""

from __future__ import annotations

from typing import Any

from django.core.management.base import CommandError, CommandParser

from natsstorage import registry
from natsstorage.buckettools import BucketTools
from natsstorage.humanize import count, size
from natsstorage.management.base import NatsCommand
from natsstorage.storage import NatsStorage


class Command(NatsCommand):
    help = (
        "Delete a NATS Object Store bucket and every object in it, for good. Shows what will be lost, and which "
        "configured storages and models use the bucket, and asks for the bucket's name to be typed back, unless "
        "--noinput is given."
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
        self.interrupted = f"Interrupted: bucket {name!r} was not destroyed."
        tools = BucketTools(storage)
        status = tools.status()
        objects = count(status.objects, "object", "objects")
        loss = f"bucket {name!r} and its {objects} ({size(status.bytes)}, {status.bytes} bytes)"
        users = users_of(storage)
        if users:
            self.stdout.write(
                self.style.WARNING(
                    f"Used by {', '.join(users)}: their files will be gone, and the FileFields that name them "
                    "will point at missing files."
                )
            )
        if options["interactive"]:
            self.stdout.write(self.style.WARNING(f"This deletes the NATS {loss} for good."))
            self.interrupted = "\n" + self.interrupted  # after the prompt, which Ctrl-C leaves unended
            try:
                answer = input(f"Type the bucket's name ({name}) to destroy it: ")
            except EOFError:
                answer = ""
            self.interrupted = self.interrupted.lstrip("\n")
            if answer.strip() != name:
                raise CommandError(f"{answer.strip()!r} is not {name!r}: bucket {name!r} was not destroyed")
        self.interrupted = (
            f"Interrupted while destroying bucket {name!r}: manage.py natsos_status {name} tells if it is gone."
        )
        tools.destroy()
        if options["verbosity"] >= 1:
            self.stdout.write(self.style.SUCCESS(f"Destroyed the {loss}."))


def users_of(storage: NatsStorage) -> list[str]:
    """The configured storages and model fields that keep their files in ``storage``'s bucket, on its server."""
    config = storage.config
    return [
        label
        for label, configured in registry.configured(NatsStorage)
        if configured.config.bucket == config.bucket and configured.config.servers == config.servers
    ]
