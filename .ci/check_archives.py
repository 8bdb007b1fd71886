"""What the built sdist and wheel hold: the licence, the package with its data, and nothing else.

Usage: python .ci/check_archives.py dist/
"""

from __future__ import annotations

import sys
import tarfile
import zipfile
from pathlib import Path

LICENSE = Path(__file__).resolve().parent.parent / "LICENSE"
# The package's files that are not Python modules, and the plugin pytest finds by its entry point.
PACKAGE_FILES = {
    "natsstorage/py.typed",
    "natsstorage/migrations/0001_initial.py",
    "natsstorage/templates/natsstorage/admin/buckets.html",
    "natsstorage/management/commands/natsos_ls.py",
    "natsstorage/pytest_plugin.py",
}
SDIST_TOP = {"LICENSE", "README.md", "CHANGELOG.md", "pyproject.toml", "PKG-INFO", "MANIFEST.in", "setup.cfg"}
SDIST_DIRS = {"natsstorage", "natsstorage.egg-info"}


def check_wheel(path: Path) -> list[str]:
    with zipfile.ZipFile(path) as wheel:
        names = set(wheel.namelist())
        dist_info = next(name.split("/")[0] for name in names if name.split("/")[0].endswith(".dist-info"))
        problems = [f"{path.name} lacks {name}" for name in sorted(PACKAGE_FILES - names)]
        license_name = f"{dist_info}/licenses/LICENSE"
        if license_name not in names or wheel.read(license_name) != LICENSE.read_bytes():
            problems.append(f"{path.name}: {license_name} is not this repository's LICENSE")
        if "natsstorage = natsstorage.pytest_plugin" not in wheel.read(f"{dist_info}/entry_points.txt").decode():
            problems.append(f"{path.name}: no pytest11 entry point for natsstorage.pytest_plugin")
        stray = sorted({name.split("/")[0] for name in names} - {"natsstorage", dist_info})
        problems += [f"{path.name} holds {name}, which is not the package" for name in stray]
        return problems


def check_sdist(path: Path) -> list[str]:
    with tarfile.open(path) as sdist:
        members = {member.name.split("/", 1)[1]: member for member in sdist.getmembers() if "/" in member.name}
        problems = [f"{path.name} lacks {name}" for name in sorted(PACKAGE_FILES - set(members))]
        license_file = sdist.extractfile(members["LICENSE"]) if "LICENSE" in members else None
        if license_file is None or license_file.read() != LICENSE.read_bytes():
            problems.append(f"{path.name}: LICENSE is not this repository's LICENSE")
        top = {name.split("/")[0] for name in members}
        problems += [
            f"{path.name} holds {name}, which stays in the repository" for name in sorted(top - SDIST_TOP - SDIST_DIRS)
        ]
        problems += [f"{path.name} lacks {name}" for name in sorted(SDIST_TOP - top)]
        return problems


def main(dist: Path) -> int:
    wheels, sdists = sorted(dist.glob("*.whl")), sorted(dist.glob("*.tar.gz"))
    if len(wheels) != 1 or len(sdists) != 1:
        print(f"expected one wheel and one sdist in {dist}, found {[p.name for p in dist.iterdir()]}")
        return 1
    problems = check_wheel(wheels[0]) + check_sdist(sdists[0])
    for problem in problems:
        print(problem)
    if not problems:
        print(f"{wheels[0].name} and {sdists[0].name}: LICENSE, the package and its data, nothing else")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
