"""Tables for the chapters: rows of values to a Markdown table (no pandas needed)."""

from __future__ import annotations

from collections.abc import Sequence

from IPython.display import Markdown


def markdown(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> Markdown:
    """A Markdown table that a notebook renders as HTML; cells are shown with `str`."""

    def line(cells: Sequence[object]) -> str:
        return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"

    return Markdown("\n".join([line(headers), line(["---"] * len(headers)), *map(line, rows)]))
