"""natsstorage's pytest plugin as a project of its own uses it: a pytest run in a subprocess."""

from __future__ import annotations

pytest_plugins = ["pytester"]

SETTINGS = """
SECRET_KEY = "plugin-test-only"
USE_TZ = True
INSTALLED_APPS = ["natsstorage"]
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}
"""

TESTS = """
import socket

from django.core.files.base import ContentFile


def test_saves(nats_storage):
    assert nats_storage.save("a.txt", ContentFile(b"a")) == "a.txt"


def test_upsets_the_server_then_fails(nats_server, nats_storage):
    nats_storage.save("b.txt", ContentFile(b"b"))
    with socket.create_connection(("127.0.0.1", nats_server.port)) as sock:
        sock.recv(4096)
        sock.sendall(b"NOT A COMMAND\\r\\n")
        sock.recv(4096)  # the server's -ERR: it has logged why
    assert nats_storage.exists("b.txt") is False
"""


def test_a_failed_test_shows_what_the_server_logged_while_it_ran(pytester):
    pytester.makepyfile(plugin_settings=SETTINGS, test_project=TESTS)
    pytester.makeini("[pytest]\npythonpath = .\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--ds", "plugin_settings")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*nats-server's warnings and errors*", "*[[]ERR[]]*Client parser ERROR*"])
    assert result.stdout.str().count("Client parser ERROR") == 1  # only the failed test's own troubles


def test_a_project_fixture_named_nats_server_is_left_alone(pytester):
    pytester.makepyfile(
        plugin_settings=SETTINGS,
        conftest="import pytest\n\n@pytest.fixture\ndef nats_server():\n    return 'nats://127.0.0.1:4222'\n",
        test_project=(
            "def test_passes(nats_server):\n    assert nats_server\n\n\ndef test_fails(nats_server):\n    assert 0\n"
        ),
    )
    pytester.makeini("[pytest]\npythonpath = .\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--ds", "plugin_settings")
    result.assert_outcomes(passed=1, failed=1)  # no INTERNALERROR from the plugin's report hook
