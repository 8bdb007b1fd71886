"""``manage.py natsos_index BUCKET``: give a bucket its listing index on the server (docs/design-listing.md)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import CommandError, CommandParser

from natsstorage import registry
from natsstorage.humanize import count
from natsstorage.management.base import NatsCommand
from natsstorage.storage import NatsStorage


def names(amount: float) -> str:
    return f"{amount:,.0f} names"


class Command(NatsCommand):
    help = (
        "Build the listing index of a NATS Object Store bucket on the server (streams NSI_<bucket> and "
        "NSD_<bucket>), so that listdir() and exists() ask the server instead of reading every name into each "
        "process. One pass over every name's metadata; an interrupted run resumes where it stopped. Buckets "
        "natsstorage creates get their index at creation. Needs nats-server 2.12 or later."
    )
    interrupted = "Interrupted: run the same command again to resume the build."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("bucket", nargs="?", help="The bucket to index.")
        parser.add_argument("--all", action="store_true", help="Every bucket the project's storages use.")
        parser.add_argument(
            "--drop",
            action="store_true",
            help="Delete the index instead: storages list the bucket the old way (every name in each process).",
        )
        self.add_progress_argument(parser)

    def handle(self, *args: Any, **options: Any) -> None:
        if bool(options["bucket"]) == bool(options["all"]):
            raise CommandError("name one bucket, or give --all")
        buckets = [options["bucket"]] if options["bucket"] else self.project_buckets()
        for bucket in buckets:
            tools = self.tools(bucket)
            if not tools.bucket_exists():
                raise CommandError(f"bucket {bucket!r} does not exist on the NATS server (natsos_status lists them)")
            if options["drop"]:
                tools.drop_index()
                if options["verbosity"] >= 1:
                    self.stdout.write(f"Dropped the listing index of bucket {bucket!r}.")
                continue
            progress = self.progress(options, None, label=f"indexing {bucket}")
            progress.shown = names

            def step(done: int, left: int, progress: Any = progress) -> None:
                progress.total = progress.done + done + left
                progress.update(done)

            held = tools.build_index(step)
            progress.close()
            if options["verbosity"] >= 1:
                self.stdout.write(
                    self.style.SUCCESS(f"Bucket {bucket!r} has its listing index: {count(held, 'name', 'names')}.")
                )

    @staticmethod
    def project_buckets() -> list[str]:
        return sorted({storage.config.bucket for _, storage in registry.configured(NatsStorage)})
