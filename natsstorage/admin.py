"""The admin's "NATS object store" section: every bucket on the server, and each bucket's objects.

The pages read the server that ``settings.NATSSTORAGE`` (or ``NATS_URL``)
points to. They never create a bucket. Seeing them needs
``natsstorage.view_bucket``; deleting an object needs ``natsstorage.delete_object``.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import TYPE_CHECKING, Any

from django.contrib import admin, messages
from django.contrib.admin.models import DELETION, LogEntry
from django.contrib.contenttypes.models import ContentType
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBase, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse

from natsstorage.exceptions import BucketNotFound, NatsStorageError, NatsUnavailable
from natsstorage.models import Bucket
from natsstorage.objectstore import ObjectInfo, valid_bucket_name
from natsstorage.status import server_reports
from natsstorage.storage import NatsStorage
from natsstorage.views import object_response, unavailable

SEARCH_PARAMETER = "q"  # a name prefix
PAGE_PARAMETER = "p"

if TYPE_CHECKING:
    ModelAdmin = admin.ModelAdmin[Bucket]
else:
    ModelAdmin = admin.ModelAdmin  # not subscriptable at run time


def _storage(bucket: str) -> NatsStorage:
    if not valid_bucket_name(bucket):
        raise Http404("No such bucket.")
    return NatsStorage(bucket, create_bucket=False, location="")  # the bucket's own names


def _object(bucket: str, name: str) -> tuple[NatsStorage, ObjectInfo]:
    storage = _storage(bucket)
    try:
        return storage, storage.info(name)
    except (FileNotFoundError, BucketNotFound):
        raise Http404("No such object.") from None


@admin.register(Bucket)
class BucketAdmin(ModelAdmin):
    list_per_page = 100

    def has_module_permission(self, request: HttpRequest) -> bool:
        return self.has_view_permission(request)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.has_perm("natsstorage.view_bucket")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.has_perm("natsstorage.delete_object")

    def get_urls(self) -> list[URLPattern]:
        def wrap(view: Callable[..., HttpResponseBase]) -> Callable[..., HttpResponseBase]:
            @wraps(view)
            def answer(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
                try:
                    return view(request, *args, **kwargs)
                except NatsUnavailable as error:  # a clear 503, never a 500, when NATS is away
                    return unavailable(error)

            return self.admin_site.admin_view(answer)

        return [
            path("", wrap(self.changelist_view), name="natsstorage_bucket_changelist"),
            path("<str:bucket>/", wrap(self.objects_view), name="natsstorage_bucket_objects"),
            path("<str:bucket>/download/<path:name>", wrap(self.download_view), name="natsstorage_bucket_download"),
            path("<str:bucket>/delete/<path:name>", wrap(self.delete_object_view), name="natsstorage_bucket_delete"),
        ]

    def _context(self, request: HttpRequest, title: str, **context: Any) -> dict[str, Any]:
        return {
            **self.admin_site.each_context(request),
            "title": title,
            "opts": self.model._meta,
            "has_delete_permission": self.has_delete_permission(request),
            **context,
        }

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        context = self._context(request, "NATS buckets", reports=server_reports())
        return TemplateResponse(request, "natsstorage/admin/buckets.html", context)

    def objects_view(self, request: HttpRequest, bucket: str) -> HttpResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        storage = _storage(bucket)
        prefix = request.GET.get(SEARCH_PARAMETER, "")
        error = ""
        try:
            infos = storage.objects(prefix)
        except BucketNotFound:
            raise Http404(f"There is no bucket {bucket!r} on the NATS server.") from None
        except NatsStorageError as problem:
            infos, error = [], str(problem)
        page = Paginator(infos, self.list_per_page).get_page(request.GET.get(PAGE_PARAMETER))
        context = self._context(
            request,
            f"Objects in bucket {bucket}",
            bucket=bucket,
            page=page,
            prefix=prefix,
            search_parameter=SEARCH_PARAMETER,
            page_parameter=PAGE_PARAMETER,
            error=error,
        )
        return TemplateResponse(request, "natsstorage/admin/objects.html", context)

    def download_view(self, request: HttpRequest, bucket: str, name: str) -> HttpResponseBase:
        if not self.has_view_permission(request):
            raise PermissionDenied
        storage, info = _object(bucket, name)
        return object_response(request, storage, info, public=False)

    @staticmethod
    def _log_deletion(request: HttpRequest, bucket: str, name: str) -> None:
        """In the admin's "Recent actions" and history, as deletions of model objects are."""
        LogEntry.objects.create(
            user=request.user,  # type: ignore[misc]  # signed in: admin_view lets no one else in
            content_type=ContentType.objects.get_for_model(Bucket),
            object_id=bucket,
            object_repr=f"{bucket}/{name}"[: LogEntry._meta.get_field("object_repr").max_length],
            action_flag=DELETION,
            change_message=f"Deleted the object “{name}” from the NATS bucket “{bucket}”.",
        )

    def delete_object_view(self, request: HttpRequest, bucket: str, name: str) -> HttpResponse:
        """Django's convention: a confirmation page, and only its POST deletes."""
        if not self.has_delete_permission(request):
            raise PermissionDenied
        storage, info = _object(bucket, name)
        objects_url = reverse("admin:natsstorage_bucket_objects", kwargs={"bucket": bucket})
        if request.method == "POST" and request.POST.get("post") == "yes":
            storage.delete(info.name)
            self._log_deletion(request, bucket, info.name)
            self.message_user(request, f"The object “{name}” was deleted from bucket “{bucket}”.", messages.SUCCESS)
            return HttpResponseRedirect(objects_url)
        context = self._context(request, "Are you sure?", bucket=bucket, info=info, objects_url=objects_url)
        return TemplateResponse(request, "natsstorage/admin/delete_confirmation.html", context)
