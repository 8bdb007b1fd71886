"""What the repository promises about itself: CI runs the README's test command, the changelog's shape."""

from __future__ import annotations

import re
from pathlib import Path

import natsstorage

ROOT = Path(__file__).parent.parent


def test_ci_runs_the_readmes_test_command_exactly():
    readme = (ROOT / "README.md").read_text()
    command = readme.split("# run the whole test suite against real nats-server processes\n")[1].splitlines()[0]
    assert command.startswith("python3 -m venv .venv && ") and command.endswith(" && .venv/bin/pytest")
    assert command in (ROOT / ".ci" / "run").read_text().splitlines()
    assert command in (ROOT / "docs" / "contributing.md").read_text()


def test_the_changelog_has_unreleased_changes_then_releases_by_version_and_date():
    headings = re.findall(r"^## (.*)$", (ROOT / "CHANGELOG.md").read_text(), re.MULTILINE)
    assert headings[0] == "Unreleased"
    for heading in headings[1:]:
        assert re.fullmatch(r"\d+\.\d+\.\d+ - \d{4}-\d{2}-\d{2}", heading), heading
    released = [tuple(map(int, heading.split(" - ")[0].split("."))) for heading in headings[1:]]
    assert released == sorted(set(released), reverse=True)  # newest first, each once
    assert not released or released[0] <= tuple(map(int, natsstorage.__version__.split(".")))
