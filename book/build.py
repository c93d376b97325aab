"""Build the book into _build/html, re-running chapters only when their inputs changed.

    .venv/bin/python book/build.py [--force]      (what `make book` runs, after `make figures`)

Every chapter runs once, in Jupyter Book. The site publishes at its root, from
_build/site_extra/, weights/ (the registry's weight files, validated) and figures/ (every
figure as SVG, saved while its chapter runs), and, in notebooks/, the notebooks Jupyter Book
executed (from its execution cache), each with a first cell that sets it up elsewhere. Set
SUPERPOSITION_SITE_URL to the site's address and those notebooks fetch missing weight files
from it, each checked against the SHA-256 of the file this build published.

The weight files are read once: each is validated and copied into _build/site_extra/weights/
(a snapshot, made afresh by every build), and the chapters run with $SUPERPOSITION_WEIGHTS
set to that snapshot, so every chapter reads exactly the bytes the site publishes, whatever
happens to the weights folder meanwhile. _build/html is made afresh too: the site holds only
what this build produced.

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
import json
import os
import re
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
WEIGHTS_ENV = "SUPERPOSITION_WEIGHTS"  # where the chapters read the weight files (paths.py)
# Pages that are no notebook to take away: the explorer runs only on the site.
NOT_EXPORTED = {"explore"}
REPO_ENV = "SUPERPOSITION_REPO_URL"  # the source repository, which the introduction links
SITE_ENV = "SUPERPOSITION_SITE_URL"  # the site, which the exported notebooks fetch from
# What _build/site_extra/ holds, all of it made by this script, with the explorer's folder
# (explorer.FOLDER): anything else there is removed before it could be published.
EXTRA_FOLDERS = ("weights", "figures")
# A chapter's `figures.show(fig, "fig-name")`: the SVGs that figures/ publishes.
FIGURE_CALL = re.compile(r'figures\.show\(\s*\w+\s*,\s*"([\w-]+)"\s*\)')
GRACE_S = 5.0  # how long the watchdog gives Jupyter Book to end on SIGTERM, before SIGKILL

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
from superposition import store

SITE = {site!r}  # the book's site, which publishes the weight files (None: not published)
# The SHA-256 of each weight file as the site publishes it: a download must match it.
SHA256 = {{
{sha256}}}
for name in SHA256 if SITE else []:  # (a file already here and valid is kept)
    store.fetch(name, SITE.rstrip("/") + "/weights/", sha256=SHA256[name])
print("weights from", store.folder())
"""

# The watchdog (see run_child). In its own session and deaf to the signals a terminal or a
# job control sends, it reads the child's process group, then "done", from a pipe whose
# write end only this script holds. The pipe closing without "done" means this script died
# (even by SIGKILL, which no handler sees): it stops the child's process group and those of
# the child's descendants (a Jupyter kernel runs in a session of its own), SIGTERM first,
# then SIGKILL what is left after the grace period.
WATCHDOG = """\
import os
import signal
import sys
import time

for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGTERM):
    signal.signal(sig, signal.SIG_IGN)
data = b""
while chunk := os.read(0, 64):
    data += chunk
first, _, rest = data.partition(b"\\n")
if not first.strip() or rest == b"done":
    sys.exit(0)
groups, stopped, grace = {int(first)}, set(), float(sys.argv[1])


def processes():
    \"\"\"{pid: (parent pid, process group)} of every process (none without Linux's /proc).\"\"\"
    found = {}
    for entry in os.listdir("/proc") if os.path.isdir("/proc") else []:
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
            found[int(entry)] = tuple(map(int, stat[stat.rindex(")") + 2 :].split()[1:3]))
        except (OSError, ValueError):  # not a process, or it has just ended
            pass
    return found


def watch():
    \"\"\"Add the groups of the watched groups' children, theirs, and so on; drop those gone.\"\"\"
    table = processes()
    changed = True
    while changed:
        changed = False
        for parent, group in table.values():
            if group not in groups and table.get(parent, (0, None))[1] in groups:
                groups.add(group)
                changed = True
    for group in list(groups):
        try:
            os.killpg(group, 0)
        except OSError:
            groups.discard(group)


def send(sig, to):
    for group in to:
        try:
            os.killpg(group, sig)
        except OSError:
            pass


print(f"book/build.py ended with its child running: stopping process group {int(first)}",
      file=sys.stderr)
end = time.monotonic() + grace
while time.monotonic() < end:
    watch()  # before the first SIGTERM: a kernel is known by its parent, which that ends
    if not groups:
        sys.exit(0)
    send(signal.SIGTERM, groups - stopped)
    stopped |= groups
    time.sleep(0.1)
watch()
send(signal.SIGKILL, groups)
"""


def _digest(paths: list[Path], weights: list[Path] | None = None) -> str:
    h = hashlib.sha256()
    for path in sorted(paths):
        name = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path.name
        h.update(str(name).encode() + b"\0" + path.read_bytes())
    for path in sorted(weights or []):  # named as in weights/, whichever folder they are read from
        h.update(f"weights/{path.name}".encode() + b"\0" + path.read_bytes())
    return h.hexdigest()


def checked_address(name: str) -> str | None:
    """The web address in environment variable `name` (None when unset or empty), or a
    ValueError if it is not a plain http(s) address: both reach the pages and notebooks."""
    _importable()
    from superposition import escape

    value = os.environ.get(name) or None
    return escape.web_address(value, name) if value else None


def _importable() -> None:
    """The package importable without installing it (src/ first on the path, once)."""
    if str(ROOT / "src") not in sys.path:
        sys.path.insert(0, str(ROOT / "src"))


def weights_source() -> Path:
    """The weights folder, as an absolute path: a relative $SUPERPOSITION_WEIGHTS is taken
    from the directory this script was started in (the chapters run in book/)."""
    _importable()
    from superposition.paths import weights_folder  # imports nothing heavy

    return weights_folder().absolute()


def weight_files(folder: Path | None = None) -> list[Path]:
    """The registry's weight files, by name, in `folder` (default: the weights folder): the
    only ones the book reads or publishes."""
    _importable()
    from superposition.experiments import REGISTRY  # imports nothing heavy

    folder = folder or weights_source()
    return [folder / f"{name}.safetensors" for name in REGISTRY]


def code_key(weights: Path | None = None) -> str:
    """The key of src/, the lock, the address and the weight files in `weights` (default:
    the weights folder; a build keys on its snapshot, the very bytes its chapters read)."""
    package = ROOT / "src" / "superposition"
    files = [*package.rglob("*.py"), *package.rglob("*.js"), ROOT / "requirements.lock"]
    found = [path for path in weight_files(weights) if path.is_file()]
    # The intro shows $SUPERPOSITION_REPO_URL from a cell: only a new code key re-runs it.
    repo = os.environ.get(REPO_ENV) or None
    return hashlib.sha256(f"{_digest(files, found)} repo={repo}".encode()).hexdigest()


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


def figure_names() -> set[str]:
    """The figures the chapters show (by `figures.show(fig, "fig-name")`, named literally)."""
    return {name for chapter in chapters() for name in FIGURE_CALL.findall(chapter.read_text())}


def _remove(path: Path) -> None:
    """Remove a file, a link or a folder with all it holds; nothing there is fine."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def publish_weights(dest: Path, source: Path | None = None) -> dict[str, str]:
    """Snapshot the registry's weight files from `source` (default: the weights folder) into
    `dest`, each read once and validated, and return {experiment: SHA-256 of its file}: a
    stray file of the weights folder never leaves the machine, an unusable one fails the
    build, and the bytes published are the bytes validated.

    `dest` is made afresh: removed first, then filled as a hidden folder beside it, renamed
    to `dest` once every file is in. A snapshot that fails leaves no `dest` at all (and a
    hidden folder, if this script is killed, that the next build removes)."""
    from superposition import experiments, store

    _remove(dest)
    partial = dest.with_name(f".{dest.name}-{os.getpid()}.partial")
    _remove(partial)
    partial.mkdir(parents=True)
    try:
        digests = {}
        for experiment in experiments.REGISTRY.values():
            data = store.read_bytes(experiment, source)
            path = store.path_for(experiment, source)
            store.parse(data, experiment, path)
            (partial / path.name).write_bytes(data)
            digests[experiment.name] = hashlib.sha256(data).hexdigest()
        partial.rename(dest)
    except BaseException:
        _remove(partial)
        raise
    return digests


def prepare_extra(fresh_figures: bool) -> None:
    """Before Sphinx, with _build/site_extra/weights/ just made (publish_weights) and
    $SUPERPOSITION_WEIGHTS naming it: write the model explorer's scripts, and keep in
    figures/ only the SVGs a chapter names, none at all when every chapter runs again (a
    chapter served from the cache does not save its SVGs again, so they are kept otherwise).
    Nothing else stays in _build/site_extra/: all of it is published."""
    from superposition import explorer

    for entry in list(EXTRA.iterdir()):
        if entry.name not in {*EXTRA_FOLDERS, explorer.FOLDER}:
            _remove(entry)
    explorer.write_site(EXTRA)  # the explorer's data, drawn from the weights just published
    figures = EXTRA / "figures"
    if fresh_figures or figures.is_symlink() or (figures.exists() and not figures.is_dir()):
        _remove(figures)
    figures.mkdir(parents=True, exist_ok=True)
    named = {f"{name}.svg" for name in figure_names()}
    for entry in list(figures.iterdir()):
        if entry.name not in named or entry.is_symlink() or not entry.is_file():
            _remove(entry)


def setup_cell(site: str | None, sha256: dict[str, str]) -> str:
    """The first cell of an exported notebook, with the SHA-256 of each published file."""
    lines = "".join(f"    {json.dumps(name)}: {json.dumps(digest)},\n"
                    for name, digest in sha256.items())  # fmt: skip
    return SETUP_CELL.format(site=site, sha256=lines)


def export_notebooks(site: str | None, sha256: dict[str, str]) -> None:
    """After Sphinx: publish the notebooks Jupyter Book executed, taken from its execution
    cache (which holds every chapter's outputs, whether it ran in this build or an earlier
    one), each with a first cell, not run, that sets it up elsewhere, fetching the weight
    files whose SHA-256 `sha256` gives. No chapter runs twice."""
    import jupytext
    import nbformat
    from jupyter_cache import get_cache

    cache = get_cache(str(BUILD / ".jupyter_cache"))
    (HTML / "notebooks").mkdir(parents=True, exist_ok=True)
    for chapter in chapters():
        if chapter.stem in NOT_EXPORTED:
            continue
        _, notebook = cache.merge_match_into_notebook(jupytext.read(chapter))  # KeyError: not run
        notebook.cells.insert(0, nbformat.v4.new_code_cell(setup_cell(site, sha256)))
        notebook.metadata["kernelspec"] = {
            "name": "python3", "display_name": "Python 3", "language": "python"
        }  # fmt: skip
        nbformat.write(notebook, HTML / "notebooks" / f"{chapter.stem}.ipynb")


def _start_watchdog() -> tuple[subprocess.Popen, int]:
    """Start the watchdog (WATCHDOG) and return it with the write end of its pipe."""
    read, write = os.pipe()  # neither end inheritable: no other child of ours holds one
    try:
        watchdog = subprocess.Popen(
            [sys.executable, "-I", "-S", "-c", WATCHDOG, str(GRACE_S)],
            stdin=read, stdout=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
    except BaseException:
        os.close(write)
        raise
    finally:
        os.close(read)
    return watchdog, write


def _tell(fd: int, text: str) -> None:
    with contextlib.suppress(OSError):  # a watchdog someone killed: the build goes on
        os.write(fd, text.encode())


def run_child(command: list[str], cwd: Path, env: dict[str, str] | None = None) -> int:
    """Run `command` in its own process group and wait for it. A SIGTERM, SIGINT or SIGHUP to
    this script goes to the whole group (Jupyter Book; the kernels it starts, each in a
    session of its own, end with it), and the script waits for it to end before it exits
    with 128 + the signal: no orphan is left writing _build/html. Should the script die
    without a word (SIGKILL, which no handler sees), a watchdog, which holds the read end of
    a pipe whose write end only this script holds, sees the pipe close without "done" and
    stops the group and its descendants' groups (SIGTERM, then SIGKILL)."""
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
    watchdog, write = None, None
    try:
        watchdog, write = _start_watchdog()  # first, so the child is never unwatched
        # close_fds: the child must not hold the pipe's write end, or it would never close.
        child = subprocess.Popen(command, cwd=cwd, env=env, start_new_session=True,
                                 close_fds=True)  # fmt: skip
        started.append(child)
        _tell(write, f"{child.pid}\n")  # its process group (a new session's id is its pid)
        if received:  # arrived while the child started
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.pid, received[0])
        code = child.wait()
        _tell(write, "done")
    finally:
        if write is not None:
            os.close(write)  # without "done" (an exception): the watchdog stops the group
        if watchdog is not None:
            watchdog.wait()
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
    _importable()
    from superposition.escape import terminal

    try:
        site = checked_address(SITE_ENV)
        checked_address(REPO_ENV)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    source = weights_source()
    code_file, book_file = BUILD / ".code-key", BUILD / ".book-key"
    old_code = code_file.read_text() if code_file.exists() else ""
    old_book = book_file.read_text() if book_file.exists() else ""
    up_to_date = old_book == book_key(code_key(source), site)
    if not args.force and up_to_date and (HTML / "index.html").exists():
        print(f"book is up to date: {HTML / 'index.html'}")
        return 0
    book_file.unlink(missing_ok=True)  # a failed build must not look up to date

    start = time.perf_counter()
    snapshot = EXTRA / "weights"
    if source.resolve() == snapshot.resolve():  # it would be removed before it is read
        print(f"${WEIGHTS_ENV} names the build's own copy, {snapshot}: name the weights "
              f"folder (by default weights/)", file=sys.stderr)  # fmt: skip
        return 1
    try:
        sha256 = publish_weights(snapshot, source)
    except Exception as exc:  # an unusable weight file fails the build before Sphinx runs
        print(f"publishing the weights FAILED: {terminal(exc)}", file=sys.stderr)
        return 1
    # Keyed on the snapshot, which every chapter reads and the site publishes.
    code = code_key(snapshot)
    book = book_key(code, site)
    if args.force or old_code != code:
        shutil.rmtree(BUILD / ".jupyter_cache", ignore_errors=True)
        print("src/ or the weights changed: every chapter runs again")
    # From here on the weights are the snapshot's, in this script (the explorer) and in the
    # chapters, which run in book/: hence an absolute path.
    os.environ[WEIGHTS_ENV] = str(snapshot.absolute())
    try:
        prepare_extra(fresh_figures=args.force or old_code != code)
    except Exception as exc:
        print(f"preparing the site FAILED: {terminal(exc)}", file=sys.stderr)
        return 1
    _remove(HTML)  # the site is made afresh (every page is written again anyway: --all)
    # Every chapter runs once, in Jupyter Book; its figures are saved as SVG as it runs.
    env = {**os.environ, WEIGHTS_ENV: str(snapshot.absolute()), FIGURES_ENV: str(EXTRA / "figures")}
    returncode = run_child(build_command(ROOT), ROOT, env=env)
    if returncode != 0:
        print(f"book build FAILED (exit {returncode}); see the messages above", file=sys.stderr)
        return returncode
    export_notebooks(site, sha256)
    BUILD.mkdir(exist_ok=True)
    code_file.write_text(code)
    book_file.write_text(book)
    print(f"book built in {time.perf_counter() - start:.0f} s: open {HTML / 'index.html'}")
    print("or serve it with `make serve`")
    return 0


if __name__ == "__main__":
    sys.exit(main())
