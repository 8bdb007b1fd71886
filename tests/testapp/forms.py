from django import forms

from natsstorage.forms import DirectUploadField

from .models import Document

MiB = 1024 * 1024


class DirectDocumentForm(forms.ModelForm):
    """A Document whose file the browser uploads straight into its bucket."""

    upload = DirectUploadField(
        storage=Document._meta.get_field("upload").storage,
        upload_to="docs",
        max_size=200 * MiB,
        content_types=["text/*", "application/octet-stream"],
    )

    class Meta:
        model = Document
        fields = ["title", "upload"]
