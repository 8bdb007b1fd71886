"""No tables: unmanaged models give the admin its "NATS object store" section, its permissions, and a
name for objects in "Recent actions"."""

from __future__ import annotations

from django.db import models


class Bucket(models.Model):
    """An Object Store bucket, as the admin lists it; the data lives in NATS, never in the database."""

    name = models.CharField(max_length=255, primary_key=True)

    class Meta:
        managed = False
        default_permissions = ("view",)  # view_bucket: the bucket and object pages, and downloads there
        permissions = [
            ("add_object", "Can upload objects to NATS buckets"),
            ("change_object", "Can change the description and headers of objects in NATS buckets"),
            ("delete_object", "Can delete objects from NATS buckets"),  # and replace them when uploading
        ]

    def __str__(self) -> str:
        return self.name


class NatsObject(models.Model):
    """An object in a bucket, as the admin's history records it ("bucket/name"); never stored, never listed.

    Its permissions are the bucket's, above."""

    key = models.CharField(max_length=255, primary_key=True)

    class Meta:
        managed = False
        default_permissions = ()
        verbose_name = "NATS object"

    def __str__(self) -> str:
        return self.key
