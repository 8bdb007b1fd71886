from django.http import HttpRequest, HttpResponse

from natsstorage.exceptions import NatsUnavailable

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
