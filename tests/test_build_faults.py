"""book/build.py's own faults, tested on a tiny fake repository in tmp_path: Jupyter Book is
replaced by a stand-in (`Chapters`) that reads the weights as a chapter would and copies
_build/site_extra/ into _build/html as Sphinx does, so each build takes a fraction of a
second. Only the watchdog test starts real processes (`sleep`)."""

import contextlib
import dataclasses
import hashlib
import importlib.util
import inspect
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_store import TINY, fake_result

from superposition import experiments, explorer, store

ROOT = Path(__file__).resolve().parents[1]
BUILD_PY = ROOT / "book" / "build.py"
SITE = "https://example.org/book/"
TINY_TWO = dataclasses.replace(TINY, name="tiny-two")
CHAPTER = "---\njupytext: {{}}\n---\n\n# {title}\n\n```{{code-cell}} ipython3\n{code}\n```\n"


def load_build():
    spec = importlib.util.spec_from_file_location("book_build_faults", BUILD_PY)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


class Chapters:
    """Stands in for run_child(jupyter-book ...): runs `during` (a weight file replaced while
    the chapters run, say), then reads every registry file from $SUPERPOSITION_WEIGHTS as a
    chapter's kernel would (it runs in book/), saves the figure of book/figs.md when the
    execution cache is empty (a chapter served from the cache saves none), and copies
    _build/site_extra/ into _build/html, as Sphinx's html_extra_path does."""

    def __init__(self, b) -> None:
        self.b, self.during, self.read, self.env = b, [], {}, None
        self.html_before: list[str] | None = None

    def __call__(self, command, cwd, env=None) -> int:
        b, env = self.b, dict(os.environ if env is None else env)
        self.env = env
        self.html_before = sorted(map(str, b.HTML.rglob("*"))) if b.HTML.exists() else None
        for action in self.during:
            action()
        folder = Path(cwd) / "book" / env[store.ENV_FOLDER]  # an absolute path stays as it is
        for experiment in experiments.REGISTRY.values():
            try:
                self.read[experiment.name] = store.read_bytes(experiment, folder)
            except store.WeightsError as exc:
                print(exc)
                return 1
        cache = b.BUILD / ".jupyter_cache"
        if not cache.exists():
            figures = Path(env[b.FIGURES_ENV])
            figures.mkdir(parents=True, exist_ok=True)
            (figures / "fig-kept.svg").write_text("<svg>new</svg>")
            cache.mkdir()
        shutil.copytree(b.EXTRA, b.HTML, dirs_exist_ok=True)
        (b.HTML / "index.html").write_text("<html></html>")
        return 0


@pytest.fixture
def book(tmp_path, monkeypatch):
    """book/build.py pointed at a fake repository (two chapters, one of which shows the figure
    "fig-kept"), with a registry of one tiny experiment whose weights are in tmp_path/weights.
    Returns (build module, Chapters stand-in, run), where run(*args) runs its main()."""
    root = tmp_path / "repo"
    (root / "src" / "superposition").mkdir(parents=True)
    (root / "src" / "superposition" / "__init__.py").write_text("")
    (root / "requirements.lock").write_text("torch==0\n")
    (root / "_config.yml").write_text("title: fake\n")
    (root / "_toc.yml").write_text(
        "format: jb-book\nroot: book/intro\nchapters:\n  - file: book/figs\n"
    )
    (root / "book").mkdir()
    (root / "book" / "intro.md").write_text(CHAPTER.format(title="Intro", code="print(1)"))
    (root / "book" / "figs.md").write_text(
        CHAPTER.format(title="Figures", code='figures.show(fig, "fig-kept")')
    )
    b = load_build()
    build = root / "_build"
    for name, value in [("ROOT", root), ("BUILD", build), ("HTML", build / "html"),
                        ("EXTRA", build / "site_extra")]:  # fmt: skip
        monkeypatch.setattr(b, name, value)
    monkeypatch.setattr(experiments, "REGISTRY", {TINY.name: TINY})
    monkeypatch.setenv(store.ENV_FOLDER, str(tmp_path / "weights"))
    monkeypatch.setenv(b.FIGURES_ENV, "unset")  # main() sets both: restored after the test
    monkeypatch.setenv("SUPERPOSITION_SITE_URL", SITE)
    monkeypatch.delenv(b.REPO_ENV, raising=False)
    monkeypatch.setattr(sys, "path", list(sys.path))  # weight_files() prepends ROOT/src
    store.save(TINY, fake_result(0))

    def write_site(dest: Path) -> None:
        for experiment in experiments.REGISTRY.values():
            store.load(experiment)  # what the real one reads: the weights just published
        (dest / explorer.FOLDER).mkdir(parents=True, exist_ok=True)
        (dest / explorer.FOLDER / "explorer.js").write_text("// explorer")

    monkeypatch.setattr(explorer, "write_site", write_site)
    exported = []
    monkeypatch.setattr(b, "export_notebooks", lambda *args: exported.append(args))
    chapters = Chapters(b)
    monkeypatch.setattr(b, "run_child", chapters)
    handlers = {sig: signal.getsignal(sig) for sig in b.FORWARDED}

    def run(*args: str) -> int:
        monkeypatch.setattr(sys, "argv", ["build.py", *args])
        environ = dict(os.environ)
        try:
            return b.main()
        finally:
            for sig, handler in handlers.items():  # main() installs its own
                signal.signal(sig, handler)
            os.environ.clear()  # and points $SUPERPOSITION_WEIGHTS at its snapshot
            os.environ.update(environ)

    run.exported = exported
    return b, chapters, run


def replace_weights(folder: Path, seed: int) -> None:
    store.save(TINY, fake_result(seed), where=folder)  # a valid file, other bytes


@pytest.mark.parametrize("moment", ["after-the-key-check", "while-the-chapters-run"])
def test_the_chapters_read_the_bytes_the_site_publishes(book, tmp_path, monkeypatch, moment):
    """A weight file replaced while the book builds: what the chapters read, what the site
    publishes (and the weights chapter lists), the SHA-256 the notebooks check and the code
    key are all of one snapshot, taken once."""
    b, chapters, run = book
    if moment == "while-the-chapters-run":
        chapters.during.append(lambda: replace_weights(tmp_path / "weights", 1))
    else:  # just before the build reads the file, after it decided to build
        read_bytes, calls = store.read_bytes, []

        def replaced_first(experiment, where=None):
            if not calls:
                replace_weights(tmp_path / "weights", 2)
            calls.append(experiment)
            return read_bytes(experiment, where)

        monkeypatch.setattr(store, "read_bytes", replaced_first)
    assert run() == 0
    published = b.EXTRA / "weights" / "tiny.safetensors"
    assert chapters.read["tiny"] == published.read_bytes()
    assert (b.HTML / "weights" / "tiny.safetensors").read_bytes() == published.read_bytes()
    monkeypatch.setenv(store.ENV_FOLDER, str(b.EXTRA / "weights"))
    assert (b.BUILD / ".code-key").read_text() == b.code_key()  # the key of what was published
    assert Path(chapters.env[store.ENV_FOLDER]) == (b.EXTRA / "weights").absolute()
    assert run.exported[-1][1:] == ({"tiny": sha256(published)},)


def test_a_relative_weights_folder_is_taken_from_where_the_build_started(book, tmp_path,
                                                                          monkeypatch):  # fmt: skip
    """`SUPERPOSITION_WEIGHTS=weights make book` means ./weights, not book/weights (where the
    chapters run): they used to fail with "missing, rebuild with make figures"."""
    b, chapters, run = book
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(store.ENV_FOLDER, "weights")
    assert run() == 0
    assert chapters.read["tiny"] == (tmp_path / "weights" / "tiny.safetensors").read_bytes()
    assert Path(chapters.env[store.ENV_FOLDER]).is_absolute()


@pytest.mark.parametrize("force", [False, True], ids=["changed-chapter", "force"])
def test_only_what_this_build_produced_is_published(book, force):
    """Stray files in _build/html and _build/site_extra do not survive a build: html/ is made
    afresh, the weights snapshot too, and figures/ keeps only the SVGs a chapter names (those
    of chapters served from the execution cache are kept when the code key is unchanged)."""
    b, chapters, run = book
    assert run() == 0
    strays = [b.HTML / "weights" / "private.safetensors", b.HTML / "figures" / "fig-gone.svg",
              b.HTML / "notebooks" / "gone.ipynb", b.HTML / "book" / "gone.html",
              b.EXTRA / "weights" / "private.safetensors", b.EXTRA / "figures" / "fig-gone.svg",
              b.EXTRA / "figures" / "notes.txt", b.EXTRA / "old-folder" / "x.html"]  # fmt: skip
    for stray in strays:
        stray.parent.mkdir(parents=True, exist_ok=True)
        stray.write_text("stray")
    (b.EXTRA / "figures" / "fig-kept.svg").write_text("<svg>cached</svg>")
    for kept in (b.BUILD / ".jupyter_cache" / "marker", b.BUILD / ".doctrees" / "marker"):
        kept.parent.mkdir(parents=True, exist_ok=True)
        kept.write_text("kept")
    with (b.ROOT / "book" / "intro.md").open("a") as f:
        f.write("\nA new sentence.\n")  # a new book key, the same code key
    assert run(*["--force"] * force) == 0
    assert chapters.html_before is None  # Jupyter Book started without the old site
    assert [p for p in strays if p.exists()] == []
    assert files(b.EXTRA) == ["explorer", "figures", "weights"]
    assert files(b.EXTRA / "weights") == files(b.HTML / "weights") == ["tiny.safetensors"]
    assert files(b.HTML / "figures") == ["fig-kept.svg"]
    svg = (b.HTML / "figures" / "fig-kept.svg").read_text()
    assert svg == ("<svg>new</svg>" if force else "<svg>cached</svg>")
    assert (b.BUILD / ".doctrees" / "marker").exists()
    assert (b.BUILD / ".jupyter_cache" / "marker").exists() != force  # --force clears it


def test_an_unchanged_book_is_not_built_again_and_the_snapshot_is_no_source(book, monkeypatch):
    """With nothing changed the build is skipped (the weights folder read for its key, not
    copied). $SUPERPOSITION_WEIGHTS naming the snapshot itself is refused: it would be
    removed before it was read."""
    b, chapters, run = book
    assert run() == 0
    chapters.read.clear()
    assert run() == 0
    assert chapters.read == {}  # Jupyter Book did not run
    monkeypatch.setenv(store.ENV_FOLDER, str(b.EXTRA / "weights"))
    assert run("--force") == 1
    assert files(b.EXTRA / "weights") == ["tiny.safetensors"]


def test_a_failed_snapshot_leaves_no_weights_to_publish(tmp_path, monkeypatch):
    """The snapshot is emptied first and written whole or not at all: an unusable file (here
    the second) leaves neither the old snapshot's files nor half of the new one."""
    b = load_build()
    monkeypatch.setattr(experiments, "REGISTRY", {TINY.name: TINY, TINY_TWO.name: TINY_TWO})
    source, dest = tmp_path / "weights", tmp_path / "site_extra" / "weights"
    monkeypatch.setenv(store.ENV_FOLDER, str(source))
    store.save(TINY, fake_result(0))
    store.save(TINY_TWO, fake_result(1))
    digests = b.publish_weights(dest)
    assert files(dest) == ["tiny-two.safetensors", "tiny.safetensors"]
    (dest / "stale.safetensors").write_bytes(b"from an earlier build")
    path = source / "tiny-two.safetensors"
    good = path.read_bytes()
    path.write_bytes(good[:-1])
    with pytest.raises(store.WeightsCorrupt):
        b.publish_weights(dest)
    assert files(dest.parent) == []
    path.write_bytes(good)
    assert b.publish_weights(dest) == digests  # the SHA-256 of each file published
    assert digests == {name: sha256(dest / f"{name}.safetensors") for name in ("tiny", "tiny-two")}
    assert files(dest) == ["tiny-two.safetensors", "tiny.safetensors"]


def test_the_setup_cell_fetches_each_file_by_its_published_sha256(monkeypatch, capsys):
    """The exported notebooks' first cell passes store.fetch the SHA-256 of each file as this
    build published it (the new, required argument), and fetches nothing without a site."""
    b = load_build()
    digests = {"tiny": "ab" * 32, "tiny-two": "cd" * 32}
    calls = []
    signature = inspect.signature(store.fetch)
    assert list(signature.parameters)[:3] == ["experiment", "base_url", "sha256"]

    def fetch(*args, **kwargs):
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        calls.append(dict(bound.arguments))

    monkeypatch.setattr(store, "fetch", fetch)
    exec(b.setup_cell(SITE, digests), {})
    assert [(c["experiment"], c["base_url"], c["sha256"]) for c in calls] == [
        (name, SITE + "weights/", digest) for name, digest in digests.items()
    ]
    calls.clear()
    exec(b.setup_cell(None, digests), {})
    assert calls == []
    assert "weights from" in capsys.readouterr().out


KILLED = """
import importlib.util, sys
spec = importlib.util.spec_from_file_location("b", sys.argv[1])
b = importlib.util.module_from_spec(spec); spec.loader.exec_module(b)
b.run_child(["bash", "-c", sys.argv[2], sys.argv[3]], b.ROOT)
"""
# What Jupyter Book does, in short: a grandchild in the child's process group, and one in a
# session of its own, as Jupyter starts its kernels. Then it writes the pids it is watched by.
CHILD = (
    'setsid sleep 300 & echo $! > "$0.kernel"; sleep 300 & '
    'echo $$ > "$0.tmp" && mv "$0.tmp" "$0"; wait'
)


def processes() -> dict[int, tuple[str, int]]:
    """{pid: (state, process group)} of every process."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # it just ended
            continue
        state, _ppid, pgrp = stat[stat.rindex(")") + 2 :].split()[:3]
        found[int(entry.name)] = (state, int(pgrp))
    return found


def running(group: int, kernel: int) -> list[int]:
    """The processes of the group, and the kernel, that are not zombies (a zombie does
    nothing, and a container's first process may never reap it)."""
    return [pid for pid, (state, pgrp) in processes().items()
            if (pgrp == group or pid == kernel) and state != "Z"]  # fmt: skip


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux's /proc")
def test_a_sigkilled_build_takes_jupyter_book_and_its_kernels_along(tmp_path):
    """SIGKILL reaches no handler, so nothing forwards it: the watchdog sees the build's pipe
    close without "done" and stops the child's process group, and the kernel's (in a session
    of its own), instead of leaving them writing _build for minutes."""
    pidfile = tmp_path / "group"
    command = [sys.executable, "-c", KILLED, str(BUILD_PY), CHILD, str(pidfile)]
    parent = subprocess.Popen(command)
    group = kernel = None
    try:
        deadline = time.monotonic() + 30
        while group is None or len(running(group, kernel)) < 3:  # child, grandchild, kernel
            assert time.monotonic() < deadline and parent.poll() is None
            time.sleep(0.05)
            if group is None and pidfile.exists():
                group = int(pidfile.read_text())
                kernel = int(Path(f"{pidfile}.kernel").read_text())
        assert processes()[kernel][1] != group
        parent.kill()
        assert parent.wait(timeout=10) == -signal.SIGKILL
        deadline = time.monotonic() + 10
        while running(group, kernel):
            assert time.monotonic() < deadline, f"still running: {running(group, kernel)}"
            time.sleep(0.1)
    finally:
        parent.kill()
        for pid in [group, kernel] if group is not None else []:
            with contextlib.suppress(OSError):
                os.killpg(pid, signal.SIGKILL)  # each leads its own group


def test_a_child_that_ends_is_left_alone_and_its_exit_code_returned(tmp_path):
    """On normal completion the watchdog is told "done": it stops nothing and ends with the
    call (run_child waits for it)."""
    b = load_build()
    marker = tmp_path / "survivor"
    script = 'sleep 0.5 && touch "$0" &'  # a grandchild the child leaves behind, on purpose
    assert b.run_child(["bash", "-c", script + " exit 3", str(marker)], tmp_path) == 3
    deadline = time.monotonic() + 10
    while not marker.exists():
        assert time.monotonic() < deadline
        time.sleep(0.05)


@pytest.mark.parametrize("name", ["SUPERPOSITION_SITE_URL", "SUPERPOSITION_REPO_URL"])
def test_an_address_that_is_not_http_stops_the_build_before_anything_runs(name):
    """Before: SUPERPOSITION_REPO_URL went into the introduction as raw Markdown, and the
    site address into every notebook's first cell, whatever they held."""
    env = {**os.environ, name: 'https://x.org/"><script>alert(1)</script>'}
    done = subprocess.run([sys.executable, str(ROOT / "book" / "build.py")], env=env,
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 2 and f"{name} is not an http(s) address" in done.stderr
