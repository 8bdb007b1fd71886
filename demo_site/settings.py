"""Settings of the demo: a small real project with a FileField on a NATS Object Store bucket.

State lives in demo_site/data/ (git-ignored; $DEMO_DATA_DIR if set): the SQLite database, the
secret key and, when ``manage.py demo`` starts one, the nats-server's
JetStream store. NATS is wherever ``NATS_URL`` says; ``manage.py demo``
sets it to the nats-server it starts when it is not set.
"""

import os
import secrets
from pathlib import Path

from django.conf import global_settings

BASE_DIR = Path(__file__).resolve().parent
DATA_DIR = Path(os.environ.get("DEMO_DATA_DIR") or BASE_DIR / "data")  # elsewhere for the tests
DATA_DIR.mkdir(exist_ok=True)

_secret_key_file = DATA_DIR / "secret_key"
if not _secret_key_file.exists():
    _secret_key_file.write_text(secrets.token_urlsafe(50))
SECRET_KEY = _secret_key_file.read_text().strip()  # kept, so signed links survive a restart

DEBUG = True
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "natsstorage",  # above staticfiles, as the docs say: its collectstatic is the one that runs
    "django.contrib.staticfiles",
    "demo_site.documents",
]
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "natsstorage.middleware.UploadFailureMiddleware",  # 507 or 503 for a form the bucket cannot take
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]
ROOT_URLCONF = "demo_site.urls"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]
WSGI_APPLICATION = "demo_site.wsgi.application"
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": DATA_DIR / "db.sqlite3"}}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
USE_TZ = True
TIME_ZONE = "UTC"  # Django's default is America/Chicago; the admin and the natsos_* commands both show this zone
STATIC_URL = "static/"

# Project-wide NatsStorage settings; the servers come from NATS_URL.
NATSSTORAGE = {"description": "natsstorage demo"}

# Uploads stream into the bucket as they arrive: no temporary file, and saving a Document only names
# its files there (natsstorage.uploads). They are staged in the bucket of the alias below, the one
# the Document's fields use ("configs").
STORAGES = {
    **global_settings.STORAGES,
    "documents": {"BACKEND": "natsstorage.NatsStorage", "OPTIONS": {"bucket": "configs"}},
}
NATSSTORAGE_UPLOAD_STORAGE = "documents"
FILE_UPLOAD_HANDLERS = ["natsstorage.uploads.NatsUploadHandler", *global_settings.FILE_UPLOAD_HANDLERS]
