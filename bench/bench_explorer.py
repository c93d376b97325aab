"""The model explorer's load, measured in headless Chromium: how long after navigation the
first view is drawn, and what the page transfers, on the built site.

    make bench-explorer              # or: .venv/bin/python bench/bench_explorer.py [--loads N]

Each load is a fresh browser context (nothing cached), at 1280 and at 390 px, for the default
model (experiment B, the largest file) and a small one (experiment A); the table shows the
median first-view time with its range. "First view" is the moment explorer.js has put the
model into Bokeh's data sources (`data-explorer-drawn-ms`, milliseconds from navigation);
"loaded" splits the bytes of that first view into the explorer's own and the book theme's,
which every page loads.
The issue's budget: 2 s and 6 MB. Needs `make book` and Debian's Chromium.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
import site_check  # noqa: E402  (the tests' server and browser launch)

HTML = ROOT / "_build" / "html"
PAGE = "book/explore.html"
MODELS = {"B, default": "", "A": "?experiment=no-superposition&p=1&seed=0"}
DRAWN = "document.documentElement.dataset.explorerDrawnMs"
# Bytes loaded for the first view: [the explorer's own (page, BokehJS, its scripts, the
# model's data), what every page of the book loads (the theme's scripts, styles, fonts)].
TRANSFERRED = """() => performance.getEntries().reduce(([own, theme], e) =>
    /\\/explorer\\/|explore\\.html/.test(e.name) ? [own + (e.encodedBodySize || 0), theme]
        : [own, theme + (e.encodedBodySize || 0)], [0, 0])"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--loads", type=int, default=5, help="loads per row (default 5)")
    args = parser.parse_args()
    if not (HTML / PAGE).exists():
        print(f"no explorer in {HTML}: run `make book` first", file=sys.stderr)
        return 1
    folder = HTML / "explorer"
    files = [*folder.iterdir(), HTML / PAGE]
    print(f"explorer on disk: {sum(f.stat().st_size for f in files) / 1e6:.2f} MB "
          f"(page, BokehJS, explorer.js, every model's data; budget 6 MB)")  # fmt: skip
    print(f"{'model':<12}{'width':>7}{'first view, ms (median, range)':>34}"
          f"{'loaded: explorer + theme':>28}")  # fmt: skip
    with sync_playwright() as playwright, site_check.serve(HTML) as base:
        browser = site_check.launch(playwright)
        for label, query in MODELS.items():
            for width in (1280, 390):
                times, sizes = [], []
                for _ in range(args.loads):
                    context = browser.new_context(viewport={"width": width, "height": 900})
                    page = context.new_page()
                    page.goto(base + PAGE + query)
                    page.wait_for_function(DRAWN, timeout=30_000)
                    times.append(int(page.evaluate(DRAWN)))
                    sizes.append(page.evaluate(TRANSFERRED))
                    context.close()
                spread = f"{statistics.median(times):.0f} ({min(times)}–{max(times)})"
                own, theme = (statistics.median(s[i] for s in sizes) / 1e6 for i in (0, 1))
                print(f"{label:<12}{width:>7}{spread:>34}{own:>16.2f} + {theme:.2f} MB")
        browser.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
