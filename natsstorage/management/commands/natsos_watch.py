"""``manage.py natsos_watch BUCKET``: a line per change to a bucket's objects, as it happens."""

from __future__ import annotations

import json
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

from django.core.management.base import CommandError, CommandParser

from natsstorage.buckettools import BucketTools
from natsstorage.changes import Changes
from natsstorage.exceptions import BucketNotFound, NatsUnavailable
from natsstorage.management.base import NatsCommand
from natsstorage.objectstore import ObjectInfo

RETRY_INTERVAL = 1.0  # seconds between attempts to resume after losing the server
WAIT_INTERVAL = 1.0  # seconds between looks for the bucket with --wait


class Command(NatsCommand):
    help = (
        "Print a line per change to the objects of a NATS Object Store bucket as it happens: "
        "'BUCKET changed - NAME was updated' or '... was deleted'. Resumes after a server restart. "
        "Stops on SIGTERM (status 0), on Ctrl-C (status 130, as for any command) and when stdout is closed "
        "(status 0: '| head -1' works)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("bucket", help="The bucket to watch.")
        parser.add_argument("--history", action="store_true", help="First replay every current object.")
        parser.add_argument("--ignore-deletes", action="store_true", help="Print no line for deletions.")
        self.add_json_argument(parser, "change (bucket, name, event, size, digest, mtime, description)")
        parser.add_argument("--wait", action="store_true", help="Wait for a missing bucket to be created.")

    def handle(self, *args: Any, **options: Any) -> None:
        tools = self.tools(options["bucket"])
        name = tools.bucket.name
        self.interrupted = f"stopped watching {name}"
        try:
            with _stop_on_sigterm():
                # A bucket created while we waited: what it holds already changed since, so it is replayed.
                waited = options["wait"] and self.wait_for(tools)
                with tools.watch(history=options["history"] or waited) as changes:
                    changes.start()
                    if options["verbosity"] >= 1:
                        self.note(f"watching {name} for changes (Ctrl-C to stop)")
                    self.follow(name, changes, options)
        except Terminated:
            if options["verbosity"] >= 1:
                self.note(self.interrupted)

    def wait_for(self, tools: BucketTools) -> bool:
        """Whether the bucket was missing: then wait until it is there."""
        if tools.bucket_exists():
            return False
        self.note(f"waiting for bucket {tools.bucket.name} to be created...")
        while not tools.bucket_exists():
            time.sleep(WAIT_INTERVAL)
        return True

    def follow(self, name: str, changes: Changes, options: dict[str, Any]) -> None:
        while True:
            try:
                info = changes.next()
            except NatsUnavailable as error:
                self.stderr.write(f"lost the watch on {name}: {error}; resuming...", style_func=self.style.WARNING)
                self.resume(name, changes)
                self.note(f"watching {name} again after a server restart")
                continue
            if info.deleted and options["ignore_deletes"]:
                continue
            self.stdout.write(json.dumps(event_json(name, info)) if options["json"] else event_line(name, info))
            self.stdout.flush()

    def resume(self, name: str, changes: Changes) -> None:
        while True:
            try:
                changes.start()
            except NatsUnavailable:
                time.sleep(RETRY_INTERVAL)
            except BucketNotFound:
                raise CommandError(f"bucket {name!r} was destroyed while being watched") from None
            else:
                return


def event_name(info: ObjectInfo) -> str:
    return "deleted" if info.deleted else "updated"


def event_line(bucket: str, info: ObjectInfo) -> str:
    """As the NATS examples say it: ``configs changed - a was updated``."""
    return f"{bucket} changed - {info.name} was {event_name(info)}"


def event_json(bucket: str, info: ObjectInfo) -> dict[str, Any]:
    return {
        "bucket": bucket,
        "name": info.name,
        "event": event_name(info),
        "size": info.size,
        "digest": info.digest or None,
        "mtime": info.mtime.isoformat(),
        "description": info.description,
    }


class Terminated(BaseException):
    """SIGTERM arrived: a service manager asks the watch to stop, which is no failure."""


@contextmanager
def _stop_on_sigterm() -> Iterator[None]:
    """SIGTERM stops the watch cleanly, with status 0."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, frame: FrameType | None) -> None:
        raise Terminated

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
