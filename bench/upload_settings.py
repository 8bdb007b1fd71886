"""Settings of the server ``bench/upload.py`` starts: ``tests.settings`` with its handlers and storage chosen.

``BENCH_UPLOAD_HANDLERS``: ``nats`` (``NatsUploadHandler`` first) or ``django`` (Django's own).
``BENCH_UPLOAD_STORAGE``: ``nats`` (the bucket ``BENCH_UPLOAD_BUCKET``) or ``files`` (FileSystemStorage).
``BENCH_UPLOAD_DIR``: where the database, the temporary files and FileSystemStorage's files go.
"""

import os
from pathlib import Path

from django.conf import global_settings

from tests.settings import *  # noqa: F403

DIR = Path(os.environ["BENCH_UPLOAD_DIR"])
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": DIR / "db.sqlite3"}}
FILE_UPLOAD_TEMP_DIR = str(DIR / "tmp")
STORAGES = {
    **global_settings.STORAGES,
    "default": (
        {"BACKEND": "natsstorage.NatsStorage", "OPTIONS": {"bucket": os.environ["BENCH_UPLOAD_BUCKET"]}}
        if os.environ["BENCH_UPLOAD_STORAGE"] == "nats"
        else {"BACKEND": "django.core.files.storage.FileSystemStorage", "OPTIONS": {"location": DIR / "media"}}
    ),
}
FILE_UPLOAD_HANDLERS = (
    ["natsstorage.uploads.NatsUploadHandler"] if os.environ["BENCH_UPLOAD_HANDLERS"] == "nats" else []
) + [*global_settings.FILE_UPLOAD_HANDLERS]
