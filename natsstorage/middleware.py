"""``UploadFailureMiddleware``: a form whose upload the bucket could not take is answered 507 (the bucket full)
or 503 (NATS away), instead of the 400 Django gives for a request body it could not read.

``NatsUploadHandler`` raises ``UploadNotStored`` where the body is read (the CSRF middleware, the view), after
purging what the request staged, and leaves it on the request; Django turns it into its 400 response, which this
middleware replaces. A view that caught the error and answered itself keeps its answer.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.http import HttpRequest, HttpResponse
from django.http.response import HttpResponseBase

from natsstorage.uploads import FAILURE

MESSAGES = {
    507: "The file store is full: the upload was not stored.",
    503: "The file store is unavailable; try again shortly.",
}
RETRY_AFTER = "5"  # seconds, with a 503, as the serving view says


class UploadFailureMiddleware:
    """Put it anywhere in ``MIDDLEWARE``: it looks at the answer once every other layer has given it."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        self.get_response = get_response
        if iscoroutinefunction(get_response):
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> Any:
        if iscoroutinefunction(self):
            return self._acall(request)
        return answer(request, self.get_response(request))

    async def _acall(self, request: HttpRequest) -> HttpResponseBase:
        get_response: Callable[[HttpRequest], Awaitable[HttpResponseBase]] = self.get_response
        return answer(request, await get_response(request))


def answer(request: HttpRequest, response: HttpResponseBase) -> HttpResponseBase:
    """``response``, unless it is Django's 400 for an upload the bucket could not take."""
    failure = getattr(request, FAILURE, None)
    if failure is None or response.status_code != 400:
        return response
    headers = {"Cache-Control": "no-store"}
    if failure.status == 503:
        headers["Retry-After"] = RETRY_AFTER
    return HttpResponse(
        MESSAGES[failure.status], status=failure.status, content_type="text/plain; charset=utf-8", headers=headers
    )
