"""A ``Range`` request's one range, as RFC 9110 reads it: what the view sends of an object."""

from __future__ import annotations

import re

from django.utils.http import parse_http_date_safe

# One range, of ASCII digits that int() takes (several ranges, or longer numbers, are answered with the whole).
RANGE = re.compile(r"bytes=([0-9]{0,100})-([0-9]{0,100})", re.IGNORECASE | re.ASCII)
UNSATISFIABLE = (-1, -1)


def if_range_passes(value: str | None, etag: str, last_modified: int) -> bool:
    if not value:
        return True
    if value.startswith(('"', "W/")):
        return value == etag  # a weak validator never matches (RFC 9110 13.1.5)
    return parse_http_date_safe(value) == last_modified


def byte_range(header: str, size: int) -> tuple[int, int] | None:
    """(first, last) byte of a single satisfiable range, UNSATISFIABLE, or None to send the whole."""
    match = RANGE.fullmatch(header.strip())
    if match is None:
        return None
    first, last = match.groups()
    if not first:
        if not last:
            return None
        suffix = int(last)
        return UNSATISFIABLE if suffix == 0 or size == 0 else (max(0, size - suffix), size - 1)
    start = int(first)
    if last and int(last) < start:
        return None  # invalid: ignored, as RFC 9110 asks
    if start >= size:
        return UNSATISFIABLE
    end = min(int(last), size - 1) if last else size - 1
    return start, end
