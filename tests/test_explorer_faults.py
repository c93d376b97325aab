"""The model explorer (book/explore.md) never fails silently, in headless Chromium over copies
of the built site, each broken on purpose: a damaged data script is refused with a plain
message in the status line and nothing drawn; a missing or broken startup file (the
explorer's script, its settings, BokehJS) turns the page's "Loading the explorer…" into an
error naming the file; what the address or an error message says is shown as text, never as
markup, with a notice of what was shown instead of what the address asked. Each copy carries
the explorer as the source writes it now (its script and its part of the page), since the
built site may predate them. Needs the built book:

    make book && .venv/bin/python -m pytest -q tests/test_explorer_faults.py
"""

from __future__ import annotations

import base64
import contextlib
import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import bokeh
import numpy as np
import pytest
import site_check
from playwright.sync_api import Browser, ConsoleMessage, Page
from test_explorer_browser import choose

from superposition import explorer

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[1]
HTML = ROOT / "_build" / "html"
PAGE = "book/explore.html"
SOURCE = ROOT / "src" / "superposition" / "explorer.js"
MODEL = "document.documentElement.dataset.explorerModel"
ERROR = "document.documentElement.dataset.explorerError"
STATUS = "Bokeh.documents[0].get_model_by_name('status').text"  # its HTML
# The status line as the reader sees it (Bokeh draws a Div in a shadow root).
STATUS_SHOWN = """() => Bokeh.index.get_one(Bokeh.documents[0].get_model_by_name('status'))
    .el.shadowRoot.querySelector('.bk-clearfix').innerText"""
CELLS = "Bokeh.documents[0].get_model_by_name('cells').data.x.length"
NOTICE = ".superposition-explorer-notice"
# Set by the markup the tests slip in, if it ever runs.
INJECTED = "document.documentElement.dataset.injected"
MARKUP = "<img src=x onerror=\"document.documentElement.dataset.injected='yes'\">"


def install(site: Path, page_html: str) -> None:
    """Put the explorer as the source writes it into the site copy `site`: its script, and its
    part of the chapter's page (what `explorer.page_html()` gave when the book was built)."""
    shutil.copy(SOURCE, site / explorer.FOLDER / "explorer.js")
    page = site / PAGE
    text = page.read_text()
    part = re.compile(
        r'(?s)(?<=<div class="output text_html">).*?explorer/explorer\.js.*?</script>\n?(?=</div>)'
    )
    assert len(part.findall(text)) == 1, "the explorer's part of the page not found"
    page.write_text(part.sub(lambda _: page_html, text))


@pytest.fixture(scope="module")
def fresh(tmp_path_factory: pytest.TempPathFactory, browser: Browser) -> Path:
    """A copy of the built site with the explorer as the source writes it now."""
    if not (HTML / PAGE).exists():
        pytest.fail(f"no explorer in {HTML}: run `make book` first")
    site = Path(shutil.copytree(HTML, tmp_path_factory.mktemp("fresh") / "html"))
    install(site, explorer.page_html())
    return site


@pytest.fixture
def site(fresh: Path, tmp_path: Path) -> Path:
    """A copy of `fresh` for one test to break."""
    return Path(shutil.copytree(fresh, tmp_path / "html"))


class Visit:
    """One page of a served site, with what went wrong on it: console errors, uncaught
    exceptions and dialogs (an `alert` from injected markup would be one)."""

    def __init__(self, browser: Browser, url: str) -> None:
        self.errors: list[str] = []
        self.dialogs: list[str] = []
        self.page: Page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
        self.page.route(site_check._leaves_machine, lambda route: route.abort("blockedbyclient"))
        self.page.on("console", self._console)
        self.page.on("pageerror", lambda error: self.errors.append(f"uncaught: {error}"))
        self.page.on("dialog", lambda d: (self.dialogs.append(d.message), d.dismiss()))
        self.page.goto(url)

    def _console(self, message: ConsoleMessage) -> None:
        if message.type == "error" and not message.location["url"].endswith("/favicon.ico"):
            self.errors.append(message.text)  # (the browser asks for a favicon the site lacks)

    def notice(self) -> str:
        """The page's own notice (outside Bokeh), once it reports a failure."""
        self.page.wait_for_function(
            f"(document.querySelector({json.dumps(NOTICE)}) || {{}}).dataset?.state === 'failed'",
            timeout=15_000,
        )
        notice = self.page.locator(NOTICE)
        assert notice.is_visible()
        return notice.inner_text()


@pytest.fixture
def visit(browser: Browser) -> Iterator:
    """Open a page of a site copy: visit(site, query) -> Visit (closed after the test)."""
    with contextlib.ExitStack() as stack:

        def open_(site: Path, query: str = "") -> Visit:
            url = stack.enter_context(site_check.serve(site))
            v = Visit(browser, f"{url}{PAGE}{query}")
            stack.callback(v.page.context.close)
            return v

        yield open_


def test_the_explorer_as_the_source_writes_it_starts_cleanly(fresh: Path, visit) -> None:
    """The control for the tests below: unbroken, the page draws its first model with no
    console error, hides its "Loading the explorer…" and adds no notice to the status line."""
    v = visit(fresh, "?experiment=sparsity-sweep&p=0.01&seed=3")
    v.page.wait_for_function(MODEL, timeout=15_000)
    assert v.page.evaluate(MODEL) == "sparsity-sweep|0.01|3"
    assert not v.page.locator(NOTICE).is_visible()
    assert "address" not in v.page.evaluate(STATUS_SHOWN)
    assert v.errors == [] and v.dialogs == []


def data(site: Path, name: str) -> tuple[str, dict]:
    """Experiment `name`'s data script in the site copy: its call and its record."""
    text = (site / explorer.FOLDER / f"{name}.js").read_text()
    return text[: text.index("(")], json.loads(text[text.index("(") + 1 : text.rindex(")")])


def write(site: Path, name: str, call: str, record: dict) -> None:
    (site / explorer.FOLDER / f"{name}.js").write_text(f"{call}({json.dumps(record)});\n")


def nan_scale(site: Path) -> str:
    call, record = data(site, "sparsity-sweep")
    count = len(base64.b64decode(record["scale"])) // 4
    record["scale"] = base64.b64encode(np.full(count, np.nan, "<f4").tobytes()).decode()
    write(site, "sparsity-sweep", call, record)
    return "scale"  # what the message names


def short_w1(site: Path) -> str:
    """W1 of half its length: still whole int16 values, still valid base64."""
    call, record = data(site, "sparsity-sweep")
    raw = base64.b64decode(record["W1"])
    record["W1"] = base64.b64encode(raw[: len(raw) // 8 * 4]).decode()
    write(site, "sparsity-sweep", call, record)
    return "W1"


def another_experiments_data(site: Path) -> str:
    """Another experiment's data (same p and seeds, another width) under this one's name."""
    call, record = data(site, "capacity-m10-decay")
    write(site, "sparsity-sweep", call, {**record, "name": "sparsity-sweep"})
    return "another experiment"


def another_experiments_file(site: Path) -> str:
    shutil.copy(site / explorer.FOLDER / "no-superposition.js",
                site / explorer.FOLDER / "sparsity-sweep.js")  # fmt: skip
    return "another experiment"


def truncated(site: Path) -> str:
    path = site / explorer.FOLDER / "sparsity-sweep.js"
    text = path.read_text()
    path.write_text(text[: len(text) // 2])
    return "did not run"


@pytest.mark.parametrize(
    "damage", [nan_scale, short_w1, another_experiments_data, another_experiments_file, truncated]
)
def test_a_damaged_data_script_is_refused_in_plain_words(site: Path, visit, damage) -> None:
    """B's data script damaged: the page draws nothing and its status line says, in words,
    that this model cannot be shown, which file is at fault and what is wrong with it."""
    named = damage(site)
    v = visit(site, "?experiment=sparsity-sweep&p=0.03")
    v.page.wait_for_function(f"{MODEL} || {ERROR}", timeout=15_000)
    shown = v.page.evaluate(STATUS_SHOWN)
    assert v.page.evaluate(MODEL) is None, shown  # nothing drawn
    assert v.page.evaluate(CELLS) == 0
    assert "could not show this model" in shown and "sparsity-sweep.js" in shown, shown
    assert named in shown, shown
    # the menus still offer the other models
    options = v.page.get_by_label("Experiment").evaluate("(e) => e.options.length")
    assert options > 1


def test_a_damaged_model_does_not_replace_a_drawn_one_silently(site: Path, visit) -> None:
    """The reader picks a model whose data are damaged (NaN in one seed's factors only): the
    views are emptied and the status line says why, and the other seeds still draw."""
    call, record = data(site, "sparsity-sweep")
    k = next(k for k, x in enumerate(record["instances"]) if x["p"] == 0.03 and x["seed"] == 5)
    scale = np.frombuffer(base64.b64decode(record["scale"]), "<f4").copy()
    scale[k * record["m"]] = np.nan
    record["scale"] = base64.b64encode(scale.tobytes()).decode()
    write(site, "sparsity-sweep", call, record)
    v = visit(site, "?experiment=sparsity-sweep&p=0.03&seed=3")
    v.page.wait_for_function(MODEL, timeout=15_000)
    choose(v.page, "Seed", "5")
    v.page.wait_for_function(ERROR, timeout=15_000)
    shown = v.page.evaluate(STATUS_SHOWN)
    assert v.page.evaluate(MODEL) is None and v.page.evaluate(CELLS) == 0
    assert "could not show this model" in shown and "scale" in shown, shown
    choose(v.page, "Seed", "3")  # an undamaged seed draws again
    v.page.wait_for_function(f"{MODEL} === 'sparsity-sweep|0.03|3'", timeout=15_000)
    assert "could not show" not in v.page.evaluate(STATUS_SHOWN)


def test_text_from_a_data_script_or_its_error_is_shown_as_text(site: Path, visit) -> None:
    """Markup in a data script's title, and in the error of a data script that throws, is
    shown as text: it never becomes an element of the page."""
    call, record = data(site, "no-superposition")
    write(site, "no-superposition", call, {**record, "title": MARKUP})
    (site / explorer.FOLDER / "asymmetric-motif.js").write_text(
        f"throw new Error({json.dumps(MARKUP)});\n"
    )
    v = visit(site, "?experiment=no-superposition")
    v.page.wait_for_function(MODEL, timeout=15_000)
    assert MARKUP in v.page.evaluate(STATUS_SHOWN)
    choose(v.page, "Experiment", "C:")
    v.page.wait_for_function(ERROR, timeout=15_000)
    shown = v.page.evaluate(STATUS_SHOWN)
    assert "asymmetric-motif.js" in shown and MARKUP in shown, shown
    assert v.page.locator("img[src=x]").count() == 0
    assert v.page.evaluate(INJECTED) is None and v.dialogs == []


@pytest.mark.parametrize(
    "query, said",
    [
        ("?experiment=<img src=x onerror=alert(1)>",
         ["experiment “<img src=x onerror=alert(1)>”"]),
        (f"?experiment=no-superposition&p={MARKUP}&seed=<b>9</b>&threshold=0.7",
         [f"p “{MARKUP}”", "seed “<b>9</b>”", "threshold “0.7”"]),
    ],
)  # fmt: skip
def test_an_address_is_shown_as_text_with_what_was_shown_instead(
    fresh: Path, visit, query: str, said: list[str]
) -> None:
    """An address asking for what the explorer lacks (here, markup) draws the model it falls
    back to and says so: the values asked for appear in the status line as text."""
    v = visit(fresh, query)
    v.page.wait_for_function(MODEL, timeout=15_000)
    shown = v.page.evaluate(STATUS_SHOWN)
    assert "The address asked for" in shown, shown
    for words in said:
        assert words in shown, (words, shown)
    assert "instead" in shown
    assert v.page.locator("img[src=x]").count() == 0
    assert v.page.evaluate(INJECTED) is None and v.dialogs == []
    assert "<img" not in v.page.evaluate(STATUS) and "<b>9" not in v.page.evaluate(STATUS)
    if "no-superposition" in query:  # the experiment asked for, at its only p and a seed
        name, p, _ = v.page.evaluate(MODEL).split("|")
        assert (name, float(p)) == ("no-superposition", 1.0)
        assert v.page.evaluate("document.documentElement.dataset.explorerThreshold") == "0.9"


STARTUP = ["explorer.js", "settings.js", *(f"{n}-{bokeh.__version__}.min.js"
                                           for n in explorer.BOKEH_FILES)]  # fmt: skip


@pytest.mark.parametrize("how", ["missing", "broken"])
@pytest.mark.parametrize("file", STARTUP)
def test_a_startup_file_that_fails_is_named_on_the_page(
    site: Path, visit, file: str, how: str
) -> None:
    """One of the scripts the page starts from is missing (404) or cut short (it fails to run):
    instead of a blank page, the page says the explorer could not start, and which file."""
    path = site / explorer.FOLDER / file
    if how == "missing":
        path.unlink()
    else:
        text = path.read_text()
        path.write_text(text[: len(text) // 2])
    v = visit(site)
    notice = v.notice()
    assert "could not start" in notice and file in notice, notice
    assert ("could not be loaded" if how == "missing" else "failed to run") in notice, notice


def test_a_page_that_never_finishes_loading_says_so(site: Path, browser: Browser) -> None:
    """BokehJS never arrives (the request hangs): after the page's wait the notice says the
    explorer has not started."""
    with site_check.serve(site) as url:
        page = browser.new_context().new_page()
        page.route("**/explorer/bokeh-widgets-*.js", lambda route: None)  # never answered
        page.clock.install()
        page.goto(f"{url}{PAGE}", wait_until="commit")
        page.wait_for_selector(NOTICE, state="attached", timeout=15_000)
        assert "Loading the explorer" in page.locator(NOTICE).inner_text()
        page.clock.run_for(explorer.START_WAIT_S * 1000 + 1000)
        page.wait_for_function(
            f"document.querySelector({json.dumps(NOTICE)}).dataset.state === 'slow'",
            timeout=15_000,
        )
        assert "has not started" in page.locator(NOTICE).inner_text()
        page.context.close()
