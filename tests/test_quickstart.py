"""docs/quickstart.md, followed literally: a fresh virtual environment, a fresh ``django-admin startproject``;
and the docs built as docs/contributing.md says, in a fresh clone.

The code blocks marked ``<!-- walkthrough: ... -->`` in the pages are what runs here, so the pages cannot drift:
install as it says (from a copy of this checkout, as from a clone: nothing is published), configure as it
says, ``migrate``, ``collectstatic``, then upload a file through the admin, fetch it, and fetch the admin's CSS.
pip may reach PyPI for Django, nats-py and Sphinx.
"""

from __future__ import annotations

import http.cookiejar
import re
import shlex
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import natsstorage
from natsstorage import NatsStorage
from natsstorage.buckettools import BucketTools
from natsstorage.testing import free_port

from .helpers import fresh_clone, pip_env

ROOT = Path(__file__).resolve().parent.parent
QUICKSTART = ROOT / "docs" / "quickstart.md"
CONTRIBUTING = ROOT / "docs" / "contributing.md"
MARKED_BLOCK = re.compile(r"<!-- walkthrough: (\S+) -->\n```\w*\n(.*?)```", re.DOTALL)
INSTALL_TIMEOUT = 600.0  # seconds for pip, which may download Django
SERVE_TIMEOUT = 60.0


def walkthrough(page: Path = QUICKSTART) -> dict[str, str]:
    """The page's marked code blocks, by their mark."""
    return dict(MARKED_BLOCK.findall(page.read_text()))


def commands(block: str) -> list[list[str]]:
    """A shell block's commands, comments dropped."""
    return [shlex.split(line, comments=True) for line in block.splitlines() if shlex.split(line, comments=True)]


class Browser:
    """An admin session as a browser keeps it: cookies and the CSRF token of each form."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))

    def get(self, path: str) -> tuple[int, str, bytes]:
        with self.opener.open(self.url + path, timeout=30) as response:
            return response.status, response.headers.get("Content-Type", ""), response.read()

    def post(self, path: str, fields: dict[str, str], files: dict[str, tuple[str, bytes]] | None = None) -> str:
        page = self.get(path)[2].decode()
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)[1]
        fields = {**fields, "csrfmiddlewaretoken": token}
        boundary = "----quickstart"
        parts = [
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
            for name, value in fields.items()
        ]
        for field, (filename, data) in (files or {}).items():
            head = f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; filename="{filename}"\r\n\r\n'
            parts.append(head.encode() + data + b"\r\n")
        request = urllib.request.Request(
            self.url + path,
            b"".join(parts) + f"--{boundary}--\r\n".encode(),
            {"Content-Type": f"multipart/form-data; boundary={boundary}", "Referer": self.url + path},
        )
        with self.opener.open(request, timeout=60) as response:
            return response.read().decode()


def test_the_quickstart_followed_literally_gives_a_styled_admin_that_stores_files_in_nats(tmp_path, nats_server):
    blocks = walkthrough()
    assert set(blocks) == {"install", "settings.py", "urls.py", "commands"}, "the marks in docs/quickstart.md moved"
    env = {
        **pip_env(tmp_path),
        "PATH": f"{tmp_path / 'venv' / 'bin'}:/usr/bin:/bin",
        "NATS_URL": nats_server.url,  # where the page's default (no "servers") finds NATS
    }

    def run(args: list[str], cwd: Path, timeout: float = 120.0) -> str:
        done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
        assert done.returncode == 0, f"{shlex.join(args)}:\n{done.stdout}\n{done.stderr}"
        return done.stdout + done.stderr

    # Install, as the page says: git clone (here, a copy of this checkout), then pip.
    subprocess.run([sys.executable, "-m", "venv", str(tmp_path / "venv")], check=True)
    for args in commands(blocks["install"]):
        if args[:2] == ["git", "clone"]:
            fresh_clone(tmp_path / Path(args[2]).name)
        else:
            run(args, tmp_path, INSTALL_TIMEOUT)

    # A fresh project, configured as the page says: its blocks added to the files startproject wrote.
    project = tmp_path / "mysite"
    project.mkdir()
    run(["django-admin", "startproject", "mysite", "."], project)
    for name in ("settings.py", "urls.py"):
        with (project / "mysite" / name).open("a") as file:
            file.write("\n" + blocks[name])

    # Its commands: check, migrate, collectstatic (each with --noinput where Django would ask).
    for args in commands(blocks["commands"]):
        out = run([*args, "--noinput"] if args[-1] == "collectstatic" else args, project)
        assert "WARNINGS" not in out and "ERRORS" not in out, out
    run(["python", "-c", CREATE_ADMIN], project)

    # The admin, served by runserver: styled from the bucket, uploading into it.
    port = free_port()
    server = subprocess.Popen(
        ["python", "manage.py", "runserver", "--noreload", f"127.0.0.1:{port}"],
        cwd=project,
        env={**env, "DJANGO_SETTINGS_MODULE": "mysite.settings"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        browser = Browser(f"http://127.0.0.1:{port}")
        deadline = time.monotonic() + SERVE_TIMEOUT
        while True:
            try:
                browser.get("/admin/login/")
                break
            except OSError:
                assert server.poll() is None and time.monotonic() < deadline, "runserver did not start"
                time.sleep(0.2)
        browser.post("/admin/login/", {"username": "admin", "password": "quickstart", "next": "/admin/"})

        status, _, page = browser.get("/admin/")
        # startproject's DEBUG = True: the manifest storage links the unhashed names, which collectstatic stored too
        css = re.search(r'<link rel="stylesheet" href="(/files/site/static/admin/css/base\.css)"', page.decode())
        links = re.findall(r'<link rel="stylesheet"[^>]*>', page.decode())
        assert status == 200 and css, f"the admin links no base.css from the bucket: {links}"
        status, content_type, body = browser.get(css[1])
        assert (status, content_type.split(";")[0]) == (200, "text/css") and b"body" in body

        answer = browser.post(
            "/admin/natsstorage/bucket/site/upload/", {"folder": "media/uploads"}, {"files": ("hello.txt", b"hello\n")}
        )
        assert "Uploaded 1 object to “media/uploads/”" in answer
        link = re.search(r'href="([^"]+)" class="nats-download" title="Download media/uploads/hello\.txt"', answer)
        assert link, answer
        status, _, body = browser.get(link[1].replace("&amp;", "&"))
        assert (status, body) == (200, b"hello\n")
    finally:
        server.terminate()
        server.wait(30)
        assert server.stderr is not None
        server.stderr.close()
        BucketTools(NatsStorage("site", servers=nats_server.url)).destroy()


def test_the_docs_build_in_a_fresh_clone_with_the_commands_contributing_gives(tmp_path):
    clone = fresh_clone(tmp_path / "natsstorage")
    block = walkthrough(CONTRIBUTING)["docs"]
    done = subprocess.run(
        ["sh", "-e", "-c", block], cwd=clone, env=pip_env(tmp_path), capture_output=True, text=True, timeout=900
    )
    assert done.returncode == 0, f"{block}\n{done.stdout}\n{done.stderr}"
    index = (clone / "docs" / "_build" / "html" / "index.html").read_text()
    assert f"natsstorage {natsstorage.__version__}" in index


CREATE_ADMIN = """
import django, os
os.environ["DJANGO_SETTINGS_MODULE"] = "mysite.settings"
django.setup()
from django.contrib.auth.models import User
User.objects.create_superuser("admin", "admin@example.com", "quickstart")
"""
