from django.apps import AppConfig


class DocumentsConfig(AppConfig):
    name = "demo_site.documents"
    label = "documents"

    def ready(self) -> None:
        from demo_site.documents import models  # noqa: F401 - connects the delete signal
