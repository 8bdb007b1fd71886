"""Run Django's own storage test suites against NatsStorage on a real nats-server; report per test.

    python contract/run.py [--django-src PATH] [labels...]

Without --django-src, Django's sdist for the installed 5.2 is downloaded with
pip into a temp dir: its tests are run from there, never copied here. Exit 0
when every test not listed in contract/excluded.py passes.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import re
import subprocess
import sys
import tarfile
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))

from contract import excluded  # noqa: E402
from natsstorage.testing import NatsServer  # noqa: E402

DEFAULT_LABELS = (
    "file_storage",
    "files",
    "model_fields.test_filefield",
    "model_fields.test_imagefield",
    "staticfiles_tests",
)
DJANGO_REQUIREMENT = "django==5.2.*"
SUITE = re.compile(r"\b(file_storage|files|model_fields|staticfiles_tests)(?:\.|$)")
STATUSES = ("passed", "failed", "error", "skipped", "excluded")


def download_django(into: Path) -> Path:
    """Django's sdist, unpacked; its tests/ is what runs."""
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--quiet", "--no-binary", ":all:", "--no-deps", "--dest", str(into)]
        + [DJANGO_REQUIREMENT],
        check=True,
    )
    (archive,) = into.glob("[Dd]jango-*.tar.gz")
    with tarfile.open(archive) as tar:
        tar.extractall(into, filter="data")
    (source,) = (path for path in into.iterdir() if path.is_dir() and path.name.lower().startswith("django-"))
    return source


def suite_of(test_id: str) -> str:
    """The label a test id belongs to, for the table: 'file_storage', 'files' or 'model_fields'."""
    found = SUITE.search(test_id)
    return found.group(1) if found else "other"


def read_outcomes(path: Path) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    outcomes, done = [], None
    if path.exists():
        for line in path.read_text().splitlines():
            record = json.loads(line)
            if record.get("done"):
                done = record
            else:
                outcomes.append(record)
    return outcomes, done


def table(outcomes: Iterable[dict[str, Any]]) -> list[str]:
    counts: dict[str, Counter[str]] = defaultdict(Counter)
    for outcome in outcomes:
        counts[suite_of(outcome["id"])][outcome["status"]] += 1
        counts["total"][outcome["status"]] += 1
    header = f"{'suite':<18}" + "".join(f"{status:>10}" for status in STATUSES)
    rows = [header, "-" * len(header)]
    for suite in [*sorted(name for name in counts if name != "total"), "total"]:
        rows.append(f"{suite:<18}" + "".join(f"{counts[suite][status]:>10}" for status in STATUSES))
    return rows


def report(outcomes: list[dict[str, Any]], done: dict[str, Any] | None, notes: list[str]) -> tuple[str, bool]:
    """The text printed and written to last-run.txt, and whether the run is green."""
    bad = [outcome for outcome in outcomes if outcome["status"] in ("failed", "error")]
    lines = [*notes, "", *table(outcomes), ""]
    if done is None:
        lines.append("INCOMPLETE: the test process did not finish (see above); counts cover what ran.")
    for outcome in sorted(bad, key=lambda o: o["id"]):
        for problem in outcome["problems"] or [{"message": "?"}]:
            lines.append(f"{outcome['status'].upper():<6} {outcome['id']}\n       {problem['message']}")
    if bad:
        lines += ["", "=" * 70, "Tracebacks", "=" * 70]
        for outcome in sorted(bad, key=lambda o: o["id"]):
            for problem in outcome["problems"]:
                lines += ["", f"--- {outcome['id']}", problem.get("traceback", "").rstrip()]
    return "\n".join(lines) + "\n", done is not None and not bad and bool(outcomes)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--django-src", type=Path, help="an unpacked Django 5.2 sdist (default: pip download one)")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds for the whole test process")
    parser.add_argument("--test-timeout", type=float, default=60.0, help="seconds for one test")
    parser.add_argument("-v", "--verbose", action="store_true", help="show the Django test runner's own output")
    parser.add_argument("labels", nargs="*", help=f"Django test labels (default: {' '.join(DEFAULT_LABELS)})")
    args = parser.parse_args()
    labels = args.labels or list(DEFAULT_LABELS)

    with tempfile.TemporaryDirectory(prefix="natsstorage-contract-") as scratch_name:
        scratch = Path(scratch_name)
        source = args.django_src.resolve() if args.django_src else download_django(scratch / "sdist")
        tests = source / "tests"
        if not (tests / "runtests.py").exists():
            parser.error(f"{source} is not an unpacked Django sdist: no tests/runtests.py")
        notes = [f"Django tests from {source}", f"labels: {' '.join(labels)}"]
        installed = importlib.metadata.version("django")
        if not source.name.lower().endswith("-" + installed):
            notes.append(f"NOTE: the installed Django is {installed}: its tests may differ from {source.name}'s.")
        try:
            import PIL  # noqa: F401
        except ImportError:
            notes.append("NOTE: Pillow is not installed: the ImageField tests are skipped (pip install Pillow).")

        results = scratch / "results.jsonl"
        log = scratch / "runner.log"
        command = [sys.executable, str(HERE / "harness.py"), "--tests", str(tests), "--results", str(results)]
        command += ["--test-timeout", str(args.test_timeout), "--verbosity", "1" if args.verbose else "0"]
        started = time.monotonic()
        with NatsServer() as server, log.open("w") as log_file:
            command += ["--nats", server.url, *labels]
            output = None if args.verbose else log_file
            workdir = scratch / "cwd"  # MEDIA_ROOT '' and relative paths land here, not in the repo
            workdir.mkdir()
            try:
                child = subprocess.run(command, stdout=output, stderr=output, cwd=workdir, timeout=args.timeout)
                code: int | str = child.returncode
            except subprocess.TimeoutExpired:
                code = f"killed after {args.timeout:g} s"
        notes.append(f"{time.monotonic() - started:.0f} s, test process exit status {code}")
        outcomes, done = read_outcomes(results)
        if done is not None:
            made = f"{done['buckets']} buckets made on the nats-server for {done['directories']} local directories"
            notes.append(f"Django {done['django']}; {made}")
        text, green = report(outcomes, done, notes)
        if done is None and log.exists():
            text = "--- test process output (tail) ---\n" + log.read_text()[-4000:] + "\n" + text
        print(text, end="")
        (HERE / "last-run.txt").write_text(text)

        if done is not None and sorted(labels) == sorted(DEFAULT_LABELS):
            matches: dict[str, list[str]] = defaultdict(list)
            for outcome in outcomes:
                if outcome["status"] == "excluded":
                    matches[outcome["pattern"]].append(outcome["id"])
            (HERE / "EXCLUDED.md").write_text(excluded.markdown(matches))
            unused = [pattern for pattern, _ in excluded.EXCLUDED if pattern not in matches]
            if unused:
                print("WARNING: exclusions matching no test:", *unused, sep="\n  ")
        counts = Counter(outcome["status"] for outcome in outcomes)
        # The plain closing line CI reads, as a test runner's.
        print(f"contract: {counts['passed']} passed, {counts['failed'] + counts['error']} failed")
        return 0 if green else 1


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
