import os

from django import forms
from django.conf import settings
from django.core.files.storage import default_storage, storages
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render

from natsstorage.exceptions import NatsUnavailable

from .forms import DirectDocumentForm
from .models import Attachment, Document

PAGE_SIZE = 50  # files a page touches


def sizes(request: HttpRequest) -> HttpResponse:
    """A page that asks the storage about fifty files, as a document list with a size column does."""
    storage = Document._meta.get_field("upload").storage
    lines = []
    for index in range(PAGE_SIZE):
        name = f"docs/{index}.txt"
        try:
            lines.append(f"{name}: {storage.size(name)} bytes")
        except NatsUnavailable:
            lines.append(f"{name}: the file store is unavailable")
    return HttpResponse("\n".join(lines), content_type="text/plain")


class AttachmentForm(forms.ModelForm):
    class Meta:
        model = Attachment
        fields = ["title", "file", "picture"]


def attach(request: HttpRequest) -> HttpResponse:
    """A model form with files, as a project's upload page has; says what was under the temp dir meanwhile."""
    form = AttachmentForm(request.POST, request.FILES)
    valid = form.is_valid()  # the body parsed, the files checked
    temporary = sorted(os.listdir(settings.FILE_UPLOAD_TEMP_DIR)) if settings.FILE_UPLOAD_TEMP_DIR else []
    if not valid:
        return JsonResponse({"errors": form.errors, "temporary": temporary}, status=400)
    saved = form.save()
    return JsonResponse(
        {"file": saved.file.name, "picture": saved.picture.name, "width": saved.width, "temporary": temporary}
    )


def keep(request: HttpRequest) -> HttpResponse:
    """Each uploaded file saved ``?copies=`` times into the default storage, then into ``STORAGES['other']``
    if there is one: a view that keeps a file under several names, or elsewhere."""
    names: dict[str, list[str]] = {}
    for field, uploaded in request.FILES.items():
        for _ in range(int(request.GET.get("copies", "1"))):
            names.setdefault(field, []).append(default_storage.save(f"kept/{uploaded.name}", uploaded))
        if "other" in settings.STORAGES:
            names.setdefault(field, []).append(storages["other"].save(f"kept/{uploaded.name}", uploaded))
    return JsonResponse(names)


async def received(request: HttpRequest) -> HttpResponse:
    """An async view that reads a form in the event loop's thread: its title and its files' sizes."""
    files = {field: uploaded.size for field, uploaded in request.FILES.items()}
    return JsonResponse({"title": request.POST.get("title"), "files": files})


def direct_upload(request: HttpRequest) -> HttpResponse:
    """A page with a DirectUploadField: the file goes to the bucket from the browser, the form saves its name."""
    form = DirectDocumentForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        document = form.save()
        return HttpResponse(f"Saved {document.upload.name}", content_type="text/plain")
    return render(request, "testapp/direct.html", {"form": form})
