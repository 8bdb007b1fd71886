"""Property tests over names: every string round-trips exactly or is refused; none reaches another object."""

from __future__ import annotations

import base64
import json

from django.core.exceptions import SuspiciousFileOperation
from django.core.files.base import ContentFile
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .helpers import with_nats

# Characters that matter to NATS subjects, paths and Django, mixed into arbitrary Unicode.
TRICKY = list("./\\*>$ \t\x00\n\x7f\x85-_=~") + ["..", "ä", "名", "\u2028", "\ud800", "🎉"]
NAMES = st.one_of(
    st.text(max_size=40),
    st.lists(st.sampled_from([*TRICKY, "a", "b", "dir/"]), max_size=12).map("".join),
)


@settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(name=NAMES)
def test_any_name_round_trips_or_is_refused(make_storage, name):
    storage = make_storage(file_overwrite=True)
    storage.save("sentinel", ContentFile(b"untouched"))
    data = repr(name).encode()
    try:
        saved = storage.save(name, ContentFile(data))
    except SuspiciousFileOperation:
        assert_only(storage, {"sentinel"})  # refused, and nothing was left behind
        return
    assert saved == name.replace("\\", "/")
    assert storage.exists(saved)
    with storage.open(saved) as f:
        assert f.read() == data
    directory, _, file = saved.rpartition("/")
    assert file in storage.listdir(directory)[1]
    assert_only(storage, {"sentinel", saved})
    storage.delete(saved)
    assert not storage.exists(saved)
    assert storage.open("sentinel").read() == b"untouched"


def assert_only(storage, names: set[str]) -> None:
    """The bucket's metadata subjects are exactly these names' (deleted ones aside): nothing leaked."""

    async def subjects(nc):
        stream = f"OBJ_{storage.config.bucket}"
        body = f'{{"subjects_filter": "$O.{storage.config.bucket}.M.>"}}'.encode()
        reply = await nc.request(f"$JS.API.STREAM.INFO.{stream}", body, timeout=5)
        return json.loads(reply.data)["state"].get("subjects") or {}

    prefix = f"$O.{storage.config.bucket}.M."
    found = {base64.urlsafe_b64decode(subject[len(prefix) :]).decode() for subject in with_nats(storage, subjects)}
    live = {name for name in found if is_object(storage, name)}
    assert live == names


def is_object(storage, name: str) -> bool:
    """An object by that name (``exists()`` is also true of a "directory" that other names are under)."""
    try:
        storage.info(name)
    except FileNotFoundError:
        return False
    return True
