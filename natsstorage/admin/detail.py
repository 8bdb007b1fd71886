"""One object's page: all its metadata, its description and headers to edit, download and delete."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.admin.models import CHANGE
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponseBase, HttpResponseRedirect
from django.template.response import TemplateResponse

from natsstorage import humanize
from natsstorage.admin import history
from natsstorage.admin.forms import MetadataForm, headers_text
from natsstorage.admin.pages import Section, any_bucket, bucket_storage, find, object_url
from natsstorage.buckettools import BucketTools
from natsstorage.exceptions import ObjectChanged
from natsstorage.links import LinkRefused
from natsstorage.objectstore import ObjectInfo
from natsstorage.storage import NatsStorage
from natsstorage.views import object_response

CHANGED_MEANWHILE = (
    "The object was changed by someone else since this page was shown: its current metadata is shown above. "
    "Save again to replace it with what you typed below."
)


def download(request: HttpRequest, bucket: str, name: str) -> HttpResponseBase:
    storage, info = find(bucket, name)
    if info.link is not None:  # what it names, as open_object() and the serving view read a link
        try:
            target, info = BucketTools(storage).follow_link(info, any_bucket)
        except (FileNotFoundError, LinkRefused) as error:
            raise Http404(str(error)) from None
        if target is not storage.bucket:
            storage = bucket_storage(target.name)
    return object_response(request, storage, info, public=False)


def object_page(model_admin: Section, request: HttpRequest, bucket: str, name: str) -> HttpResponseBase:
    storage, info = find(bucket, name)
    form = None
    if request.method == "POST":
        if not model_admin.has_edit_permission(request):
            raise PermissionDenied
        form = MetadataForm(request.POST)
        if form.is_valid():
            if form.cleaned_data["seq"] == info.seq:
                try:
                    return _save(model_admin, request, storage, bucket, info, form.cleaned_data)
                except ObjectChanged:  # between reading it for this request and saving
                    storage, info = find(bucket, name)
            form = MetadataForm({**request.POST.dict(), "seq": info.seq})  # what was typed, over this version
            form.is_valid()
            form.add_error(None, CHANGED_MEANWHILE)
    elif model_admin.has_edit_permission(request):
        form = _form(info)
    context = model_admin.context(
        request,
        info.name,
        bucket=bucket,
        info=info,
        chunks=_chunks(info),
        headers=[(key, value) for key, values in info.headers.items() for value in values],
        metadata=sorted((info.raw.get("metadata") or {}).items()),
        form=form,
    )
    return TemplateResponse(request, "natsstorage/admin/object.html", context)


def _form(info: ObjectInfo) -> MetadataForm:
    return MetadataForm(
        initial={"description": info.description, "headers": headers_text(info.headers), "seq": info.seq}
    )


def _chunks(info: ObjectInfo) -> str:
    chunks = humanize.count(info.chunks, "chunk", "chunks")
    return f"{chunks} of up to {humanize.size(info.chunk_size)}" if info.chunk_size and info.chunks else chunks


def _save(
    model_admin: Section,
    request: HttpRequest,
    storage: NatsStorage,
    bucket: str,
    info: ObjectInfo,
    data: dict[str, Any],
) -> HttpResponseBase:
    description, headers = data["description"], data["headers"]
    changed = [
        what
        for what, differs in (
            ("the description", description != info.description),
            ("the headers", headers != {key: list(values) for key, values in info.headers.items()}),
        )
        if differs
    ]
    url = object_url(bucket, info.name)
    if not changed:
        messages.info(request, "Nothing was changed.")
        return HttpResponseRedirect(url)
    BucketTools(storage).update_object(info.name, seq=info.seq, description=description, headers=headers)
    what = " and ".join(changed)
    history.log(request, CHANGE, bucket, info.name, what=what)
    model_admin.message_user(request, f"Changed {what} of “{info.name}”.", messages.SUCCESS)
    return HttpResponseRedirect(url)
