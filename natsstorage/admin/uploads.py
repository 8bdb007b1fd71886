"""Uploading one or more files into a bucket from its page.

Django's upload handlers keep a file larger than ``FILE_UPLOAD_MAX_MEMORY_SIZE``
(2.5 MiB by default) in a temporary file on disk, and ``NatsStorage.save()``
streams from it chunk by chunk: no upload is ever whole in memory. The page's
script sends the form with XMLHttpRequest to show the browser's progress, and
gets JSON back; without it, the form posts as any other.
"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.admin.models import ADDITION
from django.core.exceptions import SuspiciousFileOperation
from django.core.files.uploadedfile import UploadedFile
from django.http import HttpRequest, HttpResponseBase, HttpResponseRedirect, JsonResponse

from natsstorage import humanize
from natsstorage.admin import history
from natsstorage.admin.forms import UploadForm
from natsstorage.admin.pages import Section, bucket_missing, bucket_storage, objects_url, wants_json
from natsstorage.buckettools import BucketTools
from natsstorage.exceptions import NatsStorageError, NatsUnavailable

FILES_FIELD = "files"


def upload(model_admin: Section, request: HttpRequest, bucket: str) -> HttpResponseBase:
    done = objects_url(bucket)
    if request.method != "POST":
        return HttpResponseRedirect(done)
    form = UploadForm(request.POST)
    files = request.FILES.getlist(FILES_FIELD)
    if not form.is_valid():
        for errors in form.errors.values():
            for error in errors:
                messages.error(request, f"Nothing was uploaded: {error}")
    elif not files:
        messages.error(request, "Nothing was uploaded: choose one or more files first.")
    elif form.cleaned_data["overwrite"] and not model_admin.has_delete_permission(request):
        messages.error(request, "Nothing was uploaded: replacing objects needs the permission to delete them.")
    else:
        store(request, bucket, files, folder=form.cleaned_data["folder"], overwrite=form.cleaned_data["overwrite"])
    if wants_json(request):
        return JsonResponse({"redirect": done})
    return HttpResponseRedirect(done)


def store(request: HttpRequest, bucket: str, files: list[UploadedFile[bytes]], *, folder: str, overwrite: bool) -> None:
    """Save each file under ``folder``; say what was stored, under which names, and what failed."""
    storage = bucket_storage(bucket, file_overwrite=overwrite)
    if not BucketTools(storage).bucket_exists():
        raise bucket_missing(bucket)
    stored: list[str] = []
    for uploaded in files:
        wanted = folder + (uploaded.name or "")
        try:
            name = storage.save(wanted, uploaded)
        except NatsUnavailable:
            raise
        except (NatsStorageError, SuspiciousFileOperation) as error:
            messages.error(request, f"“{wanted}” was not uploaded: {error}.")
            continue
        history.log(request, ADDITION, bucket, name)
        stored.append(name)
        if name != wanted:
            messages.warning(request, f"“{wanted}” was taken: the upload was stored as “{name}”.")
    if stored:
        uploaded_count = humanize.count(len(stored), "object", "objects")
        names = ", ".join(f"“{name}”" for name in stored)
        messages.success(request, f"Uploaded {uploaded_count} to bucket “{bucket}”: {names}.")
