from django.core.validators import FileExtensionValidator
from django.db import models
from django.db.models.signals import post_delete
from django.dispatch import receiver

from natsstorage import NatsStorage

configs = NatsStorage("configs")
IMAGE_EXTENSIONS = ["png", "jpg", "jpeg", "gif", "webp"]


class Document(models.Model):
    title = models.CharField(max_length=100)
    description = models.CharField(
        max_length=200, blank=True, help_text="Also kept as the objects' description in NATS (see the bucket page)."
    )
    file = models.FileField(storage=configs, upload_to="docs/")
    image = models.FileField(
        storage=configs,
        upload_to="images/",
        blank=True,
        validators=[FileExtensionValidator(IMAGE_EXTENSIONS)],
        help_text="Shown as a thumbnail in the list.",
    )
    uploaded = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-uploaded"]

    def __str__(self) -> str:
        return self.title

    def save(self, *args, **kwargs):
        previous = Document.objects.filter(pk=self.pk).values("file", "image").first() if self.pk else None
        super().save(*args, **kwargs)
        for field in ("file", "image"):
            current = getattr(self, field)
            if previous and previous[field] and previous[field] != current.name:
                configs.delete(previous[field])  # replaced: the old object would be orphaned
            if current:
                configs.update_meta(current.name, description=self.description)


@receiver(post_delete, sender=Document)
def delete_objects(sender, instance: Document, **kwargs) -> None:
    # Django leaves files behind when a row goes; the demo shows the bucket shrinking.
    for file in (instance.file, instance.image):
        if file:
            file.delete(save=False)
