"""Django's tests/urls.py plus natsstorage.urls, where NatsStorage's docs say a project puts it.

Without it, url() of a storage with no base_url has nowhere to point (FileSystemStorage
would fall back to MEDIA_URL); tests that need other URLs override ROOT_URLCONF themselves.
"""

from django.urls import include, path
from urls import urlpatterns as django_test_urlpatterns  # Django's tests/urls.py (empty)

urlpatterns = [*django_test_urlpatterns, path("files/", include("natsstorage.urls"))]
