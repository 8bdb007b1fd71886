"""Static files in a bucket: ``collectstatic`` uploads into it and ``{% static %}`` links to the view.

``NatsStaticStorage`` gives plain links (static files are public) and replaces a
name on each ``collectstatic``; content the bucket already holds is recognised by
the SHA-256 digest stored in its metadata and not uploaded again.
``NatsManifestStaticStorage`` adds Django's hashed names (``ManifestFilesMixin``),
stored with a long ``Cache-Control`` since a hashed name's content never changes.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from typing import IO, Any, ClassVar

from django.contrib.staticfiles.storage import ManifestFilesMixin

from natsstorage import contenttypes, saving
from natsstorage.storage import NatsStorage

HASH_BYTES = 1024 * 1024  # read at a time when hashing a file before upload
IMMUTABLE = "public, max-age=31536000, immutable"  # a year: what a name that changes with its content earns
# ManifestFilesMixin's names: "name.<12 hex digits>.ext" (hashed_name uses md5's first 12).
HASHED_NAME = re.compile(r"\.[0-9a-f]{12}(\.[^./]+)?$")


class NatsStaticStorage(NatsStorage):
    """``STORAGES["staticfiles"]``: bucket ``static`` unless told, public links, names replaced in place."""

    defaults: ClassVar[dict[str, Any]] = {"bucket": "static", "public": True, "file_overwrite": True}

    def _save(self, name: str, content: IO[Any]) -> str:
        if self.holds(name, content):
            return name
        return super()._save(name, content)

    def holds(self, name: str, content: IO[Any], *, refresh: bool = True) -> bool:
        """Whether ``name`` already holds exactly ``content`` (read here, never from the bucket): same size
        and SHA-256 as its metadata says. Headers that changed (a new ``Cache-Control``) are updated in place,
        unless ``refresh`` is False (a dry run)."""
        try:
            info = self.info(name)
            content.seek(0)
        except (FileNotFoundError, AttributeError, OSError):
            return False
        sha256, size, sample = hashlib.sha256(), 0, b""
        while piece := content.read(HASH_BYTES):
            data = piece.encode() if isinstance(piece, str) else piece
            sha256.update(data)
            size += len(data)
            sample = sample or data[: contenttypes.SNIFF_BYTES]  # what decides a text type's charset
        content.seek(0)
        if size != info.size or sha256.digest() != info.sha256:
            return False
        wanted = saving.head_for(self, name, getattr(content, "content_type", None), sample)
        headers = {key: list(values) for key, values in info.headers.items()}
        if refresh and (headers != wanted.headers or dict(info.metadata) != wanted.metadata):
            # A new Cache-Control, say: no need to upload again.
            self.update_meta(name, headers=wanted.headers, metadata=wanted.metadata)
        return True


class NatsManifestStaticStorage(ManifestFilesMixin, NatsStaticStorage):  # type: ignore[misc]
    """``NatsStaticStorage`` with Django's hashed names and ``staticfiles.json`` manifest.

    While post-processing, Django deletes each hashed file it is about to write again: those
    deletions wait to the end and are dropped when the same name is written, so a second
    ``collectstatic`` of unchanged sources uploads nothing.
    """

    _deferred: set[str] | None = None

    def get_object_parameters(self, name: str) -> dict[str, str]:
        parameters = super().get_object_parameters(name)
        if HASHED_NAME.search(name):
            parameters.setdefault("Cache-Control", IMMUTABLE)
        return parameters

    def post_process(
        self, paths: dict[str, Any], dry_run: bool = False, **options: Any
    ) -> Iterator[tuple[str, str, bool] | tuple[str, None, RuntimeError]]:
        self._deferred = set()
        try:
            # By keyword: ManifestFilesMixin reads ``dry_run`` from its kwargs to skip writing the manifest.
            yield from super().post_process(paths, dry_run=dry_run, **options)
        finally:
            deferred, self._deferred = self._deferred, None
            for name in sorted(deferred):
                super().delete(name)

    def delete(self, name: str) -> None:
        if self._deferred is not None:
            self._deferred.add(name)
        else:
            super().delete(name)

    def exists(self, name: str) -> bool:
        if self._deferred is not None and name in self._deferred:
            return False
        return super().exists(name)

    def _save(self, name: str, content: IO[Any]) -> str:
        if self._deferred is not None:
            self._deferred.discard(name)
        return super()._save(name, content)
