"""Claims of the introduction (book/intro.md), on the fields of `findings.intro()` it glues,
and its map from the paper's figures to ours. (B's dense model having no polysemantic neuron
is in tests/test_claims_engine.py.)"""

import ast
import re
from pathlib import Path

import jupytext
import pytest
import yaml
from bs4 import BeautifulSoup

from superposition import experiments, findings

pytestmark = pytest.mark.claims
ROOT = Path(__file__).resolve().parents[1]
INTRO = ROOT / "book" / "intro.md"
PAPER = "https://transformer-circuits.pub/2022/toy_model/index.html"
# Section anchors of the paper that public notes link to (the section itself, its set-up
# and its motif); other sub-sections are linked through the section.
PAPER_ANCHORS = {"computation", "computation-setup", "computation-asymmetric-motif"}


@pytest.fixture(scope="module")
def f(every_model):
    return findings.intro()


def test_the_experiments_table_is_the_registry(f, trained):
    assert [(e.label, e.name) for e in f.experiments] == [
        (e.label, e.name) for e in experiments.REGISTRY.values()
    ]
    for row in f.experiments:
        e = experiments.get(row.name)
        assert (row.n, row.m, row.feature_probs, row.seeds) == (
            e.n_features, e.n_hidden, e.feature_probs, len(e.seeds)
        )  # fmt: skip
        assert row.models == len(trained(row.name).final_loss) == e.n_instances
    assert f.n_models == sum(row.models for row in f.experiments)


def test_the_labels_are_defined_in_the_first_chapter():
    """The chapters call experiments A, B, C and B0: the intro, first in the toc, names each
    in its prose, next to the table of experiments."""
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    assert toc["root"] == "book/intro"
    prose = INTRO.read_text().split("(intro-experiments)=")[1].split("## What this book shows")[0]
    for e in experiments.REGISTRY.values():
        assert re.search(rf"\b{e.label}\b", prose), e.label


def test_dense_to_sparse_neurons_become_polysemantic(f):
    assert f.poly_dense == 0
    assert f.poly_sparsest > f.live_sparsest / 2


def test_the_motif_is_found_in_some_models_of_c_and_b_not_all(f):
    m = findings.motif()
    assert (f.motif_c_seeds, f.motif_c_with) == (m.c_seeds, m.c_with_motif)
    assert (f.motif_b_models, f.motif_b_with) == (m.b_models, m.b_models_with)
    assert 0 < f.motif_c_with < f.motif_c_seeds
    assert 0 < f.motif_b_with < f.motif_b_models
    e = {row.label: row for row in f.experiments}
    assert (f.motif_c_seeds, f.motif_b_models) == (e["C"].models, e["B"].models)


def test_no_chapter_loads_the_plain_recipe_models_to_draw_them():
    """'the plain-recipe models (B0) are measured but never drawn': no chapter's code loads
    their weights (the setup chapter measures them through findings.setup)."""
    plain = experiments.get("plain-recipe")
    for chapter in (ROOT / "book").glob("*.md"):
        code = "".join(c.source for c in jupytext.read(chapter).cells if c.cell_type == "code")
        assert plain.name not in code and "PLAIN" not in code, chapter.name


def test_the_paper_map_names_figures_of_ours_and_sections_of_the_paper():
    text = INTRO.read_text()
    ours = set(re.findall(r"name: (fig-[\w-]+)", "".join(
        p.read_text() for p in (ROOT / "book").glob("*.md")
    )))  # fmt: skip
    section = text.split("(intro-paper)=")[1].split("## What is different here")[0]
    cited = re.findall(r"\{numref\}`([\w-]+)`", section)
    assert cited and set(cited) <= ours, set(cited) - ours
    anchors = re.findall(re.escape(PAPER) + r"#([\w-]+)", text)
    assert anchors and set(anchors) <= PAPER_ANCHORS, set(anchors) - PAPER_ANCHORS
    for figure in ("fig-a-matrix", "fig-a-stack", "fig-a-graph", "fig-sweep-stack"):
        assert figure in cited


def _run_source_cell(monkeypatch, url):
    """Run the intro's cell that shows the source link; return what it displays."""
    notebook = jupytext.read(INTRO)
    (cell,) = [c for c in notebook.cells if "SUPERPOSITION_REPO_URL" in c.source]
    tree = ast.parse(cell.source)
    *body, last = tree.body
    scope: dict = {}
    if url is None:
        monkeypatch.delenv("SUPERPOSITION_REPO_URL", raising=False)
    else:
        monkeypatch.setenv("SUPERPOSITION_REPO_URL", url)
    exec(compile(ast.Module(body, []), "intro", "exec"), scope)
    return eval(compile(ast.Expression(last.value), "intro", "eval"), scope)


def test_the_source_link_is_shown_only_when_the_build_has_one(monkeypatch):
    shown = BeautifulSoup(_run_source_cell(monkeypatch, "https://github.com/o/b?x=1&y=2").data,
                          "html.parser")  # fmt: skip
    assert shown.get_text() == "Source: https://github.com/o/b?x=1&y=2"
    assert [a["href"] for a in shown.select("a")] == ["https://github.com/o/b?x=1&y=2"]
    assert _run_source_cell(monkeypatch, None) is None
    assert _run_source_cell(monkeypatch, "") is None


@pytest.mark.parametrize(
    "url",
    ['https://x.org/"><img src=x onerror=alert(1)>', "javascript:alert(1)", "<b>hi</b>",
     "https://x.org/ onmouseover=alert(1)", "ftp://x.org/"],
)  # fmt: skip
def test_a_repository_address_that_is_not_http_fails_the_chapter(monkeypatch, url):
    """Today's cell put the variable into the page as raw Markdown, so markup in it ran."""
    with pytest.raises(ValueError, match="SUPERPOSITION_REPO_URL is not an http"):
        _run_source_cell(monkeypatch, url)
