"""Headless-browser checks of the built book, shared by tests/test_browser.py.

`check_page` opens one page of the site (served by `serve`) in Debian's Chromium and lists
what is wrong with it: console errors, uncaught exceptions, requests to any host other than
this machine (blocked, so nothing leaves it), failed requests to our own server, images that
did not load, tables too wide for the page (at Playwright's default 1280 × 720 viewport), and
math that MathJax did not render. The tests run it over every page of
`_toc.yml`:

    make book && .venv/bin/python -m pytest -q tests/test_browser.py
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import yaml
from playwright.sync_api import Browser, ConsoleMessage, Page, Playwright, Request, Response
from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

CHROMIUM = Path("/usr/bin/chromium")
LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost"})
LOAD_TIMEOUT_MS = 30_000
MATHJAX_TIMEOUT_MS = 20_000

# Truthy once MathJax's initial typesetting has settled: "ok", or the reason it failed.
MATHJAX_DONE = """() => {
    const startup = window.MathJax && MathJax.startup;
    if (!(startup && startup.promise)) return false;
    if (window.__typeset === undefined) {
        window.__typeset = "";
        startup.promise.then(() => { window.__typeset = "ok"; },
                             (e) => { window.__typeset = "failed: " + e; });
    }
    return window.__typeset;
}"""
# The source of every `.math` element without a rendered `mjx-container` or with raw TeX left.
UNRENDERED_MATH = r"""() => [...document.querySelectorAll("span.math, div.math")]
    .filter((m) => !m.querySelector("mjx-container") || /\\\(|\\\[|\$\$/.test(m.textContent))
    .map((m) => m.textContent.trim().slice(0, 80))"""
IMAGES_COMPLETE = """() => {
    document.querySelectorAll("img[loading=lazy]").forEach((img) => { img.loading = "eager"; });
    return [...document.images].every((img) => img.complete);
}"""
# Tables wider than their box, unless the box scrolls them (with a shadow at the hidden edge,
# see book/_static/superposition.css): otherwise their last columns hide off-page.
OVERFLOWING_TABLES = """() => [...document.querySelectorAll("main table")]
    .filter((table) => table.scrollWidth > table.parentElement.clientWidth + 1)
    .filter((table) => !["auto", "scroll"].includes(getComputedStyle(table.parentElement).overflowX)
        || !getComputedStyle(table.parentElement).backgroundImage.includes("gradient"))
    .map((table) => [...table.querySelectorAll("th")].map((th) => th.textContent.trim())
        .join(" | ").slice(0, 80))"""
# How far the page is wider than the window: it should never scroll sideways as a whole.
PAGE_OVERFLOW = "() => document.documentElement.scrollWidth - window.innerWidth"
# The smallest text of each figure as displayed, in CSS px. A figure's caption links its SVG
# copy, drawn from the same matplotlib figure as the PNG on the page: the SVG gives the
# figure's width and every font size in points, the page the width the image is shown at.
FIGURE_TEXT = """async () => {
    const found = [];
    for (const figure of document.querySelectorAll("main figure")) {
        const img = figure.querySelector("img");
        const link = figure.querySelector("figcaption a[href$='.svg']");
        if (!img || !link) continue;
        const svg = await (await fetch(link.href)).text();
        const width = parseFloat((svg.match(/<svg[^>]*\\swidth="([0-9.]+)pt"/) || [])[1]);
        const sizes = [...svg.matchAll(/font-size:\\s*([0-9.]+)px/g)].map((m) => parseFloat(m[1]));
        if (!width || !sizes.length) continue;
        const shown = img.getBoundingClientRect().width;
        found.push([link.getAttribute("href"), Math.min(...sizes) * shown / width]);
    }
    return found;
}"""
MIN_FIGURE_TEXT_PX = 9.0  # CSS px: the house style's floor, at 1280 and at 390 px
BROKEN_IMAGES = """() => [...document.images]
    .filter((img) => img.naturalWidth === 0).map((img) => img.currentSrc || img.src)"""


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


class _QuietServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # the browser dropping a connection is not our problem


@contextlib.contextmanager
def serve(directory: Path | str) -> Iterator[str]:
    """Serve `directory` on 127.0.0.1 (a free port) in a thread; yield its base URL."""
    handler = functools.partial(_QuietHandler, directory=str(directory))
    with _QuietServer(("127.0.0.1", 0), handler) as server:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield f"http://127.0.0.1:{server.server_address[1]}/"
        finally:
            server.shutdown()
            thread.join()


def pages_from_toc(root: Path) -> list[str]:
    """The HTML path of every page in `root/_toc.yml`: `book/intro` -> `book/intro.html`."""
    toc = yaml.safe_load((root / "_toc.yml").read_text())
    files = [toc["root"]]

    def walk(entries: list[dict[str, Any]]) -> None:
        for entry in entries:
            if "file" in entry:
                files.append(entry["file"])
            for key in ("parts", "chapters", "sections"):
                walk(entry.get(key, []))

    walk([toc])
    return [str(PurePosixPath(file).with_suffix(".html")) for file in files]


def launch(playwright: Playwright) -> Browser:
    """Debian's Chromium, headless (Playwright's own browser download is not used)."""
    return playwright.chromium.launch(
        executable_path=str(CHROMIUM),
        headless=True,
        args=[
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
        ],
    )


def _leaves_machine(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme in ("http", "https", "ws", "wss") and parts.hostname not in LOCAL_HOSTS


def _is_auto_favicon(url: str) -> bool:
    return urlsplit(url).path == "/favicon.ico"


def check_page(page: Page, url: str, mathjax_timeout_ms: int = MATHJAX_TIMEOUT_MS) -> list[str]:
    """Load `url` in `page` (a fresh one) and return every problem found, as readable text."""
    problems: list[str] = []

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            problems.append(f"console error: {message.text} (at {message.location['url']})")

    def on_request(request: Request) -> None:
        if _leaves_machine(request.url):
            problems.append(f"external request (blocked): {request.method} {request.url}")

    def on_response(response: Response) -> None:
        if response.status >= 400 and not _is_auto_favicon(response.url):
            problems.append(f"HTTP {response.status}: {response.url}")

    def on_request_failed(request: Request) -> None:
        if not _leaves_machine(request.url) and not _is_auto_favicon(request.url):
            problems.append(f"request failed ({request.failure}): {request.url}")

    page.on("console", on_console)
    page.on("pageerror", lambda error: problems.append(f"uncaught exception: {error}"))
    page.on("request", on_request)
    page.on("response", on_response)
    page.on("requestfailed", on_request_failed)
    page.route(_leaves_machine, lambda route: route.abort("blockedbyclient"))

    try:
        page.goto(url, wait_until="load", timeout=LOAD_TIMEOUT_MS)
        page.wait_for_function(IMAGES_COMPLETE, timeout=LOAD_TIMEOUT_MS)
    except PlaywrightError as error:  # includes timeouts
        return [*problems, f"page did not load: {error.message.splitlines()[0]}"]
    problems += [f"broken image: {src}" for src in page.evaluate(BROKEN_IMAGES)]
    problems += [f"table wider than the page: {t}" for t in page.evaluate(OVERFLOWING_TABLES)]
    overflow = page.evaluate(PAGE_OVERFLOW)
    if overflow > 1:
        problems.append(f"page scrolls sideways: {overflow} px wider than the window")
    for svg, px in page.evaluate(FIGURE_TEXT):
        if px < MIN_FIGURE_TEXT_PX:
            problems.append(f"figure text too small: {px:.1f} px in {svg}")

    if page.locator("span.math, div.math").count():
        try:
            done = page.wait_for_function(MATHJAX_DONE, timeout=mathjax_timeout_ms).json_value()
            if done != "ok":
                problems.append(f"MathJax typesetting {done}")
        except PlaywrightTimeoutError:
            problems.append(f"MathJax did not finish within {mathjax_timeout_ms / 1000:g} s")
        raw = page.evaluate(UNRENDERED_MATH)
        if raw:
            problems.append(f"{len(raw)} math element(s) not rendered, e.g. {raw[:3]}")
    return problems
