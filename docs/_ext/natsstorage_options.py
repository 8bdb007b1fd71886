"""The ``{natsstorage-options}`` directive: the options table, generated from where the options are declared.

``natsstorage.conf.options_table()`` writes it from each option's declaration (type, default,
doc, secrecy), so the page cannot fall behind the code.
"""

from __future__ import annotations

from typing import Any

from docutils import nodes
from docutils.statemachine import StringList
from sphinx.application import Sphinx
from sphinx.util.docutils import SphinxDirective

from natsstorage import conf


class OptionsTable(SphinxDirective):
    has_content = False

    def run(self) -> list[nodes.Node]:
        self.env.note_dependency(conf.__file__)  # a changed declaration rebuilds the page
        table = StringList(conf.options_table().splitlines(), source=conf.__file__)
        container = nodes.container()
        self.state.nested_parse(table, self.content_offset, container)  # Markdown, under MyST
        return list(container.children)


def setup(app: Sphinx) -> dict[str, Any]:
    app.add_directive("natsstorage-options", OptionsTable)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
