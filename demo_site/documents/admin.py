from django.contrib import admin, messages
from django.http import HttpResponseRedirect
from django.template.defaultfilters import filesizeformat
from django.urls import reverse
from django.utils.html import format_html

from natsstorage.exceptions import NatsUnavailable

from .models import Document


def problem(error: OSError) -> str:
    """What a file's trouble means to someone reading the list."""
    if isinstance(error, FileNotFoundError):
        return "missing from the bucket"
    if isinstance(error, NatsUnavailable):
        return "NATS is unreachable"
    return f"unreadable: {error}"


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
        except OSError as error:  # missing from the bucket, or NATS is down (then every row says so at once)
            return f"({problem(error)})"

    # The admin runs these in a transaction: when NATS is away, the row is left as it was.
    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        try:
            return super().changeform_view(request, object_id, form_url, extra_context)
        except NatsUnavailable as error:
            if request.method != "POST":
                return self.unavailable(request, "Nothing was saved", error)
            # The same form again with what was typed, and why nothing was saved (saving is not tried twice).
            request.nats_error = f"Nothing was saved: the file store is unreachable ({error}). Try again shortly."
        return super().changeform_view(request, object_id, form_url, extra_context)

    def get_form(self, request, obj=None, change=False, **kwargs):
        form = super().get_form(request, obj, change, **kwargs)
        error = getattr(request, "nats_error", None)
        if error is None:
            return form

        class Unsaved(form):
            def clean(self):
                self.add_error(None, error)  # invalid: the admin shows the form, filled in, with this on top
                return super().clean()

        return Unsaved

    def changelist_view(self, request, extra_context=None):  # its "Delete selected documents" action
        try:
            return super().changelist_view(request, extra_context)
        except NatsUnavailable as error:
            return self.unavailable(request, "Nothing was deleted", error)

    def delete_view(self, request, object_id, extra_context=None):
        try:
            return super().delete_view(request, object_id, extra_context)
        except NatsUnavailable as error:
            return self.unavailable(request, "Nothing was deleted", error)

    def unavailable(self, request, outcome: str, error: NatsUnavailable) -> HttpResponseRedirect:
        self.message_user(
            request, f"{outcome}: the file store is unreachable ({error}). Try again shortly.", messages.ERROR
        )
        return HttpResponseRedirect(reverse("admin:documents_document_changelist"))
