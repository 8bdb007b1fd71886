from django.contrib import admin
from django.urls import include, path
from django.views.generic import TemplateView

from tests.testapp import views

urlpatterns = [
    path("admin/", admin.site.urls),
    path("files/", include("natsstorage.urls")),
    path("styled/", TemplateView.as_view(template_name="testapp/styled.html")),  # static files from a bucket
    path("sizes/", views.sizes),  # a page touching fifty files
    path("attach/", views.attach),  # a model form with files
    path("keep/", views.keep),  # files saved under several names
    path("received/", views.received),  # an async view that reads a form
    path("direct/", views.direct_upload),  # a DirectUploadField
]
