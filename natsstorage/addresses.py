"""Where a storage's files are reached over HTTP: ``url()``, ``base_url`` and ``upload_url()``, built locally."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING
from urllib.parse import urlencode

from django.core.exceptions import ImproperlyConfigured, SuspiciousFileOperation
from django.urls import NoReverseMatch, reverse

from natsstorage import conf, direct, signing
from natsstorage.names import clean_name, leads_elsewhere


class Addresses:
    """The part of ``NatsStorage`` that gives links: to its files (signed unless ``public``), and to upload one."""

    if TYPE_CHECKING:

        @property
        def config(self) -> conf.Config: ...

        def key(self, name: str) -> str: ...

        def get_available_name(self, name: str, max_length: int | None = None) -> str: ...

    @property
    def base_url(self) -> str | None:
        """The URL of this storage's files, ending in ``/``: the ``base_url`` option (a lazy one evaluated now),
        else where ``natsstorage.urls`` serves the location. Assignable as FileSystemStorage's (``None``: no URL)."""
        configured = self.__dict__.get("_base_url", self.config.base_url)
        if "_base_url" in self.__dict__ and configured is None:
            return None
        if configured is not None:
            url = str(configured)
            return url if url.endswith("/") else url + "/"
        marker = self._reverse("serve", bucket=self.config.bucket, name="_")
        location = self.config.location
        return marker[:-1] + (signing.uri(location) + "/" if location else "")

    @base_url.setter
    def base_url(self, value: str | None) -> None:
        self.__dict__["_base_url"] = value

    def url(
        self,
        name: str | None,
        expire: int | timedelta | None = None,
        parameters: Mapping[str, str] | None = None,
    ) -> str:
        """A link to ``name``: signed and expiring unless the storage is ``public``. Built locally.

        ``expire`` (seconds) overrides ``url_expiry`` for this link. ``parameters`` ask the view to
        send a header, by django-storages' names (``ResponseContentDisposition``,
        ``ResponseContentType``, ...) or the header's; they are signed with the link.
        """
        root = self.base_url
        if root is None:
            raise ValueError("This file is not accessible via a URL.")
        if name is None:
            return root
        link = root + signing.uri(name).lstrip("/")
        overrides = signing.response_overrides(parameters)
        if self.config.public and not overrides:  # as FileSystemStorage's: quoted, "path/" and "ab%00c" included
            if leads_elsewhere(name):
                raise SuspiciousFileOperation(f"a link to {name!r} would lead out of the bucket's path")
            return link
        # The name the link carries (a backslash reads as "/" there), which is what the view checks and signs.
        carried = self.key(name.replace("\\", "/").lstrip("/"))
        query = signing.sign(self.config.bucket, carried, expiry=self._expiry(expire), overrides=overrides)
        return link + "?" + urlencode(query)

    def upload_url(
        self,
        name: str,
        *,
        max_size: int,
        content_types: Sequence[str] | None = None,
        expire: int | timedelta | None = None,
        max_length: int | None = None,
    ) -> str:
        """A signed link a browser ``PUT``s a file to (docs/direct-uploads.md): at most ``max_size`` bytes, of
        one of ``content_types`` (``"image/*"``; None: any), stored under ``name`` made free now (as ``save()``
        does, with ``max_length``) unless ``file_overwrite``. Works for ``expire`` seconds (``url_expiry``)."""
        name = self.get_available_name(clean_name(name), max_length=max_length)
        self.key(name)  # SuspiciousFileOperation for a name the bucket cannot hold
        config = self.config
        link = direct.Link.new(config.bucket, config.location, name, max_size=max_size, content_types=content_types)
        return self._reverse("upload", token=link.token(expiry=self._expiry(expire)))

    def _expiry(self, expire: int | timedelta | None) -> int:
        seconds = expire.total_seconds() if isinstance(expire, timedelta) else expire
        return int(seconds) if seconds is not None else self.config.url_expiry

    def _reverse(self, view: str, **kwargs: str) -> str:
        try:
            return reverse(f"natsstorage:{view}", kwargs=kwargs)
        except NoReverseMatch:
            raise ImproperlyConfigured(
                f"NatsStorage for bucket {self.config.bucket!r} has no URL: add "
                "path('files/', include('natsstorage.urls')) to your URLconf, or set the base_url option"
            ) from None
