"""The admin's "NATS object store" section: every bucket on the server, each bucket's objects, and each object.

The pages read the server that ``settings.NATSSTORAGE`` (or ``NATS_URL``) points
to, and never create a bucket. Seeing them needs ``natsstorage.view_bucket``;
uploading ``natsstorage.add_object``; editing an object's description and headers
``natsstorage.change_object``; deleting, or replacing by an upload,
``natsstorage.delete_object``.

One module per page: ``buckets`` (the section, its URLs and error pages),
``listing`` (a bucket's objects, sorting, pages, bulk deletion), ``detail``
(one object), ``uploads``; ``forms`` and ``history`` (Recent actions) serve them.
"""

from __future__ import annotations

from django.contrib import admin

from natsstorage.admin.buckets import BucketAdmin
from natsstorage.models import Bucket

admin.site.register(Bucket, BucketAdmin)

__all__ = ["BucketAdmin"]
