"""No tables: one unmanaged model gives the admin its "NATS object store" section and permissions."""

from __future__ import annotations

from django.db import models


class Bucket(models.Model):
    """An Object Store bucket, as the admin lists it; the data lives in NATS, never in the database."""

    name = models.CharField(max_length=255, primary_key=True)

    class Meta:
        managed = False
        default_permissions = ("view",)  # view_bucket: the bucket and object pages, and downloads there
        permissions = [("delete_object", "Can delete objects from NATS buckets")]

    def __str__(self) -> str:
        return self.name
