"""The Django site bench/serve.py runs under each server: natsstorage's view and WhiteNoise, the same files.

Read from the environment: ``BENCH_FILES`` (the directory WhiteNoise serves, as ``STATIC_ROOT``), ``NATS_URL``,
and ``BENCH_SITE``: ``site`` (a project's usual middleware, WhiteNoise first as its docs ask), ``origin``
(a media origin: the view alone, no middleware, as docs/serving-at-scale.md suggests) or ``origin-asking``
(the same as the view served before its watch and its disk copies: every request asks for the metadata,
``serve_watch=False``, and large objects come from the bucket, ``serve_files=0``).
"""

from __future__ import annotations

import os

from django.urls import include, path

SITE = os.environ.get("BENCH_SITE", "site")
CACHE_OPTIONS = {"origin-asking": {"serve_watch": False, "serve_files": 0}}.get(SITE, {})
SECRET_KEY = "bench-only-not-secret"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1"]
USE_TZ = True
ROOT_URLCONF = __name__
INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "natsstorage",
    "django.contrib.staticfiles",
]
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}
STATIC_URL = "/static/"
STATIC_ROOT = os.environ.get("BENCH_FILES", "")
STORAGES = {
    "default": {
        "BACKEND": "natsstorage.NatsStorage",
        "OPTIONS": {"bucket": "bench_public", "public": True, **CACHE_OPTIONS},
    },
    "signed": {"BACKEND": "natsstorage.NatsStorage", "OPTIONS": {"bucket": "bench_signed"}},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
SITE_MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]
MIDDLEWARE = SITE_MIDDLEWARE if SITE == "site" else []
LOGGING = {"version": 1, "disable_existing_loggers": False}

urlpatterns = [path("files/", include("natsstorage.urls"))]
