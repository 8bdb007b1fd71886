from django.db import models

from natsstorage import NatsStorage


class Document(models.Model):
    title = models.CharField(max_length=100)
    upload = models.FileField(storage=NatsStorage("configs"), upload_to="docs/")
