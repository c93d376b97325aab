"""Build the book into _build/html, re-running chapters only when their inputs changed.

    .venv/bin/python book/build.py [--force]      (what `make book` runs, after `make figures`)

Every chapter runs once, in Jupyter Book. The site publishes at its root, from
_build/site_extra/, weights/ (the registry's weight files, validated) and figures/ (every
figure as SVG, saved while its chapter runs), and, in notebooks/, the notebooks Jupyter Book
executed (from its execution cache), each with a first cell that sets it up elsewhere. Set
SUPERPOSITION_SITE_URL to the site's address and those notebooks fetch missing weight files
from it.

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
FIGURES_ENV = "SUPERPOSITION_FIGURES"  # where figures.show saves SVG copies (see figures.py)
# Pages that are no notebook to take away: the explorer runs only on the site.
NOT_EXPORTED = {"explore"}
REPO_ENV = "SUPERPOSITION_REPO_URL"  # the source repository, which the introduction links

# The first cell of every exported notebook: what it needs to run outside the repository.
SETUP_CELL = """\
# Added to the downloadable copy of this chapter (the cells below ran when the book was
# built; this one did not): what the chapter needs to run anywhere. Run it first.
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
    package = ROOT / "src" / "superposition"
    files = [*package.rglob("*.py"), *package.rglob("*.js"), ROOT / "requirements.lock"]
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


def prepare_extra(fresh_figures: bool) -> None:
    """Before Sphinx: fill _build/site_extra/ with the weights it publishes and the model
    explorer's scripts, and empty its figures/ when every chapter runs again (a chapter
    served from the cache keeps its SVGs)."""
    publish_weights(EXTRA / "weights")
    from superposition import explorer

    explorer.write_site(EXTRA)  # the explorer's data, drawn from the weights just published
    if fresh_figures:
        shutil.rmtree(EXTRA / "figures", ignore_errors=True)
    (EXTRA / "figures").mkdir(parents=True, exist_ok=True)


def export_notebooks(site: str | None) -> None:
    """After Sphinx: publish the notebooks Jupyter Book executed, taken from its execution
    cache (which holds every chapter's outputs, whether it ran in this build or an earlier
    one), each with a first cell, not run, that sets it up elsewhere. No chapter runs twice."""
    import jupytext
    import nbformat
    from jupyter_cache import get_cache

    cache = get_cache(str(BUILD / ".jupyter_cache"))
    (HTML / "notebooks").mkdir(parents=True, exist_ok=True)
    for chapter in chapters():
        if chapter.stem in NOT_EXPORTED:
            continue
        _, notebook = cache.merge_match_into_notebook(jupytext.read(chapter))  # KeyError: not run
        notebook.cells.insert(0, nbformat.v4.new_code_cell(SETUP_CELL.format(site=site)))
        notebook.metadata["kernelspec"] = {
            "name": "python3", "display_name": "Python 3", "language": "python"
        }  # fmt: skip
        nbformat.write(notebook, HTML / "notebooks" / f"{chapter.stem}.ipynb")


def run_child(command: list[str], cwd: Path) -> int:
    """Run `command` in its own process group and wait for it. A SIGTERM, SIGINT or SIGHUP to
    this script goes to the whole group (Jupyter Book and the kernels it starts), and the
    script waits for them to end before it exits with 128 + the signal: no orphan is left
    writing _build/html."""
    received: list[int] = []
    started: list[subprocess.Popen] = []

    def forward(signum: int, frame: object) -> None:
        received.append(signum)
        for child in started:
            with contextlib.suppress(ProcessLookupError):  # it has just ended
                os.killpg(child.pid, signum)

    # Caught before the child starts, so a signal while it starts is not lost, and the child
    # starts with these signals at their defaults: a signal this script inherited as ignored
    # (SIGINT in a background job of a script) would otherwise stay ignored in Jupyter Book.
    previous = {sig: signal.signal(sig, forward) for sig in FORWARDED}
    try:
        child = subprocess.Popen(command, cwd=cwd, start_new_session=True)
        started.append(child)
        if received:  # arrived while the child started
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.pid, received[0])
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
        prepare_extra(fresh_figures=args.force or old_code != code)
    except Exception as exc:  # an unusable weight file fails the build before Sphinx runs
        print(f"publishing the weights FAILED: {exc}", file=sys.stderr)
        return 1
    # Every chapter runs once, in Jupyter Book; its figures are saved as SVG as it runs.
    os.environ[FIGURES_ENV] = str(EXTRA / "figures")
    returncode = run_child(build_command(ROOT), ROOT)
    if returncode != 0:
        print(f"book build FAILED (exit {returncode}); see the messages above", file=sys.stderr)
        return returncode
    export_notebooks(site)
    BUILD.mkdir(exist_ok=True)
    code_file.write_text(code)
    book_file.write_text(book)
    print(f"book built in {time.perf_counter() - start:.0f} s: open {HTML / 'index.html'}")
    print("or serve it with `make serve`")
    return 0


if __name__ == "__main__":
    sys.exit(main())
