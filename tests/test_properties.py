"""Property tests: every name round-trips exactly or is refused, none reaches another object; and two processes
taking turns on the same names each see what the other did, whatever each remembers of them."""

from __future__ import annotations

import base64
import itertools
import json

from django.core.exceptions import SuspiciousFileOperation
from django.core.files.base import ContentFile
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .helpers import with_nats

STEPS = st.lists(
    st.tuples(
        st.sampled_from([0, 1]),  # which process
        st.sampled_from(["save", "replace", "delete", "describe", "read"]),
        st.sampled_from(["a.txt", "b.txt"]),
    ),
    max_size=30,
)
RUNS = itertools.count()  # a prefix per example: the bucket is the test's, shared by its examples
# The same examples every run, each test's bucket shared by its examples (a function-scoped fixture).
REPEATABLE = settings(
    deadline=None, derandomize=True, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

# Characters that matter to NATS subjects, paths and Django, mixed into arbitrary Unicode.
TRICKY = list("./\\*>$ \t\x00\n\x7f\x85-_=~") + ["..", "ä", "名", "\u2028", "\ud800", "🎉"]
NAMES = st.one_of(
    st.text(max_size=40),
    st.lists(st.sampled_from([*TRICKY, "a", "b", "dir/"]), max_size=12).map("".join),
)


@settings(REPEATABLE, max_examples=150)
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


@settings(REPEATABLE, max_examples=40)
@given(steps=STEPS)
def test_two_processes_taking_turns_each_see_what_the_other_did(make_storage, steps):
    # Each storage remembers the versions it wrote, read and deleted, and its writes expect them: the other's
    # writes make that memory stale, and the server's compare-and-set must catch every case.
    location = f"run{next(RUNS)}"
    processes = [make_storage(location=location) for _ in range(2)]
    observer = make_storage(location=location)  # looks only: what the two remember is theirs alone
    model: dict[str, tuple[bytes, str]] = {}  # what the bucket must hold: content and description, by name
    for step, (process, operation, name) in enumerate(steps):
        storage, data = processes[process], f"{process}:{step}".encode()
        if operation == "save":
            saved = storage.save(name, ContentFile(data))
            assert (saved == name) is (name not in model)  # a taken name gets Django's alternative
            model[saved] = (data, "")
        elif operation == "replace":
            with storage.open(name, "wb") as handle:
                handle.write(data)
            model[name] = (data, "")
        elif operation == "delete":
            storage.delete(name)
            model.pop(name, None)
        elif operation == "describe" and name in model:
            assert storage.update_meta(name, description=f"step {step}").description == f"step {step}"
            model[name] = (model[name][0], f"step {step}")
        elif operation == "read" and name in model:
            with storage.open(name) as handle:
                assert handle.read() == model[name][0]
        assert observer.exists(name) is (name in model)
    for name, (data, description) in model.items():
        assert observer.open(name).read() == data and observer.info(name).description == description
