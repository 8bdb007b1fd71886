from django.contrib import admin
from django.template.defaultfilters import filesizeformat
from django.utils.html import format_html

from .models import Document


@admin.register(Document)
class DocumentAdmin(admin.ModelAdmin):
    list_display = ["title", "thumbnail", "download", "size", "description", "uploaded"]
    search_fields = ["title", "description"]

    @admin.display(description="Image")
    def thumbnail(self, document: Document) -> str:
        if not document.image:
            return ""
        return format_html('<img src="{}" alt="" style="max-height: 64px; max-width: 96px">', document.image.url)

    @admin.display(description="File")
    def download(self, document: Document) -> str:
        return format_html('<a href="{}">{}</a>', document.file.url, document.file.name)

    @admin.display(description="Size")
    def size(self, document: Document) -> str:
        try:
            return filesizeformat(document.file.size)
        except OSError as error:  # missing from the bucket, or NATS is down
            return f"({type(error).__name__})"
