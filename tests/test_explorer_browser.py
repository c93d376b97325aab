"""The model explorer (book/explore.md) in headless Chromium: it draws the model its address
or its controls ask for, its hovers show the weights the published weight files hold (read
here independently, with safetensors), a tapped neuron is marked in all three views. How fast
the first view is drawn is measured by bench/bench_explorer.py (`make bench-explorer`), not
here. The page's console errors and requests to other hosts are
checked with every other page in test_browser.py. Needs the built book:

    make book && .venv/bin/python -m pytest -q tests/test_explorer_browser.py
"""

from __future__ import annotations

import base64
import json
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import site_check
from playwright.sync_api import Browser, Page, Route
from safetensors import safe_open

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[1]
HTML = ROOT / "_build" / "html"
PAGE = "book/explore.html"

# Screen position of data point (x, y) of the named Bokeh plot, scrolled into view.
POSITION = """([name, x, y]) => {
    const view = Bokeh.index.get_one(Bokeh.documents[0].get_model_by_name(name));
    view.el.scrollIntoView({block: "center"});
    const box = view.el.getBoundingClientRect();
    return [box.x + view.frame.x_scale.compute(x), box.y + view.frame.y_scale.compute(y)];
}"""
# The text of the visible tooltip (Bokeh draws it in a shadow root).
TOOLTIP = """(tips) => tips.filter((t) => t.offsetParent !== null || t.checkVisibility())
    .map((t) => [...t.shadowRoot.children].map((c) => c.innerText || "").join("\\n")).join("\\n")"""
MODEL = "document.documentElement.dataset.explorerModel"
STATUS = "Bokeh.documents[0].get_model_by_name('status').text"


@pytest.fixture(scope="module")
def base_url(browser: Browser) -> Iterator[str]:
    if not (HTML / PAGE).exists():
        pytest.fail(f"no explorer in {HTML}: run `make book` first")
    with site_check.serve(HTML) as url:
        yield url


def open_explorer(browser: Browser, url: str, width: int = 1280) -> Page:
    page = browser.new_context(viewport={"width": width, "height": 900}).new_page()
    page.route(site_check._leaves_machine, lambda route: route.abort("blockedbyclient"))
    page.goto(url)
    page.wait_for_function(MODEL, timeout=15_000)
    return page


def model(page: Page) -> tuple[str, float, int]:
    name, p, seed = page.evaluate(MODEL).split("|")
    return name, float(p), int(seed)


def weights(name: str, site: Path = HTML) -> tuple[np.ndarray, np.ndarray, list, list]:
    """W1, W2, feature probabilities and seeds, read from the published file itself."""
    with safe_open(site / "weights" / f"{name}.safetensors", "np") as f:
        meta = f.metadata()
        return (f.get_tensor("W1"), f.get_tensor("W2"), json.loads(meta["feature_probs"]),
                json.loads(meta["seeds"]))  # fmt: skip


def instance(name: str, p: float, seed: int) -> int:
    _, _, probs, seeds = weights(name)
    return next(
        k for k, (q, s) in enumerate(zip(probs, seeds, strict=True)) if q == p and s == seed
    )


def hover(page: Page, plot: str, x: float, y: float) -> dict[str, str]:
    """Move the mouse onto data point (x, y) of `plot`; the tooltip's fields, once it names
    feature x, rounded (a side's marker in the measure view sits 0.2 off its feature; after
    5 s, whatever it shows: the caller reports it)."""
    page.mouse.move(*page.evaluate(POSITION, [plot, x, y]))
    names_x = re.compile(rf"^feature:\s*x{round(x)}$", flags=re.M)
    for _ in range(100):
        text = page.locator(".bk-Tooltip").evaluate_all(TOOLTIP)
        if names_x.search(text):
            break
        page.wait_for_timeout(50)
    return dict(re.findall(r"^([^\n:]+):\s*(.+)$", text, flags=re.M))


def hover_mismatches(page: Page, cells: list[tuple[int, int]]) -> list[str]:
    """Hover matrix cells (feature, row) and compare what each tooltip says with the file."""
    name, p, seed = model(page)
    W1, W2, _, _ = weights(name)
    k = instance(name, p, seed)
    tolerance = 1e-4 * max(1.0, float(np.abs(W1[k]).max()), float(np.abs(W2[k]).max()))
    problems = []
    for feature, row in cells:
        tip = hover(page, "matrix", feature, row)
        if "neuron" not in tip:
            problems.append(f"no tooltip at feature {feature}, row {row}: {tip}")
            continue
        j, i = int(tip["neuron"].lstrip("h")), int(tip["feature"].lstrip("x"))
        for label, want in (("W1 in the file", W1[k, j, i]), ("W2 in the file", W2[k, i, j])):
            shown = float(tip[label].replace("−", "-"))
            if abs(shown - float(want)) > tolerance:
                problems.append(f"{name} p={p} seed {seed} h{j} x{i}: {label} {shown}, file {want}")
    return problems


def some_cells(page: Page) -> list[tuple[int, int]]:
    """A few cells of the drawn model: its strongest, and others spread over the matrix."""
    n, m = page.evaluate("""() => { const d = Bokeh.documents[0].get_model_by_name("cells").data;
        return [Math.max(...d.x) + 1, Math.max(...d.y) + 1]; }""")
    return [(0, 0), (n // 2, m // 2), (n - 1, m - 1), (min(3, n - 1), min(5, m - 1))]


def test_hovers_show_the_weights_the_files_hold(browser: Browser, base_url: str) -> None:
    for query in ("?experiment=sparsity-sweep&p=0.01&seed=3",
                  "?experiment=capacity-m20-equal&p=0.003&seed=1",
                  "?experiment=no-superposition&p=1&seed=2"):  # fmt: skip
        page = open_explorer(browser, f"{base_url}{PAGE}{query}")
        assert hover_mismatches(page, some_cells(page)) == [], query
        page.context.close()


def test_the_hover_check_catches_a_wrong_weight(browser: Browser, tmp_path: Path) -> None:
    """Negative control: a copy of the site whose explorer data scale B's W1 rows by 1.01."""
    site = Path(shutil.copytree(HTML, tmp_path / "html"))
    data = site / "explorer" / "sparsity-sweep.js"
    prefix, body = data.read_text().split("(", 1)
    record = json.loads(body.rstrip().removesuffix(");"))
    scale = np.frombuffer(base64.b64decode(record["scale"]), "<f4") * np.float32(1.01)
    record["scale"] = base64.b64encode(scale.astype("<f4").tobytes()).decode()
    data.write_text(f"{prefix}({json.dumps(record)});\n")
    with site_check.serve(site) as url:
        page = open_explorer(browser, f"{url}{PAGE}?experiment=sparsity-sweep&p=0.01&seed=3")
        problems = hover_mismatches(page, [(0, 0)])
        page.context.close()
    assert problems and "W1 in the file" in problems[0], problems


def choose(page: Page, control: str, starts: str) -> None:
    """Pick, in the control labelled `control`, the option whose text starts with `starts`
    (BokehJS writes each option's label as its value). A menu is filled once its model's data
    script has loaded, so wait for the option first: reading the menu at once raced the load."""
    select = page.get_by_label(control)
    page.wait_for_function(
        "([e, s]) => [...e.options].some((o) => o.textContent.startsWith(s))",
        arg=[select.element_handle(), starts],
        timeout=15_000,
    )
    texts = select.evaluate("(e) => [...e.options].map((o) => o.textContent)")
    select.select_option(label=next(t for t in texts if t.startswith(starts)))


def matrix_image(page: Page) -> bytes:
    return plot_element(page, "matrix").screenshot()


def plot_element(page: Page, plot: str):
    """The element of a Bokeh plot, by the plot's name."""
    handle = page.evaluate_handle(
        "(name) => Bokeh.index.get_one(Bokeh.documents[0].get_model_by_name(name)).el", plot
    )
    return handle.as_element()


def test_the_default_view_is_the_sparsity_chapters_lowest_loss_model(
    browser: Browser, base_url: str
) -> None:
    page = open_explorer(browser, base_url + PAGE)
    name, p, seed = model(page)
    page.context.close()
    assert (name, p) == ("sparsity-sweep", 0.03)
    assert seed == lowest_loss(name, p)


@pytest.mark.parametrize("control, option", [("p", "0.001"), ("seed", "5")])
def test_changing_sparsity_or_seed_draws_another_model(
    browser: Browser, base_url: str, control: str, option: str
) -> None:
    page = open_explorer(browser, f"{base_url}{PAGE}?experiment=sparsity-sweep&p=0.01&seed=3")
    before, image = model(page), matrix_image(page)
    choose(page, {"p": "Feature probability p", "seed": "Seed"}[control], option)
    page.wait_for_function(f"{MODEL} !== {json.dumps('|'.join(map(str, before)))}")
    after = model(page)
    assert after != before and matrix_image(page) != image
    assert (after[1] if control == "p" else after[2]) == float(option)
    assert f"seed={after[2]}" in page.url and f"p={after[1]:g}" in page.url  # shareable
    assert hover_mismatches(page, some_cells(page)) == []
    page.context.close()


def late(route: Route) -> None:
    """Serve a request half a second late."""
    time.sleep(0.5)
    route.continue_()


def test_the_capacity_grid_is_reached_by_width_and_importance(
    browser: Browser, base_url: str
) -> None:
    page = open_explorer(browser, base_url + PAGE)
    # The grid's data scripts arrive late, as on a slow network: the menus must wait for them.
    page.route("**/explorer/capacity-*.js", late)
    choose(page, "Experiment", "D, E: capacity")
    page.wait_for_function(f"{STATUS}.startsWith('Loading')")  # says so meanwhile
    choose(page, "Width m", "10")
    choose(page, "Importance", "equal")
    page.wait_for_function(f"{MODEL}.startsWith('capacity-m10-equal|')")
    assert hover_mismatches(page, some_cells(page)) == []
    choose(page, "Width m", "5")  # each profile offers its own widths
    page.wait_for_function(f"{MODEL}.startsWith('capacity-m5-equal|')")
    choose(page, "Importance", "I = 0.8")  # no D5: the nearest width, 10
    page.wait_for_function(f"{MODEL}.startsWith('capacity-m10-decay|')")
    # every cell starts at the capacity chapter's model, whatever seed the last one had
    assert model(page) == ("capacity-m10-decay", 0.03, grid_best("capacity-m10-decay", 0.03))
    choose(page, "Width m", "40")
    page.wait_for_function(f"{MODEL}.startsWith('sparsity-sweep|')")  # D40 is experiment B
    assert model(page) == ("sparsity-sweep", 0.03, grid_best("sparsity-sweep", 0.03))
    shared = page.url  # and its address keeps the reader in the grid
    page.context.close()
    page = open_explorer(browser, shared)
    experiment = "Bokeh.documents[0].get_model_by_name('experiment').value"
    assert model(page)[0] == "sparsity-sweep" and page.evaluate(experiment) == "capacity"
    page.context.close()


def lowest_loss(name: str, p: float, among: tuple[int, ...] | None = None) -> int:
    """From the file: the lowest-loss seed at p (of the seeds `among`, if given)."""
    with safe_open(HTML / "weights" / f"{name}.safetensors", "np") as f:
        meta = f.metadata()
    loss, probs, seeds = (json.loads(meta[k]) for k in ("final_loss", "feature_probs", "seeds"))
    at_p = [k for k, q in enumerate(probs) if q == p and (among is None or seeds[k] in among)]
    return seeds[min(at_p, key=loss.__getitem__)]


def grid_best(name: str, p: float) -> int:
    """The lowest-loss of seeds 0-2 at p: the capacity chapter's model."""
    return lowest_loss(name, p, among=(0, 1, 2))


def seed_options(page: Page) -> list[str]:
    return page.get_by_label("Seed").evaluate("(e) => [...e.options].map((o) => o.textContent)")


@pytest.mark.parametrize("p", [0.03, 0.003])
def test_b_as_the_grids_d40_draws_the_capacity_chapters_seed(
    browser: Browser, base_url: str, p: float
) -> None:
    """B has eight seeds and the capacity chapter's D40 three: in the grid, the seed drawn is
    the lowest-loss of 0-2, marked beside the lowest-loss of all eight; outside it, only the
    latter, drawn and marked."""
    grid, best = grid_best("sparsity-sweep", p), lowest_loss("sparsity-sweep", p)
    assert grid != best  # at these p (what makes the test tell the two rules apart)
    page = open_explorer(browser, f"{base_url}{PAGE}?experiment=sparsity-sweep&p={p}&grid=capacity")
    assert model(page) == ("sparsity-sweep", p, grid)
    options = seed_options(page)  # either may also be the model the chapter reports
    assert any(re.fullmatch(rf"{grid} \(lowest of 0–2(, reported)?\)", o) for o in options)
    assert any(re.fullmatch(rf"{best} \(lowest loss(, reported)?\)", o) for o in options)
    assert "the lowest-loss random start of seeds 0–2 at this p" in page.evaluate(STATUS)
    assert "the capacity chapter reports" in page.evaluate(STATUS)
    choose(page, "Experiment", "B:")  # out of the grid: another model, the book's seed
    page.wait_for_function(f"{MODEL} === 'sparsity-sweep|{p}|{best}'")
    assert "grid" not in page.url
    page.context.close()
    page = open_explorer(browser, f"{base_url}{PAGE}?experiment=sparsity-sweep&p={p}")
    assert model(page) == ("sparsity-sweep", p, best)
    options = seed_options(page)
    assert f"{best} (lowest loss)" in options and not any("lowest of" in o for o in options)
    assert not any("reported" in o for o in options)
    assert "capacity" not in page.evaluate(STATUS)
    page.context.close()


def test_a_tapped_neuron_is_marked_in_every_view(browser: Browser, base_url: str) -> None:
    page = open_explorer(browser, f"{base_url}{PAGE}?experiment=sparsity-sweep&p=0.03&seed=4")
    views = ("matrix", "stack", "polysemanticity", "graph")
    before = {v: plot_element(page, v).screenshot() for v in views}
    page.mouse.click(*page.evaluate(POSITION, ["matrix", 50, 7]))  # row 7 of the matrix
    selected = """() => Bokeh.documents[0].get_model_by_name("neurons").selected.indices"""
    assert page.evaluate(selected) == [7]
    edges = page.evaluate("""() => { const d = Bokeh.documents[0];
        const e = d.get_model_by_name("edges"), n = d.get_model_by_name("neurons");
        return [e.selected.indices.map((i) => e.data.neuron[i]), n.data.neuron[7],
                e.data.neuron.filter((j) => j === n.data.neuron[7]).length]; }""")
    assert edges[0] and set(edges[0]) == {edges[1]} and len(edges[0]) == edges[2]  # its edges
    for _ in range(25):  # the views redraw on the next frames: up to 5 s
        page.wait_for_timeout(200)
        changed = {v: plot_element(page, v).screenshot() != before[v] for v in views}
        if all(changed.values()):
            break
    assert all(changed.values()), changed
    page.mouse.click(*page.evaluate(POSITION, ["stack", 12, 0]))  # column 12 of the stack plot
    assert page.evaluate(selected) == [12]
    page.mouse.click(*page.evaluate(POSITION, ["polysemanticity", 5, 2]))  # column 5, up high
    assert page.evaluate(selected) == [5]
    page.context.close()


def test_every_chapter_link_opens_the_model_it_names(browser: Browser, base_url: str) -> None:
    links = set()
    for chapter in (HTML / "book").glob("*.html"):
        links |= set(re.findall(r'href="(explore\.html\?[^"]+)"', chapter.read_text()))
    assert len(links) >= 10, links
    for href in sorted(links)[:: max(1, len(links) // 6)]:  # a sample, spread over them
        query = dict(re.findall(r"(\w+)=([^&]+)", href.replace("&amp;", "&")))
        page = open_explorer(browser, base_url + "book/" + href.replace("&amp;", "&"))
        assert model(page) == (query["experiment"], float(query["p"]), int(query["seed"]))
        page.context.close()


MEASURE = "Bokeh.documents[0].get_model_by_name('measure-status').text"
THRESHOLD = "document.documentElement.dataset.explorerThreshold"


def measure_data(name: str, p: float, seed: int) -> dict[str, np.ndarray]:
    """The measure of model (p, seed) of `name`, decoded here from the explorer's data script:
    per feature, its negative-side, positive-side and presence scores."""
    text = (HTML / "explorer" / f"{name}.js").read_text()
    record = json.loads(text[text.index("(") + 1 : text.rindex(")")])
    k = next(k for k, x in enumerate(record["instances"]) if x["p"] == p and x["seed"] == seed)
    return {
        side: np.frombuffer(base64.b64decode(record[f"fve_{side}"]), "<f4")
        .reshape(-1, record["n"])[k]
        .astype(np.float64)
        for side in ("negative", "positive", "presence")
    }


def counted(scores: dict[str, np.ndarray], threshold: float) -> tuple[int, int]:
    """Features whose both sides reach `threshold`, and sides that do."""
    sides = (scores["negative"] >= threshold).astype(int) + (scores["positive"] >= threshold)
    return int((sides == 2).sum()), int(sides.sum())


def shown_counts(page: Page) -> tuple[float, int, int, dict[float, int]]:
    """What the measure view's line says: its threshold, the features computed and the sides
    there, and the features computed at each other threshold."""
    text = page.evaluate(MEASURE)
    found = re.search(r"Computes <b>(\d+)</b> of \d+ features on both sides at ([\d.]+) "
                      r"\(([^)]*)\); (\d+) of \d+ sides", text)  # fmt: skip
    assert found, text
    others = {float(t): int(c) for c, t in re.findall(r"(\d+) at ([\d.]+)", found[3])}
    return float(found[2]), int(found[1]), int(found[4]), others


def test_the_measure_view_counts_what_the_data_give_at_the_threshold_asked(
    browser: Browser, base_url: str
) -> None:
    name, p, seed = "sparsity-sweep", 0.01, 3
    page = open_explorer(browser, f"{base_url}{PAGE}?experiment={name}&p={p}&seed={seed}"
                                  "&threshold=0.8")  # fmt: skip
    assert model(page) == (name, p, seed)
    scores = measure_data(name, p, seed)
    every = {t: counted(scores, t) for t in (0.8, 0.9, 0.95)}
    assert every[0.8] != every[0.95]  # what makes the menu's effect visible in the count
    threshold, features, sides, others = shown_counts(page)
    assert (threshold, (features, sides)) == (0.8, every[0.8])
    assert others == {0.9: every[0.9][0], 0.95: every[0.95][0]}

    choose(page, "Threshold", "0.95")  # the same model, another count, kept in the address
    page.wait_for_function(f"{THRESHOLD} === '0.95'")
    threshold, features, sides, _ = shown_counts(page)
    assert (threshold, (features, sides)) == (0.95, every[0.95])
    assert model(page) == (name, p, seed) and "threshold=0.95" in page.url

    choose(page, "Feature probability p", "0.03")  # another model keeps the threshold
    page.wait_for_function(f"{MODEL}.startsWith('{name}|0.03|')")
    threshold, features, sides, _ = shown_counts(page)
    assert (threshold, (features, sides)) == (0.95, counted(measure_data(*model(page)), 0.95))
    assert "threshold=0.95" in page.url
    page.context.close()


def test_a_features_hover_gives_its_scores(browser: Browser, base_url: str) -> None:
    """Each side's marker of a feature: both scores and the presence score, to 3 decimals
    (in a model of 10 features, where no two features' markers touch)."""
    page = open_explorer(browser, f"{base_url}{PAGE}?experiment=asymmetric-motif")
    scores = measure_data(*model(page))
    for i in range(len(scores["positive"])):
        for side, dx in (("negative", -0.2), ("positive", 0.2)):
            tip = hover(page, "measure", i + dx, max(0.0, scores[side][i]))
            for label, key in (("negative side", "negative"), ("positive side", "positive"),
                               ("presence", "presence")):  # fmt: skip
                shown = float(tip[label].replace("−", "-"))
                assert shown == pytest.approx(scores[key][i], abs=5e-4), (i, side, tip)
    page.context.close()


def data_script(name: str) -> dict:
    """The explorer's data for experiment `name`, as the page reads it."""
    text = (HTML / "explorer" / f"{name}.js").read_text()
    return json.loads(text[text.index("(") + 1 : text.rindex(")")])


def settings() -> dict:
    """The explorer's settings, as the page reads them."""
    text = (HTML / "explorer" / "settings.js").read_text()
    return json.loads(text[text.index("(") + 1 : text.rindex(")")])


@pytest.mark.parametrize("winner", ["random", "constructed"])
def test_a_capacity_cell_leads_to_the_model_the_chapter_reports(
    browser: Browser, base_url: str, winner: str
) -> None:
    """The first cell (by the data) whose reported model, the lowest loss of its random starts
    (seeds 0-2) and its constructed starts, is a `winner` start: from another of its models
    (a constructed start if a random one won, else the lowest random start) the status line
    links to the reported one, and that model's status line and seed menu say so."""
    grid_seeds = settings()["capacitySeeds"]
    for cell in (c["name"] for c in settings()["capacity"]):
        data, built = data_script(cell), data_script(f"{cell}-constructed")
        r = next((r for r in data["reported"] if (r["start"] == "random") == (winner == "random")),
                 None)  # fmt: skip
        if r is not None:
            break
    else:
        pytest.skip(f"no cell's reported model is a {winner} start")
    p = r["p"]
    random = [(i["loss"], cell, i["seed"]) for i in data["instances"]
              if i["p"] == p and i["seed"] in grid_seeds]  # fmt: skip
    starts = [(i["loss"], built["name"], i["seed"]) for i in built["instances"] if i["p"] == p]
    assert min(random + starts)[1:] == (r["experiment"], r["seed"])  # the data agree
    other = min(starts if winner == "random" else random)[1:]
    page = open_explorer(browser, f"{base_url}{PAGE}?experiment={other[0]}&p={p}&seed={other[1]}"
                                  "&threshold=0.8")  # fmt: skip
    assert model(page) == (other[0], p, other[1])
    assert "the capacity chapter reports this cell's" in page.evaluate(STATUS)
    page.get_by_role("link", name=re.compile(r"^(seed \d+|\w+ start)$")).click()
    # a new page: no model drawn while it loads
    page.wait_for_function(f"({MODEL} || '').startsWith('{r['experiment']}|')", timeout=15_000)
    assert model(page) == (r["experiment"], p, r["seed"])
    assert "the model the capacity chapter reports for this cell" in page.evaluate(STATUS)
    assert any(o.startswith(f"{r['seed']} (") and "reported" in o for o in seed_options(page))
    assert page.evaluate(THRESHOLD) == "0.8"  # the link keeps the threshold
    page.context.close()
