"""What CI runs after the README's test command: the suite on every Python and Django this package
declares and on its floors, the built archives, a smoke test of the installed wheel, and the docs.

    .venv/bin/nox                                   # every session, one after the other
    .venv/bin/nox -l                                # their names
    .venv/bin/nox -s "tests(3.13-django6.1)"         # one cell; arguments after -- go to pytest
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import nox
from packaging.requirements import Requirement

nox.options.default_venv_backend = "uv|venv"  # uv installs a cell in seconds; venv where uv is missing
nox.options.error_on_missing_interpreters = True  # a cell that cannot run is a failure, not a skip
nox.options.reuse_venv = "no"  # every run installs afresh what it tests

ROOT = Path(__file__).parent
PYPROJECT = nox.project.load_toml(ROOT / "pyproject.toml")
TEST = nox.project.dependency_groups(PYPROJECT, "test")


def _declared(prefix: str) -> list[str]:
    """The versions pyproject.toml's classifiers declare, e.g. ["5.2", "6.0"] for "Framework :: Django :: "."""
    found = [c.removeprefix(prefix) for c in PYPROJECT["project"]["classifiers"] if c.startswith(prefix)]
    return sorted((v for v in found if re.fullmatch(r"\d+\.\d+", v)), key=_version)


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split("."))


def _floor(requirement: Requirement) -> str:
    (floor,) = (spec.version for spec in requirement.specifier if spec.operator == ">=")
    return floor


# What installs with the package, and with its pytest plugin: the lowest session pins each at its floor.
REQUIREMENTS = [Requirement(line) for line in PYPROJECT["project"]["dependencies"]]
REQUIREMENTS += [Requirement(line) for line in PYPROJECT["project"]["optional-dependencies"]["testing"]]


# Every cell runs the fast tier (`-m "not slow"`, every module): what the slow tier adds (a browser, a cluster,
# minutes of load, the demo) is about the machine, not about a Python or Django version, and the README's
# test command runs it once. In two processes (pytest-xdist): about 70 s a cell on CI's 2 cores. Four take 50-57 s
# (docs/contributing.md); their load first turned up three races, mended (a stream made again at once, a tus HEAD
# on nats-server 2.9 during a resume, a test not waiting for a consumer's deletion), and CI keeps to two.
MATRIX_PYTEST_ARGS = ["-m", "not slow", "-n", "2"]


# Declared support is tested support: every Python and every Django series the classifiers name runs the fast
# tier, and the floors are their lowest versions. Not every pair (7 cells of about a minute and a half each would
# put CI past 15 minutes on 2 cores): each Django series on the oldest Python it supports (what a series' floor
# breaks shows there), and each Python with the newest Django it supports (deprecations and new behaviour).
PYTHONS = _declared("Programming Language :: Python :: ")
DJANGOS = _declared("Framework :: Django :: ")
DJANGO_NEEDS_PYTHON = {"5.2": "3.10", "6.0": "3.12", "6.1": "3.12"}  # each Django series' own Requires-Python
assert PYPROJECT["project"]["requires-python"] == f">={PYTHONS[0]}", "requires-python is not the lowest classifier"
assert _floor(next(r for r in REQUIREMENTS if r.name == "django")) == DJANGOS[0], "the django floor is not the lowest"
PAIRS = [  # a KeyError here: add the new series to DJANGO_NEEDS_PYTHON
    (python, django)
    for python in PYTHONS
    for django in DJANGOS
    if _version(python) >= _version(DJANGO_NEEDS_PYTHON[django])
]
CELLS = sorted(
    {min((pair for pair in PAIRS if pair[1] == django), key=lambda pair: _version(pair[0])) for django in DJANGOS}
    | {max((pair for pair in PAIRS if pair[0] == python), key=lambda pair: _version(pair[1])) for python in PYTHONS}
)
DIST = ROOT / "dist"


def _find_pyenv_pythons() -> None:
    """Put pyenv's interpreters on PATH: its shims answer only for the versions `pyenv global` names."""
    versions = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    for python in PYTHONS:
        found = sorted(
            versions.glob(f"{python}.*/bin/python{python}"),
            key=lambda path: [int(number) for number in re.findall(r"\d+", path.parent.parent.name)],
        )
        working = shutil.which(f"python{python}")
        if found and (working is None or subprocess.run([working, "-V"], capture_output=True).returncode != 0):
            os.environ["PATH"] = f"{found[-1].parent}{os.pathsep}{os.environ['PATH']}"


_find_pyenv_pythons()


@nox.session
@nox.parametrize(("python", "django"), CELLS, ids=[f"{python}-django{django}" for python, django in CELLS])
def tests(session: nox.Session, django: str) -> None:
    """The fast tier, with the newest release of one Django series."""
    major, minor = _version(django)
    session.install(".", *TEST, f"django>={django},<{major}.{minor + 1}")
    session.run("python", "-m", "pytest", *MATRIX_PYTEST_ARGS, *session.posargs)


@nox.session(python=PYTHONS[0])
def lowest(session: nox.Session) -> None:
    """The fast tier with each dependency at exactly its floor in pyproject.toml (the testing extra's too)."""
    floors = []
    for requirement in REQUIREMENTS:
        marker = f"; {requirement.marker}" if requirement.marker else ""
        floors.append(f"{requirement.name}=={_floor(requirement)}{marker}")
    session.install(".", *TEST, *floors)
    # What was installed, from any venv (uv's have no pip).
    listing = "import importlib.metadata as m; print(*sorted(f'{d.name}=={d.version}' for d in m.distributions()))"
    session.run("python", "-c", listing, silent=False)
    session.run("python", "-m", "pytest", *MATRIX_PYTEST_ARGS, *session.posargs)


@nox.session(python=PYTHONS[0])
def oldest_nats_server(session: nox.Session) -> None:
    """The fast tier against Debian stable's nats-server (2.9.10 on bookworm), the oldest natsstorage serves.

    Its package is unpacked, not installed, into nox's cache; tests of what newer servers add skip, saying so.
    Skipped, saying why, where there is no apt-get (not Debian's family).
    """
    binary = _debian_nats_server(session)
    said = subprocess.run([binary, "--version"], capture_output=True, text=True, check=True).stdout.strip()
    session.log(f"testing against Debian's {said}")
    if " v2.9." not in f" {said}":
        session.warn(f"this Debian's nats-server is not the 2.9 natsstorage's floor names: {said}")
    session.install(".", *TEST)
    session.run("python", "-m", "pytest", *MATRIX_PYTEST_ARGS, *session.posargs, env={"NATS_SERVER_BIN": binary})


def _debian_nats_server(session: nox.Session) -> str:
    """Debian's nats-server binary, from ``apt-get download`` and ``dpkg -x`` (once: it stays in nox's cache)."""
    unpacked = session.cache_dir / "debian-nats-server"
    binary = unpacked / "usr" / "sbin" / "nats-server"
    if binary.exists():
        return str(binary)
    if not (shutil.which("apt-get") and shutil.which("dpkg")):
        session.skip("no apt-get and dpkg here to fetch Debian's nats-server, the oldest natsstorage serves")
    downloads = unpacked.with_name("debian-nats-server-deb")
    shutil.rmtree(downloads, ignore_errors=True)
    downloads.mkdir(parents=True)
    download = ["apt-get", "download", "-q", "nats-server"]
    with session.chdir(downloads):
        if subprocess.run(download).returncode != 0:  # apt's lists not fetched yet, on a fresh machine
            session.run("apt-get", "update", "-q", external=True)
            session.run(*download, external=True)
    (package,) = downloads.glob("nats-server_*.deb")
    session.run("dpkg", "-x", str(package), str(unpacked), external=True)
    return str(binary)


@nox.session(python=PYTHONS[0])
def build(session: nox.Session) -> None:
    """The sdist and the wheel in dist/, checked: metadata, wheel contents, and what each archive holds."""
    session.install(*nox.project.dependency_groups(PYPROJECT, "release"))
    shutil.rmtree(DIST, ignore_errors=True)
    session.run("python", "-m", "build", "--outdir", str(DIST))
    archives = sorted(str(path) for path in DIST.iterdir())
    session.run("twine", "check", "--strict", *archives)
    session.run("check-wheel-contents", *(path for path in archives if path.endswith(".whl")))
    session.run("python", ".ci/check_archives.py", str(DIST))


@nox.session(python=PYTHONS[0], requires=["build"])
def smoke(session: nox.Session) -> None:
    """The built wheel in a fresh venv, used as a project would: save, read, serve, the admin, a command."""
    (wheel,) = DIST.glob("*.whl")
    session.install(f"{wheel}[testing]", "pytest", "pytest-django")
    project = Path(session.create_tmp()) / "smoke"  # away from this checkout, so only the wheel can be imported
    shutil.rmtree(project, ignore_errors=True)
    shutil.copytree(ROOT / ".ci" / "smoke", project)
    session.chdir(project)
    session.run("python", "-m", "pytest", *session.posargs)


@nox.session(python=PYTHONS[0])
def docs(session: nox.Session) -> None:
    """The documentation site, any warning an error; the pages land in docs/_build/html."""
    session.install(".", *nox.project.dependency_groups(PYPROJECT, "docs"))
    session.run("sphinx-build", "-W", "--keep-going", "-n", "-b", "html", "docs", "docs/_build/html")
