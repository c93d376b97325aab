"""The book build fails loudly: a chapter whose cell raises, or a broken reference, fails it.

Each test builds a one-chapter book with the project's own `_config.yml` and the exact
command `make book` uses (book/build.py), in a temporary folder.
"""

import importlib.util
import shutil
import subprocess
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
    (tmp_path / "a.safetensors").write_bytes(b"one")
    before = book_build.code_key()
    assert book_build.code_key() == before
    (tmp_path / "a.safetensors").write_bytes(b"two")
    after = book_build.code_key()
    assert after != before
    assert book_build.book_key(after) != book_build.book_key(before)
