"""nats.go's ObjectStore, the benchmark's reference: ``bench/natsgo`` built once per run, then driven.

The build uses Debian's packages and nothing from the network: the Go
toolchain (``golang-go``) in GOPATH mode over the library sources that
``golang-github-nats-io-go-nats-dev`` puts under ``/usr/share/gocode``.
Without them the nats.go rows are skipped, and ``Unavailable`` says why.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

GOPATH = Path("/usr/share/gocode")  # where Debian's golang-*-dev packages put Go sources
NATS_GO = GOPATH / "src" / "github.com" / "nats-io" / "nats.go"
SOURCE = Path(__file__).resolve().parent / "natsgo"
CACHE = Path(__file__).resolve().parent / ".cache" / "go-build"  # gitignored; a rebuild then takes 0.5 s, not 6
INSTALL = "apt-get install golang-go golang-github-nats-io-go-nats-dev"
BUCKET = "bench_natsgo"
STREAM = f"OBJ_{BUCKET}"
BUILD_ENV = {
    "GO111MODULE": "off",  # GOPATH mode: imports resolve in GOPATH, no module download is possible
    "GOPATH": str(GOPATH),
    "GOFLAGS": "",
    "GOPROXY": "off",
    "GOTOOLCHAIN": "local",  # never fetch another toolchain (Go 1.21 and later)
    "GOCACHE": str(CACHE),
    "CGO_ENABLED": "0",  # no C compiler needed
}


class Unavailable(Exception):
    """Why the nats.go rows are skipped."""


def build(into: Path) -> Path:
    """Compile ``bench/natsgo`` into the directory ``into``; the binary's path."""
    go = shutil.which("go")
    if go is None:
        raise Unavailable(f"no `go` on PATH ({INSTALL})")
    if not (NATS_GO / "object.go").is_file():
        raise Unavailable(f"no nats.go sources in {NATS_GO} ({INSTALL})")
    binary = into / "natsgo"
    command = [go, "build", "-o", str(binary), "."]
    built = subprocess.run(command, cwd=SOURCE, env={**os.environ, **BUILD_ENV}, capture_output=True, text=True)
    if built.returncode != 0:
        lines = (built.stderr or built.stdout).strip().splitlines() or ["no output"]
        raise Unavailable(f"`go build` of {SOURCE} failed: {lines[-1]}")
    return binary


class NatsGo:
    """One ``natsgo`` process: connected once, then timing the operations it is asked for."""

    def __init__(self, binary: Path, url: str) -> None:
        self.process = subprocess.Popen(
            [str(binary), "-url", url, "-bucket", BUCKET],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.version = str(self._answer()["version"])

    def seconds(self, op: str, prefix: str, *, size: int, count: int, passes: int = 1, workers: int = 1) -> float:
        """How long ``op`` (put, get, info) takes on ``prefix`` + "0", "1", ... "<count - 1>", ``passes`` times
        over, spread over ``workers`` goroutines."""
        assert self.process.stdin is not None
        command = {"op": op, "prefix": prefix, "size": size, "count": count, "passes": passes, "workers": workers}
        self.process.stdin.write(json.dumps(command) + "\n")
        self.process.stdin.flush()
        return float(self._answer()["seconds"])

    def _answer(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"natsgo exited ({self.process.wait()})")
        answer: dict[str, Any] = json.loads(line)
        if "error" in answer:
            raise RuntimeError(f"natsgo: {answer['error']}")
        return answer

    def close(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()  # natsgo exits at the end of its input
        self.process.wait(timeout=10)
        if self.process.stdout is not None:
            self.process.stdout.close()
