"""The forms of the object pages: an object's description and headers, and an upload's folder."""

from __future__ import annotations

import re
from collections.abc import Mapping

from django import forms
from django.core.exceptions import SuspiciousFileOperation

from natsstorage.names import clean_prefix

HEADER_NAME = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")  # an HTTP token (RFC 9110 5.6.2)


def headers_text(headers: Mapping[str, list[str]]) -> str:
    """Headers as the form shows them: one ``Name: value`` line per value."""
    return "\n".join(f"{key}: {value}" for key, values in headers.items() for value in values)


class MetadataForm(forms.Form):
    """What an object's page may change without rewriting its data."""

    description = forms.CharField(required=False, widget=forms.TextInput(attrs={"class": "vTextField"}))
    headers = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 5, "class": "vLargeTextField"}),
        help_text="One “Name: value” per line, e.g. “Content-Type: text/plain” or “Cache-Control: max-age=86400”; "
        "the view sends Content-Type, Cache-Control, Content-Disposition, Content-Language, Content-Encoding "
        "and Expires.",
    )
    # The version the page showed: saving over another writer's change would lose it.
    seq = forms.IntegerField(widget=forms.HiddenInput)

    def clean_headers(self) -> dict[str, list[str]]:
        parsed: dict[str, list[str]] = {}
        for number, line in enumerate(self.cleaned_data["headers"].splitlines(), 1):
            if not line.strip():
                continue
            key, colon, value = line.partition(":")
            key = key.strip()
            if not colon or not HEADER_NAME.match(key):
                raise forms.ValidationError(
                    f"Line {number} is not “Name: value” with a header name of letters, digits and -: {line!r}."
                )
            parsed.setdefault(key, []).append(value.strip())
        return parsed


class UploadForm(forms.Form):
    """Where uploaded files go: their own names, under ``folder``."""

    folder = forms.CharField(
        required=False,
        widget=forms.TextInput(attrs={"placeholder": "e.g. docs/2025", "size": 24}),
        help_text="Each file is stored under its own name, in this folder.",
    )
    overwrite = forms.BooleanField(
        required=False, label="Replace objects of the same name (else a free name is picked, as Django does)"
    )

    def clean_folder(self) -> str:
        try:
            return clean_prefix(self.cleaned_data["folder"].strip().strip("/"))
        except SuspiciousFileOperation as error:
            raise forms.ValidationError(str(error)) from None
