"""Chapter helper: show a figure, and export it as SVG when the book is being built.

    figures.show(fig, "fig-sweep-stack")

shows the figure (the notebook keeps a PNG) and, when $SUPERPOSITION_FIGURES names a folder
(book/build.py sets it while it exports the chapters), also writes `<name>.svg` there; the
site publishes that folder as figures/ and every caption links its SVG.
"""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib.pyplot as plt
from matplotlib.figure import Figure

FIGURES_ENV = "SUPERPOSITION_FIGURES"


def show(fig: Figure, name: str) -> None:
    folder = os.environ.get(FIGURES_ENV)
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        # A fixed salt and no date make the SVG the same on every build.
        with plt.rc_context({"svg.hashsalt": name}):
            fig.savefig(Path(folder) / f"{name}.svg", format="svg", metadata={"Date": None})
    plt.show()
