"""How sizes, durations and counts read: one spelling for the admin and the commands alike."""

from __future__ import annotations

from datetime import timedelta

from django.utils.translation import ngettext

UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")


def size(count: float) -> str:
    """Bytes in IEC units, as ``nats object status`` and ``ls -h`` count them: ``1536`` -> ``"1.5 KiB"``."""
    for unit in UNITS:
        if abs(count) < 1024 or unit == UNITS[-1]:
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    raise AssertionError("unreachable")


def duration(seconds: float) -> str:
    """Whole seconds as Python spells a ``timedelta``: ``"0:01:05"``, ``"2 days, 0:00:00"``."""
    return str(timedelta(seconds=round(seconds)))


def name(text: str) -> str:
    """An object name on one line, whatever another client put in it: control characters and
    backslashes escaped as Python writes them (``new\\nline.txt``), as ``ls -b`` does."""
    return "".join(
        char if char.isprintable() and char != "\\" else char.encode("unicode_escape").decode("ascii") for char in text
    )


def count(number: int, singular: str, plural: str) -> str:
    """``count(2, "object", "objects")`` -> ``"2 objects"``, pluralised by the active language's rules."""
    return f"{number} {ngettext(singular, plural, number)}"
