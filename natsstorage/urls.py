"""Include under any prefix: ``path("files/", include("natsstorage.urls"))``."""

from __future__ import annotations

from django.urls import path

from natsstorage import receiving, views

app_name = "natsstorage"
urlpatterns = [
    # "~" is in no bucket's name: these never hide an object.
    path("~upload/<str:token>", receiving.receive, name="upload"),
    path("~upload/", receiving.prepare, name="prepare_upload"),
    path("<str:bucket>/<path:name>", views.serve, name="serve"),
]
