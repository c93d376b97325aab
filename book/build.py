"""Build the book into _build/html, re-running chapters only when their inputs changed.

    .venv/bin/python book/build.py [--force]      (what `make book` runs, after `make figures`)

Before Sphinx runs, the export step fills _build/site_extra/, which the site publishes at
its root: weights/ (the cached weight files), notebooks/ (every chapter as a notebook,
executed by nbconvert in a fresh kernel) and figures/ (every figure as SVG, written while
those notebooks run). Set SUPERPOSITION_SITE_URL to the site's address and the exported
notebooks fetch missing weight files from it.

Jupyter Book's execution cache keys on the code of each cell, so on its own it would keep
serving outputs computed from old weights or old library code. This script keeps two keys
in _build/: the *code key* (src/, the weight files, the lock) and the *book key* (the code
key plus the chapters and the configuration). A changed code key clears the execution
cache, so every chapter runs again; a changed book key rebuilds the site; when neither
changed, the build is skipped. A failing cell or any Sphinx warning fails the build.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BUILD = ROOT / "_build"
HTML = BUILD / "html"
EXTRA = BUILD / "site_extra"

# The first cell of every exported notebook: what it needs to run outside the repository.
SETUP_CELL = """\
# Added to the downloadable copy of this chapter: what it needs to run anywhere.
try:
    import superposition
except ImportError:
    raise ImportError(
        "This notebook needs the `superposition` package from the book's repository: "
        "clone the repository, run `pip install -e .` in it (or `make setup` and use "
        ".venv/bin/python), then run this notebook again."
    ) from None
from superposition import experiments, store

SITE = {site!r}  # the book's site, which publishes the weight files (None: not published)
for name in experiments.REGISTRY if SITE else []:
    store.fetch(name, SITE.rstrip("/") + "/weights/")  # does nothing when the file is fresh
print("weights from", store.folder())
"""


def _digest(paths: list[Path]) -> str:
    h = hashlib.sha256()
    for path in sorted(paths):
        # Weights may live outside the repository ($SUPERPOSITION_WEIGHTS): name them by file.
        name = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path.name
        h.update(str(name).encode() + b"\0" + path.read_bytes())
    return h.hexdigest()


def _weights_folder() -> Path:
    sys.path.insert(0, str(ROOT / "src"))
    from superposition.paths import weights_folder  # imports nothing heavy

    return weights_folder()


def code_key() -> str:
    files = [*(ROOT / "src" / "superposition").glob("*.py"), ROOT / "requirements.lock"]
    files += _weights_folder().glob("*.safetensors")
    return _digest(files)


def book_key(code: str) -> str:
    files = [ROOT / "_config.yml", ROOT / "_toc.yml", *(ROOT / "book").rglob("*")]
    files = [f for f in files if f.is_file() and "__pycache__" not in f.parts]
    return hashlib.sha256((code + _digest(files)).encode()).hexdigest()


def build_command(root: Path) -> list[str]:
    """The Jupyter Book call: every page, warnings are errors, broken references too."""
    jupyter_book = Path(sys.executable).parent / "jupyter-book"
    return [str(jupyter_book), "build", str(root), "--all", "-W", "-n", "--keep-going"]


def chapters() -> list[Path]:
    """The chapters of _toc.yml, root first, as paths to their MyST files."""
    import yaml

    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [toc["root"]] + [entry["file"] for entry in toc.get("chapters", [])]
    return [ROOT / f"{name}.md" for name in files]


def export(site: str | None) -> float:
    """Fill _build/site_extra/ (weights, executed notebooks, SVG figures). Returns seconds."""
    import jupytext
    import nbformat
    from nbconvert.preprocessors import ExecutePreprocessor

    start = time.perf_counter()
    shutil.rmtree(EXTRA, ignore_errors=True)
    (EXTRA / "weights").mkdir(parents=True)
    (EXTRA / "notebooks").mkdir()
    for path in sorted(_weights_folder().glob("*.safetensors")):
        shutil.copyfile(path, EXTRA / "weights" / path.name)
    os.environ["SUPERPOSITION_FIGURES"] = str(EXTRA / "figures")  # the kernels inherit it
    try:
        for chapter in chapters():
            notebook = jupytext.read(chapter)
            notebook.cells.insert(0, nbformat.v4.new_code_cell(SETUP_CELL.format(site=site)))
            notebook.metadata["kernelspec"] = {
                "name": "python3", "display_name": "Python 3", "language": "python"
            }  # fmt: skip
            runner = ExecutePreprocessor(timeout=600, kernel_name="python3", record_timing=False)
            runner.preprocess(notebook, {"metadata": {"path": str(chapter.parent)}})
            nbformat.write(notebook, EXTRA / "notebooks" / f"{chapter.stem}.ipynb")
    finally:
        del os.environ["SUPERPOSITION_FIGURES"]
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--force", action="store_true", help="rebuild and re-run everything")
    args = parser.parse_args()

    code = code_key()
    book = book_key(code)
    code_file, book_file = BUILD / ".code-key", BUILD / ".book-key"
    old_code = code_file.read_text() if code_file.exists() else ""
    old_book = book_file.read_text() if book_file.exists() else ""
    if not args.force and old_book == book and (HTML / "index.html").exists():
        print(f"book is up to date: {HTML / 'index.html'}")
        return 0
    if args.force or old_code != code:
        shutil.rmtree(BUILD / ".jupyter_cache", ignore_errors=True)
        print("src/ or the weights changed: every chapter runs again")
    book_file.unlink(missing_ok=True)  # a failed build must not look up to date

    start = time.perf_counter()
    try:
        seconds = export(os.environ.get("SUPERPOSITION_SITE_URL") or None)
    except Exception as exc:  # a chapter that fails here fails the build, with its cell
        print(f"exporting the chapters FAILED: {exc}", file=sys.stderr)
        return 1
    print(f"exported notebooks, weights and SVG figures in {seconds:.0f} s")
    done = subprocess.run(build_command(ROOT), cwd=ROOT)
    if done.returncode != 0:
        print(
            f"book build FAILED (exit {done.returncode}); see the messages above", file=sys.stderr
        )
        return done.returncode
    BUILD.mkdir(exist_ok=True)
    code_file.write_text(code)
    book_file.write_text(book)
    print(f"book built in {time.perf_counter() - start:.0f} s: open {HTML / 'index.html'}")
    print("or serve it with `make serve`")
    return 0


if __name__ == "__main__":
    sys.exit(main())
