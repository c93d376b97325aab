"""The built site works in a real browser: every page of `_toc.yml`, served from this machine
and opened in headless Chromium, logs no console error, throws nothing, requests nothing from
another host, has no failed request, broken image or table too wide for the page, and renders
all its math with MathJax.
Negative controls break a copy of the site on purpose and check that each fault is reported.

Needs the built book and Debian's Chromium (`apt-get install chromium`):

    make book && .venv/bin/python -m pytest -q tests/test_browser.py
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import site_check
from playwright.sync_api import Browser

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[1]
HTML = ROOT / "_build" / "html"
PAGES = site_check.pages_from_toc(ROOT)

Check = Callable[..., list[str]]


@pytest.fixture(scope="module")
def check(browser: Browser) -> Check:
    """check(site_dir, path, **options): the problems on one page, in a fresh context."""

    def run(site: Path, path: str, width: int = 1280, **options: int) -> list[str]:
        context = browser.new_context(viewport={"width": width, "height": 800})
        try:
            with site_check.serve(site) as base_url:
                return site_check.check_page(context.new_page(), base_url + path, **options)
        finally:
            context.close()

    return run


@pytest.fixture
def site_copy(tmp_path: Path) -> Path:
    return Path(shutil.copytree(HTML, tmp_path / "html"))


def inject(page: Path, snippet: str) -> None:
    html = page.read_text()
    assert "</body>" in html, page
    page.write_text(html.replace("</body>", snippet + "</body>", 1))


WIDTHS = (1280, 390)  # a laptop, a phone


@pytest.mark.parametrize("width", WIDTHS, ids=[f"{w}px" for w in WIDTHS])
@pytest.mark.parametrize("path", PAGES, ids=PAGES)
def test_page_works_in_a_browser(check: Check, path: str, width: int) -> None:
    """Also: no sideways scrolling of the page, and no figure text under 9 CSS px."""
    problems = check(HTML, path, width=width)
    assert not problems, f"{len(problems)} problem(s) on {path}:\n" + "\n".join(problems)


def test_404_page_works_in_a_browser(check: Check) -> None:
    if not (HTML / "404.html").exists():
        pytest.skip("the site has no 404.html")
    problems = check(HTML, "404.html")
    assert not problems, f"{len(problems)} problem(s) on 404.html:\n" + "\n".join(problems)


def test_a_missing_image_is_reported(check: Check, site_copy: Path) -> None:
    for path in PAGES:
        page = site_copy / path
        for src in re.findall(r'<img\b[^>]*?\bsrc="([^"]+)"', page.read_text()):
            image = (page.parent / src.split("?")[0]).resolve()
            if ":" not in src and image.is_file():
                image.unlink()
                problems = check(site_copy, path)
                assert any(p.startswith("broken image") and image.name in p for p in problems)
                assert any(p.startswith("HTTP 404") and image.name in p for p in problems)
                return
    pytest.fail("no page of the toc shows a local image")


def test_an_external_request_is_reported_and_blocked(check: Check, site_copy: Path) -> None:
    inject(site_copy / PAGES[0], '<script src="https://example.com/x.js"></script>')
    problems = check(site_copy, PAGES[0])
    assert "external request (blocked): GET https://example.com/x.js" in problems, problems


def test_a_console_error_is_reported(check: Check, site_copy: Path) -> None:
    inject(site_copy / PAGES[0], '<script>console.error("boom")</script>')
    assert any(p.startswith("console error: boom") for p in check(site_copy, PAGES[0]))


def test_math_without_mathjax_is_reported(check: Check, site_copy: Path) -> None:
    page = site_copy / PAGES[0]
    html = re.sub(r"<script[^>]*mathjax[^>]*>\s*</script>", "", page.read_text(), flags=re.I)
    page.write_text(html)
    inject(page, r'<span class="math notranslate nohighlight">\(x^2\)</span>')
    math = len(re.findall(r'<(?:span|div) class="math\b', page.read_text()))
    problems = check(site_copy, PAGES[0], mathjax_timeout_ms=3000)
    assert "MathJax did not finish within 3 s" in problems, problems
    assert any(p.startswith(f"{math} math element(s) not rendered") for p in problems), problems


def test_a_table_too_wide_for_the_page_is_reported(check: Check, site_copy: Path) -> None:
    page = site_copy / PAGES[0]
    html = page.read_text()
    cells = "".join(f"<th>column{i}_{'x' * 12}</th>" for i in range(30))
    table = f"<table><thead><tr>{cells}</tr></thead></table>"
    assert "</article>" in html
    page.write_text(html.replace("</article>", f"<div>{table}</div></article>", 1))
    problems = check(site_copy, PAGES[0])
    assert any(p.startswith("table wider than the page: column0_") for p in problems), problems


def test_a_page_wider_than_a_phone_is_reported(check: Check, site_copy: Path) -> None:
    page = site_copy / PAGES[0]
    html = page.read_text()
    assert "</article>" in html
    page.write_text(html.replace("</article>", '<div style="width: 900px">x</div></article>', 1))
    problems = check(site_copy, PAGES[0], width=390)
    assert any(p.startswith("page scrolls sideways") for p in problems), problems


def test_figure_text_too_small_is_reported(check: Check, site_copy: Path) -> None:
    """Shrink the fonts of one figure's SVG (the record of its text sizes) to 4 pt."""
    for path in PAGES:
        html = (site_copy / path).read_text()
        links = re.findall(r'<figcaption>.*?href="([^"]+\.svg)"', html, flags=re.S)
        if links:
            svg = (site_copy / path).parent / links[0]
            svg.write_text(re.sub(r"font-size: [0-9.]+px", "font-size: 4px", svg.read_text()))
            problems = check(site_copy, path)
            assert any(p.startswith("figure text too small") and svg.name in p
                       for p in problems), problems  # fmt: skip
            return
    pytest.fail("no page of the toc has a figure with an SVG link")
