"""``{% load natsstorage %}``: the admin's sizes, durations and names, spelled as the commands spell them."""

from __future__ import annotations

from django import template

from natsstorage import humanize
from natsstorage.objectstore import encode_key

register = template.Library()
register.filter("iec_size", humanize.size, is_safe=True)
register.filter("duration", humanize.duration, is_safe=True)
register.filter("object_name", humanize.name, is_safe=False)
# A form value that survives any name (browsers send a line break in a value as "\r\n").
register.filter("object_key", encode_key, is_safe=True)
