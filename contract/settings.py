"""Settings for Django's test suite with NatsStorage as the storage (used by contract/harness.py).

Django's tests/test_sqlite.py plus the NATS server that contract/run.py started,
so that tests/runtests.py's own setup (INSTALLED_APPS, URLconf, ...) applies.
"""

import os

DATABASES = {
    "default": {"ENGINE": "django.db.backends.sqlite3"},
    "other": {"ENGINE": "django.db.backends.sqlite3"},
}
SECRET_KEY = "django_tests_secret_key"
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
USE_TZ = False

NATSSTORAGE = {"servers": [os.environ["NATSSTORAGE_CONTRACT_URL"]], "timeout": 5.0}

STORAGES = {
    # public: unsigned URLs, comparable with FileSystemStorage's.
    "default": {"BACKEND": "natsstorage.NatsStorage", "OPTIONS": {"bucket": "contract-default", "public": True}},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
