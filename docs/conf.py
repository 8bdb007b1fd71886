"""Sphinx configuration: Markdown pages (MyST) and the furo theme.

Build: .venv/bin/sphinx-build -W --keep-going -n -b html docs docs/_build/html (CI: nox -s docs).
"""

from __future__ import annotations

import importlib.metadata
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent / "_ext"))

project = "natsstorage"
author = "The natsstorage authors"
copyright = "the natsstorage authors"
release = version = importlib.metadata.version("natsstorage")

extensions = [
    "myst_parser",
    "natsstorage_options",  # the options table, from natsstorage/conf.py (docs/_ext/)
]
source_suffix = {".md": "markdown"}
exclude_patterns = ["_build"]
myst_heading_anchors = 3  # [text](page.md#a-heading) links
myst_enable_extensions = ["deflist"]

html_theme = "furo"
html_title = f"natsstorage {release}"
