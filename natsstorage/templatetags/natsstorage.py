"""``{% load natsstorage %}``: the admin's sizes and durations, spelled as the commands spell them."""

from __future__ import annotations

from django import template

from natsstorage import humanize

register = template.Library()
register.filter("iec_size", humanize.size, is_safe=True)
register.filter("duration", humanize.duration, is_safe=True)
register.filter("object_name", humanize.name, is_safe=False)
