"""Workers forked from one process that imported the app (gunicorn --preload, uWSGI's default) draw nuids of
their own: else two workers' objects would put their chunks under one subject."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

# A preloaded app: Django set up and natsstorage imported, then forked before serving (no thread yet, as in a
# server's master). Parent and child each save an object and sign an upload link, and print the nuids.
PRELOADED_THEN_FORKED = """
import os, sys, django
django.setup()
from django.core.files.base import ContentFile
from natsstorage import NatsStorage
from natsstorage.direct import Link

storage = NatsStorage(sys.argv[1])
child = os.fork()
who = "child" if child == 0 else "parent"
name = storage.save(f"{who}.txt", ContentFile(who.encode()))
signed = Link.new("b", "", "a", max_size=1, content_types=None).nuid
os.write(1, f"{who} {storage.info(name).nuid} {signed}\\n".encode())  # one write: the two lines never interleave
if child:
    os.waitpid(child, 0)
"""


def test_forked_workers_save_and_sign_under_nuids_of_their_own(storage, nats_server):
    environment = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings", "NATS_URL": nats_server.url}
    ran = subprocess.run(
        [sys.executable, "-c", PRELOADED_THEN_FORKED, storage.config.bucket],
        cwd=Path(__file__).parent.parent,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    nuids = {who: (saved, signed) for who, saved, signed in (line.split() for line in ran.stdout.splitlines())}
    assert nuids["child"][0] != nuids["parent"][0]  # the objects' chunks
    assert nuids["child"][1] != nuids["parent"][1]  # the upload links'
    assert storage.open("child.txt").read() == b"child"
    assert storage.open("parent.txt").read() == b"parent"


def test_a_forked_child_has_none_of_its_parents_calls_waiting_their_turns():
    """Else every call of the child would wait two loop turns (``calls._catching_up``), for calls it never had."""
    forked = (
        "import os; from natsstorage import calls\n"
        "calls._catching_up = 2  # calls on the parent's loop, waiting their turns at the fork\n"
        "child = os.fork()\n"
        "if child == 0:\n    os._exit(calls._catching_up)\n"
        "print(os.waitstatus_to_exitcode(os.waitpid(child, 0)[1]))\n"
    )
    ran = subprocess.run([sys.executable, "-c", forked], capture_output=True, text=True, timeout=60, check=True)
    assert ran.stdout.strip() == "0"
