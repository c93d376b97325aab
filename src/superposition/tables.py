"""Tables for the chapters: rows of values to a Markdown table (no pandas needed).

Every cell is shown as text, escaped (a weight file's metadata may hold markup); a cell the
chapter writes as HTML itself is a `Markup`, made by `html()`, which escapes its arguments.

    tables.markdown(["file", "size"], [[tables.html('<a href="{}">{}</a>', url, name), 12]])
"""

from __future__ import annotations

from collections.abc import Sequence

from IPython.display import Markdown

from . import escape


class Markup(str):
    """A cell the chapter wrote as HTML: shown as markup, not escaped."""


def html(template: str, *values: object) -> Markup:
    """`template` (the chapter's own HTML) with each {} filled by an escaped value."""
    return Markup(template.format(*(escape.html(v) for v in values)))


def _cell(value: object) -> str:
    if isinstance(value, Markup):
        return value.replace("|", "\\|").replace("\n", " ")
    return escape.markdown(value)  # a | becomes \|, as a table cell needs


def markdown(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> Markdown:
    """A Markdown table that a notebook renders as HTML; cells are shown with `str`, escaped."""

    def line(cells: Sequence[object]) -> str:
        return "| " + " | ".join(_cell(c) for c in cells) + " |"

    return Markdown("\n".join([line(headers), "|" + " --- |" * len(headers), *map(line, rows)]))
