from django.db import migrations, models


class Migration(migrations.Migration):
    initial = True

    dependencies: list[tuple[str, str]] = []

    operations = [
        migrations.CreateModel(
            name="Bucket",
            fields=[
                ("name", models.CharField(max_length=255, primary_key=True, serialize=False)),
            ],
            options={
                "managed": False,
                "default_permissions": ("view",),
                "permissions": [("delete_object", "Can delete objects from NATS buckets")],
            },
        ),
    ]
