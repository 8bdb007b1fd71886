"""Include under any prefix: ``path("files/", include("natsstorage.urls"))``."""

from __future__ import annotations

from django.urls import path

from natsstorage import views

app_name = "natsstorage"
urlpatterns = [
    path("<str:bucket>/<path:name>", views.serve, name="serve"),
]
