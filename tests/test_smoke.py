from django.core.files.base import ContentFile


def test_round_trip(storage):
    name = storage.save("a/b.txt", ContentFile(b"hello"))
    assert name == "a/b.txt"
    assert storage.exists(name)
    with storage.open(name) as f:
        assert f.read() == b"hello"
    assert storage.size(name) == 5
    assert storage.listdir("") == (["a"], [])
    assert storage.listdir("a") == ([], ["b.txt"])
    storage.delete(name)
    assert not storage.exists(name)


def test_status_and_bucket_names(storage):
    from natsstorage.storage import bucket_names

    storage.save("x", ContentFile(b"12345"))
    status = __import__("natsstorage._bridge", fromlist=["run"]).run(storage.bucket.status())
    assert status.objects == 1 and status.bytes > 5
    assert storage.config.bucket in bucket_names()
