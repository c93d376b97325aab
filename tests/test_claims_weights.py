"""Claims of the weights and reproducing chapters (book/weights.md, book/reproducing.md), on
the fields of `findings.weights()` they tabulate: the files are what the tables say, the
metadata holds what the prose lists, and the loaders they print need none of this project's
code (they run with `superposition` impossible to import)."""

import ast
import hashlib
import os
import re
import subprocess
import sys
from pathlib import Path

import jupytext
import pytest

from superposition import experiments, findings, store

pytestmark = pytest.mark.claims
BOOK = Path(__file__).resolve().parents[1] / "book"
BLOCKED = "import sys\nsys.modules['superposition'] = None  # any import of it now fails\n"


@pytest.fixture(scope="module")
def f(every_model):
    return findings.weights()


def test_one_file_per_experiment_as_tabulated(f):
    assert [c.name for c in f.files] == list(experiments.REGISTRY)
    for c in f.files:
        data = store.path_for(experiments.get(c.name)).read_bytes()
        assert (c.size_bytes, c.file_sha256) == (len(data), hashlib.sha256(data).hexdigest())
        w = store.load(c.name)
        assert c.tensor_sha256 == w.tensor_sha256
        assert dict(c.shapes) == {t: tuple(getattr(w, t).shape) for t in store.TENSORS}
        assert c.instances == len(c.feature_probs) * c.seeds_per_setting


def test_the_weights_page_names_every_metadata_key(f):
    prose = BOOK.joinpath("weights.md").read_text().split("The metadata also holds")[1]
    named = set(re.findall(r"`(\w+)`", prose.split("With this project installed")[0]))
    for c in f.files:
        assert set(c.metadata_keys) <= named | {"feature_probs"}, set(c.metadata_keys) - named


def shown_code(chapter: str) -> list[str]:
    """The code cells a reader sees in full on the page (no remove or hide tag)."""
    cells = jupytext.read(BOOK / chapter).cells
    return [
        c.source for c in cells
        if c.cell_type == "code" and not any(
            t.startswith(("remove", "hide")) for t in c.metadata.get("tags", [])
        )
    ]  # fmt: skip


def imports(source: str) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            found.add((node.module or "").split(".")[0])
    return found


@pytest.mark.parametrize("chapter", ["weights.md", "reproducing.md"])
def test_the_printed_loader_needs_none_of_this_projects_code(f, chapter):
    (snippet,) = shown_code(chapter)
    assert "superposition" not in imports(snippet)
    assert imports(snippet) <= {"json", "os", "pathlib", "numpy", "safetensors"}
    # Run it where its chapter runs it: next to the file (weights) or in book/ (reproducing).
    where = store.folder() if chapter == "weights.md" else BOOK
    env = {**os.environ, store.ENV_FOLDER: str(store.folder())}
    done = subprocess.run([sys.executable, "-c", BLOCKED + snippet], cwd=where, env=env,
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip()
