from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("natsstorage", "0001_initial")]

    operations = [
        migrations.CreateModel(
            name="NatsObject",
            fields=[
                ("key", models.CharField(max_length=255, primary_key=True, serialize=False)),
            ],
            options={
                "verbose_name": "NATS object",
                "managed": False,
                "default_permissions": (),
            },
        ),
        migrations.AlterModelOptions(
            name="bucket",
            options={
                "default_permissions": ("view",),
                "managed": False,
                "permissions": [
                    ("add_object", "Can upload objects to NATS buckets"),
                    ("change_object", "Can change the description and headers of objects in NATS buckets"),
                    ("delete_object", "Can delete objects from NATS buckets"),
                ],
            },
        ),
    ]
