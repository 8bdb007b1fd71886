"""``collectstatic`` that skips a file the bucket already holds, by its SHA-256, whatever the modification times.

Django's own compares modification times, so after a fresh checkout it deletes and uploads every
file again. This one is used when ``natsstorage`` comes before ``django.contrib.staticfiles`` in
``INSTALLED_APPS``; with any other storage it behaves exactly as Django's.
"""

from __future__ import annotations

from typing import Any

from django.contrib.staticfiles.management.commands import collectstatic

from natsstorage.static import NatsStaticStorage


class Command(collectstatic.Command):
    def delete_file(self, path: str, prefixed_path: str, source_storage: Any) -> bool:
        if isinstance(self.storage, NatsStaticStorage):
            with source_storage.open(path) as source:
                unchanged = self.storage.holds(prefixed_path, source, refresh=not self.dry_run)
            if unchanged:
                if prefixed_path not in self.unmodified_files:
                    self.unmodified_files.append(prefixed_path)
                self.log(f"Skipping '{path}' (not modified)")  # Django's words: tools read them
                self.log(f"  the bucket holds the same size and SHA-256 as '{path}'", level=3)
                return False
        return bool(super().delete_file(path, prefixed_path, source_storage))
