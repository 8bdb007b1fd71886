"""Settings for the test suite; conftest.py points NATSSTORAGE at a real nats-server."""

SECRET_KEY = "tests-only-not-secret"
DEBUG = False
USE_TZ = True
INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "natsstorage",  # before staticfiles: its collectstatic skips files the bucket holds by SHA-256
    "django.contrib.staticfiles",
    "tests.testapp",
]
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}
ROOT_URLCONF = "tests.urls"
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "natsstorage.middleware.UploadFailureMiddleware",  # 507 or 503 for a form the bucket cannot take
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
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
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
NATSSTORAGE = {"timeout": 5.0}
STATIC_URL = "static/"  # the live server (browser test) needs one
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]  # the real-server tests; the test client adds "testserver"
