from django.db import models

from natsstorage import NatsStorage


class Document(models.Model):
    title = models.CharField(max_length=100)
    upload = models.FileField(storage=NatsStorage("configs"), upload_to="docs/")


class Attachment(models.Model):
    """Files saved into the default storage, as most projects keep them (the upload handler stages there)."""

    title = models.CharField(max_length=100)
    file = models.FileField(upload_to="attachments/", blank=True)
    picture = models.ImageField(upload_to="pictures/", blank=True, width_field="width", height_field="height")
    width = models.IntegerField(null=True, blank=True)
    height = models.IntegerField(null=True, blank=True)
