"""Sphinx configuration: Markdown pages (MyST) and the furo theme.

Build (docs/contributing.md): pip install . --group docs, then
.venv/bin/sphinx-build -W --keep-going -n -b html docs docs/_build/html (CI: nox -s docs).
"""

from __future__ import annotations

import sys
from pathlib import Path

# The checkout's package, whatever is installed (or not): its version and options are the ones documented.
sys.path[:0] = [str(Path(__file__).parent / "_ext"), str(Path(__file__).parent.parent)]

from natsstorage import __version__  # noqa: E402 - after the path it is found on

project = "natsstorage"
author = "The natsstorage authors"
copyright = "the natsstorage authors"
release = version = __version__

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
