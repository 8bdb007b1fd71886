from django.contrib import admin
from django.urls import include, path
from django.views.generic import TemplateView

urlpatterns = [
    path("admin/", admin.site.urls),
    path("files/", include("natsstorage.urls")),
    path("styled/", TemplateView.as_view(template_name="testapp/styled.html")),  # static files from a bucket
]
