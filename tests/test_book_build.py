"""The book build fails loudly: a chapter whose cell raises, or a broken reference, fails it.

Each test builds a one-chapter book with the project's own `_config.yml` and the exact
command `make book` uses (book/build.py), in a temporary folder.
"""

import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow

spec = importlib.util.spec_from_file_location("book_build", ROOT / "book" / "build.py")
book_build = importlib.util.module_from_spec(spec)
spec.loader.exec_module(book_build)

HEADER = """---
jupytext:
  text_representation: {extension: .md, format_name: myst}
kernelspec: {display_name: Python 3, language: python, name: python3}
---

# A chapter

"""


def build(tmp_path: Path, body: str) -> subprocess.CompletedProcess:
    (tmp_path / "book").mkdir()
    shutil.copy(ROOT / "_config.yml", tmp_path / "_config.yml")
    shutil.copy(ROOT / "book" / "references.bib", tmp_path / "book" / "references.bib")
    shutil.copytree(ROOT / "book" / "_extra", tmp_path / "book" / "_extra")
    shutil.copytree(ROOT / "book" / "_static", tmp_path / "book" / "_static")
    (tmp_path / "_build" / "site_extra").mkdir(parents=True)
    (tmp_path / "_toc.yml").write_text("format: jb-book\nroot: book/intro\n")
    (tmp_path / "book" / "intro.md").write_text(HEADER + body)
    return subprocess.run(
        book_build.build_command(tmp_path), cwd=tmp_path, capture_output=True, text=True
    )


def test_a_good_chapter_builds(tmp_path):
    done = build(tmp_path, "```{code-cell} ipython3\nprint(1 + 1)\n```\n")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert (tmp_path / "_build" / "html" / "book" / "intro.html").exists()


def test_a_cell_that_raises_fails_the_build(tmp_path):
    done = build(tmp_path, "```{code-cell} ipython3\nraise ValueError('chapter broke')\n```\n")
    assert done.returncode != 0
    assert "chapter broke" in done.stdout + done.stderr


def test_a_broken_reference_fails_the_build(tmp_path):
    done = build(tmp_path, "See {ref}`no-such-label`.\n")
    assert done.returncode != 0


def test_the_code_key_follows_src_and_the_weights(tmp_path, monkeypatch):
    """A changed weight file (or library file) changes the key that clears the execution
    cache, so chapters never keep outputs computed from old weights."""
    monkeypatch.setenv("SUPERPOSITION_WEIGHTS", str(tmp_path))
    (tmp_path / "sparsity-sweep.safetensors").write_bytes(b"one")
    before = book_build.code_key()
    assert book_build.code_key() == before
    (tmp_path / "sparsity-sweep.safetensors").write_bytes(b"two")
    after = book_build.code_key()
    assert after != before
    assert book_build.book_key(after, None) != book_build.book_key(before, None)
    (tmp_path / "stray.safetensors").write_bytes(b"not ours")
    assert book_build.code_key() == after  # a file outside the registry is not the book's


def test_the_site_address_is_part_of_the_book_key():
    """The exported notebooks fetch weights from the site: a new address rebuilds them."""
    code = book_build.code_key()
    assert book_build.book_key(code, None) != book_build.book_key(code, "https://example.org/")
    assert book_build.book_key(code, "https://a.org/") != book_build.book_key(
        code, "https://b.org/"
    )


def test_the_repository_address_is_part_of_the_code_key(monkeypatch):
    """The introduction shows "Source: <address>" from a cell, and Jupyter Book's cache keys on
    cell code alone: a new address must change the code key (which clears that cache) and so
    the book key; with none set, the key is that of a build without a source link."""
    monkeypatch.delenv(book_build.REPO_ENV, raising=False)
    without = book_build.code_key()
    monkeypatch.setenv(book_build.REPO_ENV, "")
    assert book_build.code_key() == without  # an empty address is no address
    monkeypatch.setenv(book_build.REPO_ENV, "https://github.com/a/book")
    a = book_build.code_key()
    monkeypatch.setenv(book_build.REPO_ENV, "https://github.com/b/book")
    b = book_build.code_key()
    assert len({without, a, b}) == 3
    assert book_build.book_key(a, None) != book_build.book_key(b, None)


def test_the_pages_workflow_passes_the_repository_address():
    import yaml

    workflow = yaml.safe_load((ROOT / ".github" / "workflows" / "pages.yml").read_text())
    env = workflow["jobs"]["build"]["env"]
    assert env[book_build.REPO_ENV] == "${{ github.server_url }}/${{ github.repository }}"


def test_only_the_registrys_validated_files_are_published(tmp_path, monkeypatch):
    from test_store import TINY, fake_result

    from superposition import experiments, store

    monkeypatch.setattr(experiments, "REGISTRY", {TINY.name: TINY})
    monkeypatch.setenv(store.ENV_FOLDER, str(tmp_path / "weights"))
    store.save(TINY, fake_result())
    (tmp_path / "weights" / "my-private-model.safetensors").write_bytes(b"PRIVATE DATA")
    book_build.publish_weights(tmp_path / "site")
    assert sorted(p.name for p in (tmp_path / "site").iterdir()) == ["tiny.safetensors"]
    path = store.path_for(TINY)
    path.write_bytes(path.read_bytes()[:-1])
    with pytest.raises(store.WeightsCorrupt):
        book_build.publish_weights(tmp_path / "site2")


CHILD = """
import os, sys, time
open(sys.argv[1], "w").write(str(os.getpid()))
time.sleep(120)
"""
PARENT = """
import importlib.util, sys
spec = importlib.util.spec_from_file_location("b", {build!r})
b = importlib.util.module_from_spec(spec); spec.loader.exec_module(b)
sys.exit(b.run_child([sys.executable, "-c", {child!r}, {pidfile!r}], b.ROOT))
"""


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@pytest.mark.parametrize(
    ("sig", "inherited"),
    [(signal.SIGTERM, None), (signal.SIGINT, None), (signal.SIGINT, _ignore_sigint)],
    ids=["SIGTERM", "SIGINT", "SIGINT-started-ignored"],
)
def test_a_signal_to_the_build_stops_jupyter_book_too(tmp_path, sig, inherited):
    """build.py runs Jupyter Book through `run_child`: a signal to build.py reaches the child,
    and build.py exits only after the child has. Also when build.py was started with SIGINT
    ignored, as a background job of a shell script is (the child must not inherit that)."""
    pidfile = tmp_path / "child.pid"
    script = PARENT.format(build=str(ROOT / "book" / "build.py"), child=CHILD,
                           pidfile=str(pidfile))  # fmt: skip
    parent = subprocess.Popen([sys.executable, "-c", script], preexec_fn=inherited)
    deadline = time.monotonic() + 30
    while not (pidfile.exists() and pidfile.read_text()):
        assert time.monotonic() < deadline and parent.poll() is None
        time.sleep(0.05)
    child = int(pidfile.read_text())
    parent.send_signal(sig)
    assert parent.wait(timeout=30) == 128 + sig
    with pytest.raises(ProcessLookupError):
        os.kill(child, 0)  # gone (and reaped by its parent, so not even a zombie)
