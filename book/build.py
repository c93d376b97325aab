"""Build the book into _build/html, re-running chapters only when their inputs changed.

    .venv/bin/python book/build.py [--force]      (what `make book` runs, after `make figures`)

Before Sphinx runs, the export step fills _build/site_extra/, which the site publishes at
its root: weights/ (the cached weight files), notebooks/ (every chapter as a notebook,
executed by nbconvert in a fresh kernel) and figures/ (every figure as SVG, written while
those notebooks run). Set SUPERPOSITION_SITE_URL to the site's address and the exported
notebooks fetch missing weight files from it.

Jupyter Book's execution cache keys on the code of each cell, so on its own it would keep
serving outputs computed from old weights or old library code. This script keeps two keys
in _build/: the *code key* (src/, the weight files, the lock, $SUPERPOSITION_REPO_URL) and
the *book key* (the code key plus the chapters and the configuration). A changed code key
clears the execution cache, so every chapter runs again; a changed book key rebuilds the
site; when neither changed, the build is skipped. A failing cell or any Sphinx warning
fails the build.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BUILD = ROOT / "_build"
HTML = BUILD / "html"
EXTRA = BUILD / "site_extra"
FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
REPO_ENV = "SUPERPOSITION_REPO_URL"  # the source repository, which the introduction links

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


def weight_files() -> list[Path]:
    """The registry's weight files, by name: the only ones the book reads or publishes."""
    sys.path.insert(0, str(ROOT / "src"))
    from superposition.experiments import REGISTRY  # imports nothing heavy
    from superposition.paths import weights_folder

    return [weights_folder() / f"{name}.safetensors" for name in REGISTRY]


def code_key() -> str:
    files = [*(ROOT / "src" / "superposition").glob("*.py"), ROOT / "requirements.lock"]
    files += [path for path in weight_files() if path.is_file()]
    # The intro shows $SUPERPOSITION_REPO_URL from a cell: only a new code key re-runs it.
    repo = os.environ.get(REPO_ENV) or None
    return hashlib.sha256(f"{_digest(files)} repo={repo}".encode()).hexdigest()


def book_key(code: str, site: str | None) -> str:
    """Also keyed on the site's address, which the exported notebooks fetch weights from."""
    files = [ROOT / "_config.yml", ROOT / "_toc.yml", *(ROOT / "book").rglob("*")]
    files = [f for f in files if f.is_file() and "__pycache__" not in f.parts]
    return hashlib.sha256((code + _digest(files) + f"site={site}").encode()).hexdigest()


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


def publish_weights(dest: Path) -> None:
    """Copy the registry's weight files into `dest`, each validated: a stray file of the
    weights folder never leaves the machine, and an unusable one fails the build."""
    from superposition import experiments, store

    dest.mkdir(parents=True, exist_ok=True)
    for experiment in experiments.REGISTRY.values():
        data, path = store.read_bytes(experiment), store.path_for(experiment)
        store.parse(data, experiment, path)  # the bytes published are the bytes validated
        (dest / path.name).write_bytes(data)


def export(site: str | None) -> float:
    """Fill _build/site_extra/ (weights, executed notebooks, SVG figures). Returns seconds."""
    import jupytext
    import nbformat
    from nbconvert.preprocessors import ExecutePreprocessor

    start = time.perf_counter()
    shutil.rmtree(EXTRA, ignore_errors=True)
    (EXTRA / "notebooks").mkdir(parents=True)
    publish_weights(EXTRA / "weights")
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


def run_child(command: list[str], cwd: Path) -> int:
    """Run `command` in its own process group and wait for it. A SIGTERM, SIGINT or SIGHUP to
    this script goes to the whole group (Jupyter Book and the kernels it starts), and the
    script waits for them to end before it exits with 128 + the signal: no orphan is left
    writing _build/html."""
    child = subprocess.Popen(command, cwd=cwd, start_new_session=True)
    received: list[int] = []

    def forward(signum: int, frame: object) -> None:
        received.append(signum)
        with contextlib.suppress(ProcessLookupError):  # it has just ended
            os.killpg(child.pid, signum)

    previous = {sig: signal.signal(sig, forward) for sig in FORWARDED}
    try:
        code = child.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 128 + received[0] if received else code


def _stop(signum: int, frame: object) -> None:
    sys.exit(128 + signum)  # unwinds the export, whose kernels are shut down on the way out


def main() -> int:
    for sig in FORWARDED:
        signal.signal(sig, _stop)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--force", action="store_true", help="rebuild and re-run everything")
    args = parser.parse_args()

    site = os.environ.get("SUPERPOSITION_SITE_URL") or None
    code = code_key()
    book = book_key(code, site)
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
        seconds = export(site)
    except Exception as exc:  # a chapter that fails here fails the build, with its cell
        print(f"exporting the chapters FAILED: {exc}", file=sys.stderr)
        return 1
    print(f"exported notebooks, weights and SVG figures in {seconds:.0f} s")
    returncode = run_child(build_command(ROOT), ROOT)
    if returncode != 0:
        print(f"book build FAILED (exit {returncode}); see the messages above", file=sys.stderr)
        return returncode
    BUILD.mkdir(exist_ok=True)
    code_file.write_text(code)
    book_file.write_text(book)
    print(f"book built in {time.perf_counter() - start:.0f} s: open {HTML / 'index.html'}")
    print("or serve it with `make serve`")
    return 0


if __name__ == "__main__":
    sys.exit(main())
