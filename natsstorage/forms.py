"""A form field whose file goes from the browser straight into the bucket (docs/direct-uploads.md).

The widget renders a signed ticket; once a file is picked, its script asks ``natsstorage.urls`` for an upload
link with it, ``PUT``s the file there (showing its progress, resuming after a dropped connection) and puts the
signed result in a hidden input. The form submits only that: the field checks its signature and that the
object is in the bucket with that size and digest, and cleans to the object's name, which a model's
``FileField`` then holds without a byte of the file passing through Django again.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from django import forms
from django.core.exceptions import ValidationError
from django.core.files.storage import default_storage
from django.urls import reverse
from django.utils.datastructures import MultiValueDict
from django.utils.functional import cached_property

from natsstorage import direct, loop, signing
from natsstorage.names import clean_prefix
from natsstorage.storage import NatsStorage


class DirectUploadWidget(forms.Widget):
    """A file input that uploads to the bucket as soon as a file is picked, with the admin's progress bar."""

    template_name = "natsstorage/widgets/direct_upload.html"

    def __init__(self, attrs: dict[str, Any] | None = None) -> None:
        super().__init__(attrs)
        # What the field allows and for how many seconds, asked at each rendering (and signed then): a form is
        # often defined at import, before settings can be checked.
        self.allows: Callable[[], tuple[dict[str, Any], int]] = lambda: ({}, 3600)

    @property
    def media(self) -> forms.Media:
        return forms.Media(js=["natsstorage/direct-upload.js"], css={"all": ["natsstorage/admin/nats.css"]})

    def get_context(self, name: str, value: Any, attrs: dict[str, Any] | None) -> dict[str, Any]:
        context = super().get_context(name, value, attrs)
        result = _result(value)
        ticket, expiry = self.allows()
        types = ticket.get("t") or []
        context["widget"].update(
            {
                "result": value if result is not None else "",
                "uploaded": result.name if result is not None else "",
                "current": "" if result is not None or not value else str(getattr(value, "name", value)),
                "ticket": signing.dumps(direct.TICKET, ticket, expiry=expiry),
                "prepare_url": reverse("natsstorage:prepare_upload"),
                "accept": ",".join(types),
                "max_size": ticket.get("m", ""),
            }
        )
        return context

    def value_from_datadict(self, data: Mapping[str, Any], files: MultiValueDict[str, Any], name: str) -> Any:
        return data.get(name)

    def use_required_attribute(self, initial: Any) -> bool:
        # The file input is never submitted (the hidden result is): the field checks that one is there.
        return False


def _result(value: object) -> direct.Result | None:
    try:
        return direct.Result.from_token(value)
    except signing.LinkRefused:
        return None


class DirectUploadField(forms.Field):
    """A file uploaded by the browser to ``storage`` under ``upload_to`` (a folder), of at most ``max_size``
    bytes and one of ``content_types`` (``"image/*"``...; None: any). Cleans to the object's name.

    Give it to a ``ModelForm`` in place of its ``FileField``'s: the model saves the name, and the file's
    bytes never pass through Django. ``expire``: seconds the page's upload ticket, and the link it gets,
    work (default: the storage's ``url_expiry``). ``max_length``: the model field's, which names are cut to.
    """

    widget = DirectUploadWidget
    default_error_messages = {
        "invalid": "The upload could not be verified: upload the file again.",
        "expired": "The upload is too old: upload the file again.",
        "missing": "The uploaded file is no longer in the bucket: upload it again.",
    }

    def __init__(
        self,
        *,
        max_size: int,
        storage: NatsStorage | None = None,
        upload_to: str = "",
        content_types: Sequence[str] | None = None,
        expire: int | None = None,
        max_length: int | None = None,
        **kwargs: Any,
    ) -> None:
        self._storage = storage
        self.max_length = max_length
        self.upload_to = clean_prefix(upload_to)  # "" or "folder/"
        self.max_size = max_size
        self.content_types = direct.allowed_types(content_types)
        self.expire = expire
        super().__init__(**kwargs)

    @cached_property
    def storage(self) -> NatsStorage:
        storage = self._storage if self._storage is not None else default_storage
        if not isinstance(storage, NatsStorage):
            raise TypeError(f"DirectUploadField uploads to a NatsStorage, not {type(storage).__name__}")
        return storage

    def widget_attrs(self, widget: forms.Widget) -> dict[str, Any]:
        if isinstance(widget, DirectUploadWidget):
            widget.allows = self.allows  # a form's copy of the field gives its widget's copy its own
        return super().widget_attrs(widget)

    def allows(self) -> tuple[dict[str, Any], int]:
        """What an upload ticket for this field allows, and for how many seconds."""
        config = self.storage.config
        expiry = self.expire if self.expire is not None else config.url_expiry
        ticket = {
            "b": config.bucket,
            "l": config.location,
            "f": self.upload_to,
            "m": self.max_size,
            "t": self.content_types,
            "e": expiry,
            "x": self.max_length,
        }
        return ticket, expiry

    def clean(self, value: Any, initial: Any = None) -> Any:
        """The name of the object a valid result names; the initial file when none was uploaded."""
        if not value:
            if initial:
                return initial
            if self.required:
                raise ValidationError(self.error_messages["required"], code="required")
            return None
        try:
            result = direct.Result.from_token(value)
        except signing.LinkRefused as error:
            code = "expired" if "expired" in str(error) else "invalid"
            raise ValidationError(self.error_messages[code], code=code) from None
        config = self.storage.config
        if (result.bucket, result.location) != (config.bucket, config.location) or not result.name.startswith(
            self.upload_to
        ):
            raise ValidationError(self.error_messages["invalid"], code="invalid")  # another field's upload
        info = loop.run(self.storage.bucket.info(self.storage.key(result.name)))
        if not result.matches(info):
            raise ValidationError(self.error_messages["missing"], code="missing")
        return result.name

    def _clean_bound_field(self, bf: forms.BoundField) -> Any:
        # As forms.FileField: the initial file is kept when nothing new was uploaded.
        return self.clean(bf.initial if self.disabled else bf.data, bf.initial)

    def has_changed(self, initial: Any, data: Any) -> bool:
        return bool(data)
