"""The section itself: permissions, URLs, the buckets page, and admin-styled pages for what goes wrong."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import TYPE_CHECKING, Any

from django.contrib import admin
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBase, HttpResponseRedirect, JsonResponse
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, register_converter
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt

from natsstorage.admin import detail, listing, uploads
from natsstorage.admin.history import split_object_id
from natsstorage.admin.pages import bucket_missing, bucket_storage, object_url, wants_json
from natsstorage.exceptions import BucketNotFound, NatsUnavailable, TooLarge
from natsstorage.models import Bucket
from natsstorage.objectstore import valid_bucket_name
from natsstorage.status import server_reports
from natsstorage.uploads import UploadNotStored, stage_uploads

RETRY_AFTER = "5"  # seconds, for a page NATS could not answer


class AnyName:
    """Any object name another client may have written, line breaks included (``<path:…>`` stops at one)."""

    regex = "(?s:.+)"

    def to_python(self, value: str) -> str:
        return value

    def to_url(self, value: str) -> str:
        return value


register_converter(AnyName, "anyname")

if TYPE_CHECKING:
    ModelAdmin = admin.ModelAdmin[Bucket]
else:
    ModelAdmin = admin.ModelAdmin  # not subscriptable at run time


class BucketAdmin(ModelAdmin):
    list_per_page = 100

    def has_module_permission(self, request: HttpRequest) -> bool:
        return self.has_view_permission(request)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.has_perm("natsstorage.view_bucket")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # buckets are made by storages and the NATS tools, not here

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.has_perm("natsstorage.delete_object")

    def has_upload_permission(self, request: HttpRequest) -> bool:
        return self.has_view_permission(request) and request.user.has_perm("natsstorage.add_object")

    def has_edit_permission(self, request: HttpRequest) -> bool:
        """Changing an object's description and headers."""
        return self.has_view_permission(request) and request.user.has_perm("natsstorage.change_object")

    def get_urls(self) -> list[URLPattern]:
        def page(view: Callable[..., HttpResponseBase]) -> Callable[..., HttpResponseBase]:
            return self.admin_site.admin_view(self._answering(view))

        return [
            path("", page(self.changelist_view), name="natsstorage_bucket_changelist"),
            # Where "Recent actions" links an object: LogEntry.get_admin_url() reverses <app>_<model>_change.
            path("<str:object_id>/change/", page(self.logged_object_view), name="natsstorage_natsobject_change"),
            path("<str:bucket>/", page(self.objects_view), name="natsstorage_bucket_objects"),
            path("<str:bucket>/upload/", self._staging(page(self.upload_view)), name="natsstorage_bucket_upload"),
            path("<str:bucket>/object/<anyname:name>", page(self.object_view), name="natsstorage_bucket_object"),
            path("<str:bucket>/download/<anyname:name>", page(self.download_view), name="natsstorage_bucket_download"),
            path("<str:bucket>/delete/<anyname:name>", page(self.delete_object_view), name="natsstorage_bucket_delete"),
        ]

    def _answering(self, view: Callable[..., HttpResponseBase]) -> Callable[..., HttpResponseBase]:
        """A missing bucket or object, NATS away, and what NATS would not take, as admin pages (404, 503, 400),
        never Django's plain ones."""

        @wraps(view)
        def answer(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
            try:
                return view(request, *args, **kwargs)
            except BucketNotFound:
                return self.problem(request, 404, "No such bucket", str(bucket_missing(kwargs.get("bucket", ""))))
            except Http404 as error:
                return self.problem(request, 404, "Not found", str(error))
            except TooLarge as error:
                return self.problem(request, 400, "Too large for NATS", f"{error}.")
            except UploadNotStored as error:  # reading the form: the bucket full, or NATS away
                title = "NATS unreachable" if error.status == 503 else "Bucket full"
                return self.problem(request, error.status, title, f"Nothing was uploaded: {error}.")
            except NatsUnavailable as error:
                response = self.problem(request, 503, "NATS unreachable", f"NATS is unreachable: {error}.")
                response["Retry-After"] = RETRY_AFTER
                return response

        return answer

    def _staging(self, view: Callable[..., HttpResponseBase]) -> Callable[..., HttpResponseBase]:
        """Uploads of those allowed to upload stream into the bucket as the body arrives (``natsstorage.uploads``).
        The handler is set before the body is read, so Django's CSRF check, which reads it, runs inside:
        ``admin_view``'s ``csrf_protect``, not the middleware's."""

        @wraps(view)
        def stage(request: HttpRequest, bucket: str, **kwargs: Any) -> HttpResponseBase:
            allowed = self.admin_site.has_permission(request) and self.has_upload_permission(request)
            if request.method == "POST" and allowed and valid_bucket_name(bucket):
                stage_uploads(request, bucket_storage(bucket))
            return view(request, bucket, **kwargs)

        return csrf_exempt(self._answering(stage))  # what staging meets (a bucket gone) as admin pages

    def problem(self, request: HttpRequest, status: int, title: str, message: str) -> HttpResponse:
        if wants_json(request):
            return JsonResponse({"error": message}, status=status)
        context = self.context(request, title, message=message)
        return TemplateResponse(request, "natsstorage/admin/problem.html", context, status=status)

    def context(self, request: HttpRequest, title: str, **context: Any) -> dict[str, Any]:
        return {
            **self.admin_site.each_context(request),
            "title": title,
            "opts": self.model._meta,
            "has_delete_permission": self.has_delete_permission(request),
            "has_upload_permission": self.has_upload_permission(request),
            "has_edit_permission": self.has_edit_permission(request),
            "time_zone": timezone.get_current_timezone_name(),  # natsos_ls shows times in it too
            **context,
        }

    def _check(self, allowed: bool) -> None:
        if not allowed:
            raise PermissionDenied

    # -- the pages ---------------------------------------------------------------------------

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        self._check(self.has_view_permission(request))
        context = self.context(request, "NATS buckets", reports=server_reports())
        return TemplateResponse(request, "natsstorage/admin/buckets.html", context)

    def objects_view(self, request: HttpRequest, bucket: str) -> HttpResponseBase:
        self._check(self.has_view_permission(request))
        return listing.objects_page(self, request, bucket)

    def upload_view(self, request: HttpRequest, bucket: str) -> HttpResponseBase:
        self._check(self.has_upload_permission(request))
        return uploads.upload(self, request, bucket)

    def object_view(self, request: HttpRequest, bucket: str, name: str) -> HttpResponseBase:
        self._check(self.has_view_permission(request))
        return detail.object_page(self, request, bucket, name)

    def download_view(self, request: HttpRequest, bucket: str, name: str) -> HttpResponseBase:
        self._check(self.has_view_permission(request))
        return detail.download(request, bucket, name)

    def delete_object_view(self, request: HttpRequest, bucket: str, name: str) -> HttpResponseBase:
        self._check(self.has_delete_permission(request))
        return listing.delete_page(self, request, bucket, [name], back=object_url(bucket, name))

    def logged_object_view(self, request: HttpRequest, object_id: str) -> HttpResponseBase:
        self._check(self.has_view_permission(request))
        bucket, name = split_object_id(unquote(object_id))
        if not valid_bucket_name(bucket) or not name:
            raise Http404(f"“{unquote(object_id)}” names no object: it should be “bucket/name”.")
        return HttpResponseRedirect(object_url(bucket, name))
