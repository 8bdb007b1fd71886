"""``manage.py natsos_status [BUCKET]``: the buckets' figures, as the admin's bucket page shows them."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import CommandError, CommandParser

from natsstorage.humanize import duration, size
from natsstorage.management.base import LIST_HINT, SERVER_HINT, NatsCommand, check_bucket_name
from natsstorage.status import BucketRow, ServerReport, server_reports

TITLES = ("BUCKET", "OBJECTS", "SIZE", "MAX SIZE", "TTL", "STORAGE", "REPLICAS", "SYNC", "SEALED", "USED BY")


class Command(NatsCommand):
    help = (
        "Show every Object Store bucket on the NATS servers the project uses (or only BUCKET): objects, bytes, "
        "limits, replicas, when the server fsyncs (with the monitor_url option), and which configured storages use it. "
        "Exits with status 1 when a server cannot be reached."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("bucket", nargs="?", help="Only this bucket.")
        self.add_json_argument(parser, "bucket")

    def handle(self, *args: Any, **options: Any) -> None:
        bucket = options["bucket"]
        if bucket is not None:
            check_bucket_name(bucket)
        reports = server_reports(bucket)
        for report in reports:
            if report.warning:
                self.stderr.write(f"warning: {report.warning} ({report.server})", style_func=self.style.WARNING)
        unreachable = [report for report in reports if not report.reachable]
        rows = [row for report in reports for row in report.rows]
        if bucket is not None and not unreachable and not any(row.exists for row in rows):
            used_by = ", ".join(label for row in rows for label in row.used_by)
            hint = f"used by {used_by}: the first file saved creates it" if used_by else LIST_HINT
            raise CommandError(f"bucket {bucket!r} does not exist on the NATS server ({hint})")
        if options["json"]:
            for row in rows:
                self.stdout.write(json.dumps(row_json(row)))
        else:
            self.table(reports)
        for report in reports:
            if report.sync_error:  # the buckets are fine: said, not failed
                self.stderr.write(f"NATS at {report.server}: no sync policy shown: {report.sync_error}")
        if unreachable:
            raise CommandError(f"{unreachable[0].error} ({SERVER_HINT})")

    def table(self, reports: list[ServerReport]) -> None:
        """A table per server, headed by the server asked (and its version), columns aligned across them."""
        cells = [[row_cells(row) for row in report.rows] for report in reports]
        every = [cell for rows in cells for cell in rows]
        widths = [max([len(cell[i]) for cell in every] + [len(title)]) for i, title in enumerate(TITLES)]
        for report, rows in zip(reports, cells, strict=True):
            version = f" (nats-server {report.version})" if report.version else ""
            self.stdout.write(f"NATS at {report.server}{version}:")
            self.stdout.write(self.style.MIGRATE_HEADING(_line(TITLES, widths)))
            for cell in rows:
                self.stdout.write(_line(cell, widths))


def _line(cells: tuple[str, ...] | list[str], widths: list[int]) -> str:
    left = {0, 5, 7, 9}  # the text columns; figures are right-aligned
    pairs = enumerate(zip(cells, widths, strict=True))
    return "  ".join(cell.ljust(width) if i in left else cell.rjust(width) for i, (cell, width) in pairs).rstrip()


def row_cells(row: BucketRow) -> tuple[str, ...]:
    used_by = ", ".join(row.used_by) or "-"
    status = row.status
    if status is None:
        why = f"unreachable: {row.error}" if row.error else "does not exist yet"
        return (row.name, "-", "-", "-", "-", "-", "-", "-", "-", f"{used_by} ({why})")
    return (
        row.name,
        str(status.objects),
        size(status.bytes),
        "unlimited" if status.max_bytes < 0 else size(status.max_bytes),
        duration(status.ttl) if status.ttl else "forever",
        status.storage + (", s2" if status.compression else ""),
        str(status.replicas),
        str(row.sync) if row.sync and status.storage == "file" else "-",  # a memory bucket never reaches a disk
        "yes" if status.sealed else "no",
        used_by,
    )


def row_json(row: BucketRow) -> dict[str, Any]:
    status = row.status
    return {
        "bucket": row.name,
        "server": row.server,
        "exists": row.exists,
        "reachable": row.reachable,
        "error": row.error or None,
        "used_by": list(row.used_by),
        "description": status.description if status else None,
        "objects": status.objects if status else None,
        "bytes": status.bytes if status else None,
        "max_bytes": status.max_bytes if status else None,
        "ttl": status.ttl if status else None,
        "storage": status.storage if status else None,
        "replicas": status.replicas if status else None,
        "sealed": status.sealed if status else None,
        "compression": status.compression if status else None,
        # The server's, from monitor_url's /varz; None when not configured or not answered.
        "sync_always": row.sync.always if row.sync else None,
        "sync_interval": row.sync.interval if row.sync else None,
    }
