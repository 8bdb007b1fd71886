"""``tests.settings`` for a server in a process of its own whose uploads stage in ``$STAGING_BUCKET`` (test_uploads)."""

import os

from django.conf import global_settings

from tests.settings import *  # noqa: F403

STORAGES = {
    **global_settings.STORAGES,
    "default": {"BACKEND": "natsstorage.NatsStorage", "OPTIONS": {"bucket": os.environ["STAGING_BUCKET"]}},
}
FILE_UPLOAD_HANDLERS = ["natsstorage.uploads.NatsUploadHandler", *global_settings.FILE_UPLOAD_HANDLERS]
FILE_UPLOAD_TEMP_DIR = os.environ.get("STAGING_TEMP_DIR")  # None: Python's temporary directory
