"""What readers take away from the site: executed notebooks that run anywhere the package
is installed, the weight files, and every figure as SVG. Run after `make book`."""

import hashlib
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
import site_check
from bs4 import BeautifulSoup
from nbconvert.preprocessors import ExecutePreprocessor
from safetensors import safe_open

ROOT = Path(__file__).resolve().parents[1]
HTML = ROOT / "_build" / "html"
# Every chapter but the explorer, which is no notebook to take away (book/build.py).
CHAPTERS = sorted(c for c in (ROOT / "book").glob("*.md") if c.stem != "explore")


@pytest.fixture(scope="module", autouse=True)
def built():
    if not (HTML / "notebooks").is_dir():
        pytest.fail(f"no exported notebooks in {HTML}: run `make book` first")


@pytest.mark.parametrize("chapter", CHAPTERS, ids=[c.stem for c in CHAPTERS])
def test_every_chapter_is_exported_executed_with_its_figures(chapter):
    notebook = nbformat.read(HTML / "notebooks" / f"{chapter.stem}.ipynb", as_version=4)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert "needs the `superposition` package" in code[0].source  # the added setup cell ...
    assert not code[0].execution_count and not code[0].outputs  # ... which the build never ran
    assert all(cell.execution_count for cell in code[1:])  # the chapter, as Jupyter Book ran it
    outputs = [o for cell in code for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    figures = re.findall(r'figures\.show\(fig, "([\w-]+)"\)', chapter.read_text())
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) >= len(figures)
    for name in figures:
        svg = HTML / "figures" / f"{name}.svg"
        assert svg.read_text().lstrip().startswith("<?xml"), name


@pytest.mark.parametrize("chapter", CHAPTERS, ids=[c.stem for c in CHAPTERS])
def test_every_page_links_its_notebook_and_every_caption_its_svg(chapter):
    page = BeautifulSoup((HTML / "book" / f"{chapter.stem}.html").read_text(), "html.parser")
    links = [a["href"] for a in page.find_all("a", class_="download-notebook")]
    assert links == [f"../notebooks/{chapter.stem}.ipynb"]
    names = re.findall(r'figures\.show\(fig, "([\w-]+)"\)', chapter.read_text())
    svgs = {a["href"] for a in page.select("figcaption a") if a["href"].endswith(".svg")}
    assert svgs == {f"../figures/{name}.svg" for name in names}
    for href in [*links, *svgs]:
        assert (HTML / "book" / href).resolve().is_file(), href


def test_the_setup_cell_says_what_to_install_when_the_package_is_missing():
    notebook = nbformat.read(HTML / "notebooks" / "setup.ipynb", as_version=4)
    setup = next(cell.source for cell in notebook.cells if cell.cell_type == "code")
    probe = "import sys\nsys.modules['superposition'] = None\n" + setup
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert done.returncode != 0
    assert "ImportError" in done.stderr and "pip install -e ." in done.stderr


def test_a_downloaded_notebook_runs_elsewhere_with_weights_from_the_site(tmp_path, monkeypatch):
    """Outside the repository, with an empty weights folder: the setup cell fetches the
    files from the site (served here on 127.0.0.1) and the chapter runs."""
    with site_check.serve(HTML) as url:
        notebook = nbformat.read(HTML / "notebooks" / "no_superposition.ipynb", as_version=4)
        setup = notebook.cells[0]
        setup.source = re.sub(r"SITE = .*?  #", f"SITE = {url!r}  #", setup.source)
        monkeypatch.setenv("SUPERPOSITION_WEIGHTS", str(tmp_path / "weights"))
        runner = ExecutePreprocessor(timeout=300, kernel_name="python3")
        runner.preprocess(notebook, {"metadata": {"path": str(tmp_path)}})
    assert (tmp_path / "weights" / "no-superposition.safetensors").is_file()
    images = [o for c in notebook.cells if c.cell_type == "code" for o in c.outputs
              if "image/png" in o.get("data", {})]  # fmt: skip
    assert len(images) == 4


def test_the_weights_page_snippet_runs_and_its_hashes_match(tmp_path):
    page = BeautifulSoup((HTML / "book" / "weights.html").read_text(), "html.parser")
    hashes = {}
    for row in page.select("table tbody tr:has(code.sha256)"):  # the table of downloads
        link = row.find("a", href=True)
        hashes[link["href"]] = row.find("code", class_="sha256").get_text()
    assert len(hashes) == len(list((HTML / "weights").glob("*.safetensors"))) >= 4
    for href, digest in hashes.items():
        assert hashlib.sha256((HTML / "book" / href).resolve().read_bytes()).hexdigest() == digest
    (snippet,) = [
        block.get_text() for block in page.select("div.cell_input pre")
        if "load_file" in block.get_text()
    ]  # fmt: skip
    assert len(snippet.strip().splitlines()) <= 12
    (tmp_path / "sparsity-sweep.safetensors").write_bytes(
        (HTML / "weights" / "sparsity-sweep.safetensors").read_bytes()
    )
    done = subprocess.run([sys.executable, "-c", snippet], cwd=tmp_path, capture_output=True,
                          text=True, check=True)  # fmt: skip
    printed = dict(re.findall(r"^(\w+) (\(.*?\)) float32$", done.stdout, re.M))
    with safe_open(str(tmp_path / "sparsity-sweep.safetensors"), framework="numpy") as f:
        assert printed == {name: str(tuple(f.get_slice(name).get_shape())) for name in f.keys()}  # noqa: SIM118
