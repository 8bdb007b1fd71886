"""Uploading one or more files into a bucket from its page.

The files stream into the bucket while the request arrives (``natsstorage.uploads``,
set up by ``buckets.BucketAdmin`` for those allowed to upload): no temporary file,
and saving one only publishes its metadata under its name. The page's
script sends the form with XMLHttpRequest to show the browser's progress, and
gets JSON back; without it, the form posts as any other. Django refuses a request
with more than ``DATA_UPLOAD_MAX_NUMBER_FILES`` files (400), so the script sends
many files in batches under that limit, each naming itself ("2/3"); the last
says what the whole upload stored, in one message.
"""

from __future__ import annotations

import re

from django.contrib import messages
from django.contrib.admin.models import ADDITION
from django.core.exceptions import SuspiciousFileOperation
from django.core.files.uploadedfile import UploadedFile
from django.http import HttpRequest, HttpResponseBase, HttpResponseRedirect, JsonResponse
from django.utils.html import format_html, format_html_join

from natsstorage import humanize
from natsstorage.admin import history
from natsstorage.admin.forms import UploadForm
from natsstorage.admin.pages import Section, bucket_missing, bucket_storage, objects_url, wants_json
from natsstorage.buckettools import BucketTools
from natsstorage.exceptions import NatsStorageError, NatsUnavailable

FILES_FIELD = "files"
BATCH_FIELD = "batch"  # "2/3": the second of three requests of one upload, sent by the page's script
BATCH = re.compile(r"(\d{1,6})/(\d{1,6})")
STORED_SO_FAR = "natsstorage_upload"  # session key: the names a batched upload's earlier batches stored


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
    number, count = _batch(request)
    if count > 1:  # one message for the whole upload, from its last batch
        stored = [*(request.session.get(STORED_SO_FAR, []) if number > 1 else []), *stored]
        if number < count:
            request.session[STORED_SO_FAR] = stored
            return
        request.session.pop(STORED_SO_FAR, None)
    if stored:
        uploaded_count = humanize.count(len(stored), "object", "objects")
        names = format_html_join(", ", "“{}”", ((name,) for name in stored))
        where = format_html(" to “{}”", folder) if folder else ""
        messages.success(
            request,
            format_html(
                'Uploaded {}{} in bucket “{}”. <details class="nats-names"><summary>Show names</summary>{}</details>',
                uploaded_count,
                where,
                bucket,
                names,
            ),
        )


def _batch(request: HttpRequest) -> tuple[int, int]:
    """Which batch of how many this request is; (1, 1) for a whole upload in one request."""
    found = BATCH.fullmatch(request.POST.get(BATCH_FIELD, ""))
    if found is None:
        return 1, 1
    number, count = int(found[1]), int(found[2])
    return (number, count) if 1 <= number <= count else (1, 1)
