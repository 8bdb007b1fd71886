"""Faults on one server: stopped mid-save, a writer killed mid-save, restarts between operations."""

from __future__ import annotations

import asyncio
import io
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from django.core.files.base import ContentFile
from django.core.management import call_command
from django.test.utils import override_settings
from nats.aio.client import Client

from natsstorage import NatsStorage
from natsstorage.buckettools import BucketTools
from natsstorage.exceptions import NatsUnavailable
from natsstorage.testing import NatsServer

from .helpers import MiB, random_bytes, stream_state, with_nats

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = 2.0  # the storages' timeout here: how long a dead server may keep a save waiting, per wait
LINE_TIMEOUT = 20.0  # seconds for the writer subprocess to start Django and get halfway


class GeneratedFile:
    """A large file made on the fly, as Django's ``File.chunks`` would read it; it can pause halfway."""

    def __init__(self, size: int, *, pause_after: int | None = None) -> None:
        self.name = "generated.bin"
        self.size = size
        self.pause_after = pause_after
        self.paused = threading.Event()
        self.resume = threading.Event()

    def chunks(self, chunk_size: int | None = None) -> Iterator[bytes]:
        piece = random_bytes(MiB)
        for start in range(0, self.size, MiB):
            if start == self.pause_after:
                self.paused.set()
                self.resume.wait(LINE_TIMEOUT)
            yield piece[: min(MiB, self.size - start)]


@pytest.fixture
def server(own_server) -> NatsServer:
    """A server of this test's own, to stop and kill."""
    return own_server()


def frozen(server: NatsServer) -> None:
    """SIGSTOP the server and wait until the kernel has stopped it: on a busy machine it may answer meanwhile."""
    os.kill(server.process.pid, signal.SIGSTOP)
    for _ in range(500):
        with open(f"/proc/{server.process.pid}/stat") as stat:
            if stat.read().rpartition(")")[2].split()[0] == "T":
                return
        time.sleep(0.01)
    raise AssertionError("the server did not stop")


def gc(server: NatsServer, bucket: str, *args: str) -> str:
    out = io.StringIO()
    with override_settings(NATSSTORAGE={"servers": [server.url], "timeout": TIMEOUT}):
        call_command("natsos_gc", bucket, "--min-age", "0", *args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


def test_a_server_stopped_mid_save_fails_the_save_and_keeps_the_previous_version(server, bucket_name, caplog):
    storage = NatsStorage(bucket_name, servers=server.url, timeout=TIMEOUT, file_overwrite=True)
    storage.save("big.bin", ContentFile(b"previous version"))
    content = GeneratedFile(48 * MiB, pause_after=16 * MiB)
    saving, outcome = start_saving(storage, "big.bin", content)
    assert content.paused.wait(LINE_TIMEOUT)
    assert stream_state(storage)["messages"] > 1  # chunks of the new version have landed
    server.stop()
    stopped = time.monotonic()
    content.resume.set()
    saving.join(3 * LINE_TIMEOUT)
    failed_within = time.monotonic() - stopped
    assert not saving.is_alive(), "the save hung on a stopped server"

    [error] = outcome
    # Bounded by the storage's timeout per wait (a write, the acks in flight, the purge that cannot land),
    # with slack for a loaded machine: this proves "no hang", not a speed.
    assert failed_within < 3 * TIMEOUT + LINE_TIMEOUT
    # Never "bucket missing": a stopping nats-server ends JetStream before it closes connections, and a chunk
    # sent in between meets no responder; the save then asks for the stream's info, which goes unanswered too.
    assert isinstance(error, NatsUnavailable), error
    assert f"NATS bucket {bucket_name!r}" in str(error) and f"within {TIMEOUT:g} s" in str(error)
    # Its chunks are left to natsos_gc: at once on a lost connection (a purge could only wait out its timeout),
    # or after a purge JetStream did not answer.
    assert "(natsos_gc will" in caplog.text, caplog.text

    server.start()
    assert storage.open("big.bin").read() == b"previous version"  # the first operation after the restart
    leftover = stream_state(storage)["messages"] - 2  # beside the previous version's chunk and metadata
    if leftover:  # the purge could not reach the stopped server: the chunks are garbage to collect
        chunks = f"{leftover} chunk{'' if leftover == 1 else 's'}"
        assert f"Found 1 orphaned upload in bucket {bucket_name!r}: {chunks}" in gc(server, bucket_name)
        assert f"{leftover} messages removed" in gc(server, bucket_name, "--purge")
    assert stream_state(storage)["messages"] == 2
    assert storage.open("big.bin").read() == b"previous version"


def test_a_server_that_stops_reading_mid_save_fails_the_save_within_its_timeouts(server, bucket_name):
    # Frozen, as behind a network that drops everything without a word: the socket fills, and a wide window
    # would keep the save publishing into it. Every chunk must be acknowledged within the timeout of its sending.
    storage = NatsStorage(bucket_name, servers=server.url, timeout=TIMEOUT, window=1024)
    storage.save("before.txt", ContentFile(b"before"))
    saving, outcome = start_saving(storage, "big.bin", GeneratedFile(256 * MiB))
    deadline = time.monotonic() + LINE_TIMEOUT
    while stream_state(storage)["messages"] < 4:  # the save is under way
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert server.process is not None
    server.process.send_signal(signal.SIGSTOP)
    frozen = time.monotonic()
    saving.join(3 * LINE_TIMEOUT)
    failed_within = time.monotonic() - frozen
    server.stop(kill=True)
    assert not saving.is_alive(), "the save hung on a frozen server"

    [error] = outcome
    assert isinstance(error, NatsUnavailable), error
    assert f"within {TIMEOUT:g} s" in str(error)
    assert failed_within < 3 * TIMEOUT + LINE_TIMEOUT  # no hang, with slack for a loaded machine


def test_a_thousand_calls_to_a_server_that_stopped_reading_each_fail_within_the_timeout(server, bucket_name):
    # Every command over nats-py's buffer limit queues a flush, and a flusher stuck on a server that stopped
    # reading never takes them: a bounded queue (1,024) would keep every later command waiting for room.
    storage = NatsStorage(bucket_name, servers=server.url, timeout=TIMEOUT)
    storage.save("a.txt", ContentFile(b"a"))
    assert server.process is not None
    server.process.send_signal(signal.SIGSTOP)

    def publish(count: int) -> None:
        async def send(nc: Client) -> None:
            piece = random_bytes(MiB)
            await asyncio.gather(*(nc.publish("natsstorage.test.ballast", piece) for _ in range(count)))

        with_nats(storage, send)

    publish(48)  # the flusher writes it all, then waits for the socket
    publish(3)  # nats-py's buffer, past its limit: each command now queues a flush

    async def many() -> tuple[list[object], float]:
        started = time.monotonic()
        calls = (storage.aexists("a.txt") for _ in range(1100))
        outcomes = await asyncio.wait_for(asyncio.gather(*calls, return_exceptions=True), 3 * LINE_TIMEOUT)
        return outcomes, time.monotonic() - started

    try:
        outcomes, took = asyncio.run(many())
    finally:
        server.stop(kill=True)
    assert {type(outcome) for outcome in outcomes} == {NatsUnavailable}
    assert took < 3 * TIMEOUT + LINE_TIMEOUT, f"{took:.1f} s"  # no call waited for room: no hang


@pytest.mark.parametrize(
    "ask",
    [
        pytest.param(lambda storage: storage.exists("a.txt"), id="a direct get"),
        # A JetStream API request (a stream's info, a watch's consumer): natsos_watch resumed only a whole
        # timeout after a restart, its consumer's creation sent to the server as it shut down.
        pytest.param(lambda storage: BucketTools(storage).bucket_exists(), id="a JetStream API request"),
    ],
)
def test_a_call_waiting_for_an_answer_when_its_connection_drops_fails_then_not_at_its_timeout(server, bucket_name, ask):
    # Frozen, the server takes the question and says nothing; killed, it closes the connection. The answer
    # will never come (nats-py keeps no request across a reconnect): the call must not wait out its timeout.
    storage = NatsStorage(bucket_name, servers=server.url, timeout=3 * LINE_TIMEOUT)
    storage.save("a.txt", ContentFile(b"a"))
    frozen(server)
    outcome: list[object] = []

    def asking_it() -> None:
        try:
            outcome.append(ask(storage))
        except Exception as error:  # noqa: BLE001 - the test inspects it
            outcome.append(error)

    asking = threading.Thread(target=asking_it, daemon=True)
    asking.start()
    time.sleep(0.5)  # the question is out
    server.stop(kill=True)  # a stopped process dies of SIGKILL: its connections close
    asking.join(LINE_TIMEOUT)
    assert not asking.is_alive(), "the call waited for an answer on a connection already lost"
    [error] = outcome
    assert isinstance(error, NatsUnavailable) and "the connection to NATS was lost" in str(error), error


def start_saving(storage: NatsStorage, name: str, content: GeneratedFile) -> tuple[threading.Thread, list[object]]:
    """A save in a thread of its own, and where its name or error will be; a daemon: a hang fails one test only."""
    outcome: list[object] = []

    def save() -> None:
        try:
            outcome.append(storage.save(name, content))
        except Exception as error:  # noqa: BLE001 - the test inspects it
            outcome.append(error)

    saving = threading.Thread(target=save, daemon=True)
    saving.start()
    return saving, outcome


WRITER = """
import os, sys, time
import django
django.setup()
from natsstorage import NatsStorage

class Big:
    name = "big.bin"
    def chunks(self, chunk_size=None):
        piece = os.urandom(1024 * 1024)
        for i in range(64):
            if i == 8:
                print("halfway", flush=True)
                time.sleep(60)  # SIGKILLed here
            yield piece

NatsStorage(sys.argv[1], servers=sys.argv[2]).save("big.bin", Big())
"""


def settled_message_count(storage: NatsStorage) -> int:
    count, deadline = -1, time.monotonic() + LINE_TIMEOUT
    while (now := stream_state(storage)["messages"]) != count:
        assert time.monotonic() < deadline
        count = now
        time.sleep(0.3)
    return count


def test_a_writer_killed_mid_save_leaves_chunks_that_gc_collects(server, bucket_name):
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings", "PYTHONPATH": str(ROOT)}
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, bucket_name, server.url], cwd=ROOT, env=env, stdout=subprocess.PIPE
    )
    try:
        assert writer.stdout is not None
        assert writer.stdout.readline() == b"halfway\n"
        storage = NatsStorage(bucket_name, servers=server.url, timeout=TIMEOUT)
        deadline = time.monotonic() + LINE_TIMEOUT
        while stream_state(storage)["messages"] < 8:  # the first pieces' chunks have landed
            assert time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        writer.send_signal(signal.SIGKILL)
        writer.wait()
        if writer.stdout is not None:
            writer.stdout.close()
    landed = settled_message_count(storage)  # chunks the killed writer had in flight may still land
    assert not storage.exists("big.bin")

    # Too young for the default age: it could be an upload in progress.
    assert "Found 0 orphaned uploads" in gc(server, bucket_name, "--min-age", "1h")
    found = gc(server, bucket_name)
    assert f"Found 1 orphaned upload in bucket {bucket_name!r}: {landed} chunks" in found
    assert f"({landed * storage.config.chunk_size} bytes)" in found
    assert stream_state(storage)["messages"] == landed  # a dry run

    assert f"{landed} messages removed" in gc(server, bucket_name, "--purge")
    assert stream_state(storage)["messages"] == 0
    orphans = BucketTools(storage).orphans(min_age=timedelta(0))
    assert orphans == []


@pytest.mark.parametrize("kill", [False, True], ids=["stop", "sigkill"])
def test_every_operation_works_right_after_a_restart(server, bucket_name, kill):
    storage = NatsStorage(bucket_name, servers=server.url, timeout=5.0)
    data = random_bytes(3 * storage.config.chunk_size)
    storage.save("docs/before.bin", ContentFile(data))

    server.stop(kill=kill)
    server.start()
    # No retries and no new storage: the client reconnects while the first request waits.
    assert storage.exists("docs/before.bin")
    assert storage.open("docs/before.bin").read() == data
    assert storage.save("docs/after.txt", ContentFile(b"after")) == "docs/after.txt"
    assert storage.listdir("docs") == ([], ["after.txt", "before.bin"])
    assert storage.size("docs/after.txt") == 5
    assert asyncio.run(storage.aexists("docs/after.txt"))
    storage.delete("docs/before.bin")
    assert not storage.exists("docs/before.bin")
    assert stream_state(storage)["messages"] == 3  # after.txt's chunk and metadata, before.bin's deletion marker
