"""A bucket's objects: search by name prefix, sortable columns, numbered pages, and deleting, one or many at once."""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, overload

from django.conf import settings
from django.contrib import messages
from django.contrib.admin.models import DELETION
from django.core.paginator import Page, Paginator
from django.http import HttpRequest, HttpResponseBase, HttpResponseRedirect
from django.template.response import TemplateResponse

from natsstorage import humanize
from natsstorage.admin import history
from natsstorage.admin.forms import UploadForm
from natsstorage.admin.pages import Section, bucket_missing, bucket_storage, find, objects_url
from natsstorage.buckettools import BucketTools
from natsstorage.exceptions import BucketNotFound, NatsStorageError, NatsUnavailable, TooBroad
from natsstorage.index import Page as ListingPage
from natsstorage.objectstore import ObjectInfo
from natsstorage.storage import NatsStorage

SEARCH_PARAMETER = "q"  # a name prefix
PAGE_PARAMETER = "p"
ORDER_PARAMETER = "o"  # a column, "-" first for descending
SELECTED = "_selected_action"  # the checkboxes, as Django's admin names them (its actions.js reads them)
ACROSS = "select_across"  # "1": every object under the search's prefix, on every page (Django's "Select all N")
DELETE_SELECTED = "delete_selected"
NOT_SELECTED = "Items must be selected in order to perform actions on them. No items have been changed."


@dataclass(frozen=True)
class Column:
    label: str
    order: str | None  # what ``NatsStorage.listing_page`` sorts by; None: not sortable
    # Largest and newest first, as "ls -S" and "ls -t" list; names from A.
    descending_first: bool = False


COLUMNS = {
    "name": Column("Name", "name"),
    "size": Column("Size", "size", descending_first=True),
    "modified": Column("Modified", "mtime", descending_first=True),  # in TIME_ZONE, as natsos_ls
    "type": Column("Content type", None),  # not in the listing index: sorting by it would read every object
}
DEFAULT_ORDER = "name"


class Rows(Sequence[ObjectInfo]):
    """The objects under a prefix in a column's order, as Django's ``Paginator`` takes them: the count and
    one page from the listing index, then that page's metadata in one round trip. A page costs what it
    shows, whatever the bucket holds.

    ``shown``: the rows the page will ask for, fetched with the count in one look at the index (each look
    first asks the server for changes)."""

    def __init__(self, storage: NatsStorage, prefix: str, order: str, *, shown: slice = slice(0, 0)) -> None:
        sorted_by = getattr(COLUMNS.get(order.removeprefix("-")), "order", None)
        if sorted_by is None:  # not a column, or one that cannot be sorted
            order, sorted_by = DEFAULT_ORDER, "name"
        self.tools, self.order = BucketTools(storage), order
        self._listing = partial(self.tools.listing_page, prefix, order=sorted_by, descending=order.startswith("-"))
        self._shown = shown
        self._looked: tuple[int, int, ListingPage] | None = None  # the last look: its offset, limit and answer

    def _look(self, start: int, stop: int) -> ListingPage:
        """Rows ``start`` to ``stop`` and the totals; from the last look when it covered them."""
        if self._looked is not None:
            offset, limit, found = self._looked
            if offset == start and stop - start <= limit:
                return found._replace(entries=found.entries[: stop - start])
        found = self._listing(offset=start, limit=stop - start)
        self._looked = start, stop - start, found
        return found

    def totals(self) -> tuple[int, int | None]:
        """How many objects there are under the prefix, and their bytes (None: not known)."""
        found = self._looked[2] if self._looked is not None else self._look(self._shown.start, self._shown.stop)
        return found.total, found.total_size

    def __len__(self) -> int:
        return self.totals()[0]

    @overload
    def __getitem__(self, index: int) -> ObjectInfo: ...
    @overload
    def __getitem__(self, index: slice) -> list[ObjectInfo]: ...
    def __getitem__(self, index: int | slice) -> ObjectInfo | list[ObjectInfo]:
        if isinstance(index, int):
            return self[index : index + 1][0]
        found = self._look(index.start or 0, index.stop)
        infos = self.tools.object_infos([entry.name for entry in found.entries])
        return [info for info in infos if info is not None]  # None: deleted since


def query(request: HttpRequest, **changes: str | int | None) -> str:
    """This page's query string with ``changes`` made (None removes a parameter)."""
    parameters = request.GET.copy()
    for key, value in changes.items():
        if value is None:
            parameters.pop(key, None)
        else:
            parameters[key] = str(value)
    return "?" + parameters.urlencode() if parameters else "?"


def headings(request: HttpRequest, order: str) -> list[dict[str, str]]:
    """Each sortable column's heading: its label, where a click leads, and how it is sorted now."""
    found = []
    for name, column in COLUMNS.items():
        if column.order is None:
            found.append({"label": column.label, "url": "", "sorted": ""})
            continue
        if order.removeprefix("-") == name:
            state = "descending" if order.startswith("-") else "ascending"
            toggled = name if order.startswith("-") else f"-{name}"
        else:
            state, toggled = "", f"-{name}" if column.descending_first else name
        url = query(request, **{ORDER_PARAMETER: toggled, PAGE_PARAMETER: None})
        found.append({"label": column.label, "url": url, "sorted": state})
    return found


def page_links(request: HttpRequest, page: Page[ObjectInfo]) -> list[dict[str, Any]]:
    """Numbered links to pages, the first and last few always, the others elided as Django's admin does."""
    links: list[dict[str, Any]] = []
    for number in page.paginator.get_elided_page_range(page.number, on_each_side=2, on_ends=1):
        if not isinstance(number, int):  # the paginator's ELLIPSIS
            links.append({"gap": True})
        else:
            links.append({"number": number, "current": number == page.number, "url": query(request, p=number)})
    return links


def objects_page(model_admin: Section, request: HttpRequest, bucket: str) -> HttpResponseBase:
    storage = bucket_storage(bucket)
    if request.method == "POST":
        return _action(model_admin, request, bucket)
    prefix = request.GET.get(SEARCH_PARAMETER, "")
    per_page, number = model_admin.list_per_page, _number(request.GET.get(PAGE_PARAMETER))
    shown = slice((number - 1) * per_page, number * per_page)
    rows = Rows(storage, prefix, request.GET.get(ORDER_PARAMETER, DEFAULT_ORDER), shown=shown)
    error = ""
    try:
        try:
            page = Paginator(rows, per_page).get_page(request.GET.get(PAGE_PARAMETER))
        except TooBroad as problem:  # sorting by size or date past its bound: by name, and say why
            if rows.order == DEFAULT_ORDER:
                raise
            messages.warning(request, str(problem))
            rows = Rows(storage, prefix, DEFAULT_ORDER, shown=shown)
            page = Paginator(rows, per_page).get_page(request.GET.get(PAGE_PARAMETER))
    except BucketNotFound:
        raise bucket_missing(bucket) from None
    except NatsUnavailable:
        raise
    except NatsStorageError as problem:  # NATS answered, but not with a listing
        page, error = Paginator([], per_page).get_page(1), str(problem)
    order = rows.order
    context = model_admin.context(
        request,
        f"Objects in bucket {bucket}",
        bucket=bucket,
        page=page,
        total_bytes=rows.totals()[1] if not error else None,
        prefix=prefix,
        search_parameter=SEARCH_PARAMETER,
        order_parameter=ORDER_PARAMETER,
        order=order if order != DEFAULT_ORDER else "",
        headings=headings(request, order),
        page_links=page_links(request, page) if page.has_other_pages() else [],
        upload_form=UploadForm(),
        upload_max_files=settings.DATA_UPLOAD_MAX_NUMBER_FILES,  # the page's script sends batches under it
        error=error,
        action=DELETE_SELECTED,
        selected=SELECTED,
        across_parameter=ACROSS,
    )
    return TemplateResponse(request, "natsstorage/admin/objects.html", context)


def _action(model_admin: Section, request: HttpRequest, bucket: str) -> HttpResponseBase:
    """The "Delete selected objects" action: a confirmation page, then (its POST) the deletions."""
    back = objects_url(bucket) + query(request)
    if request.POST.get("action") != DELETE_SELECTED:
        messages.warning(request, "No action selected.")
        return HttpResponseRedirect(back)
    if not model_admin.has_delete_permission(request):
        messages.error(request, "You have no permission to delete objects.")
        return HttpResponseRedirect(back)
    across = request.POST.get(ACROSS) == "1"
    if across:  # asked again when the deletion is confirmed: what is there then goes
        prefix = request.GET.get(SEARCH_PARAMETER, "")
        try:
            names = [entry.name for entry in BucketTools(bucket_storage(bucket)).listing(prefix)]
        except BucketNotFound:
            raise bucket_missing(bucket) from None
    else:
        names = [name for name in map(_decode_key, request.POST.getlist(SELECTED)) if name is not None]
    if not names:
        messages.warning(request, NOT_SELECTED)
        return HttpResponseRedirect(back)
    return delete_page(model_admin, request, bucket, names, back=back, done=back, bulk=True, across=across)


def delete_page(
    model_admin: Section,
    request: HttpRequest,
    bucket: str,
    names: list[str],
    *,
    back: str,
    done: str | None = None,
    bulk: bool = False,
    across: bool = False,
) -> HttpResponseBase:
    """Django's convention: a page that asks, and only its POST (``post=yes``) deletes. Each deletion goes
    into "Recent actions". ``back``: where "No" leads; ``done``: where to go after (the bucket's objects);
    ``bulk``: the names were ticked in the list (those deleted meanwhile are left out), not named by the URL;
    ``across``: they are every object under the search's prefix, which the confirmation asks for again."""
    if bulk:
        storage = bucket_storage(bucket)
        try:
            # None: deleted meanwhile
            infos = [info for info in BucketTools(storage).object_infos(names) if info is not None]
        except BucketNotFound:
            raise bucket_missing(bucket) from None
    else:
        storage, info = find(bucket, names[0])  # named in the URL: gone is a 404
        infos = [info]
    done = done or objects_url(bucket)
    if not infos:
        messages.warning(request, "None of the selected objects is in the bucket any more.")
        return HttpResponseRedirect(done)
    if request.method == "POST" and request.POST.get("post") == "yes":
        for info in infos:
            BucketTools(storage).delete_object(info.name)
            history.log(request, DELETION, bucket, info.name)
        if len(infos) == 1:
            message = f"The object “{infos[0].name}” was deleted from bucket “{bucket}”."
        else:
            message = f"Deleted {humanize.count(len(infos), 'object', 'objects')} from bucket “{bucket}”."
        model_admin.message_user(request, message, messages.SUCCESS)
        return HttpResponseRedirect(done)
    context = model_admin.context(
        request,
        "Are you sure?",
        bucket=bucket,
        infos=infos,
        total_bytes=sum(info.size for info in infos),
        gone=len(names) - len(infos),
        back=back,
        bulk=bulk,
        across=across,
        across_parameter=ACROSS,
        action=DELETE_SELECTED,
        selected=SELECTED,
    )
    return TemplateResponse(request, "natsstorage/admin/delete_confirmation.html", context)


def _number(page: str | None) -> int:
    """The page number asked for, as ``Paginator.get_page`` reads it (anything else: the first)."""
    try:
        return max(1, int(page or 1))
    except ValueError:
        return 1


def _decode_key(key: str) -> str | None:
    """A ticked checkbox's object name (its metadata subject token); None for what no name encodes to."""
    try:
        return base64.urlsafe_b64decode(key.encode()).decode()
    except (ValueError, UnicodeError):
        return None
