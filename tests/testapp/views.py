from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from natsstorage.exceptions import NatsUnavailable

from .forms import DirectDocumentForm
from .models import Document

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


def direct_upload(request: HttpRequest) -> HttpResponse:
    """A page with a DirectUploadField: the file goes to the bucket from the browser, the form saves its name."""
    form = DirectDocumentForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        document = form.save()
        return HttpResponse(f"Saved {document.upload.name}", content_type="text/plain")
    return render(request, "testapp/direct.html", {"form": form})
