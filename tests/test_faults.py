"""Faults end to end: a killed training run loses nothing, a retrained model is bitwise the
same, and a chapter refuses a corrupt weight file instead of drawing it. (A stop in each
phase of a run, Ctrl-C included, is in test_stops.py.)

Uses experiment A (about ten seconds to train) in a temporary weights folder.
"""

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from superposition import store
from superposition.paths import ENV_FOLDER

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]
NAME = "no-superposition"


def _interruptible() -> None:
    # as from a terminal, even when these tests run as a background job (SIGINT ignored)
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start_training(folder: Path, *extra: str) -> subprocess.Popen:
    env = {**os.environ, ENV_FOLDER: str(folder)}
    command = [sys.executable, "-m", "superposition", "figures", "--only", NAME, *extra]
    return subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        preexec_fn=_interruptible,
    )  # fmt: skip


def kill_while_training(folder: Path, sig: signal.Signals, *extra: str) -> int:
    """Start training, wait until the progress bar reports a loss (the loop is running),
    then send `sig`. Returns the exit code."""
    process = start_training(folder, *extra)
    seen, deadline = b"", time.monotonic() + 120
    while b"mean_loss" not in seen:  # tqdm ends its updates with \r, so read raw chunks
        assert time.monotonic() < deadline and process.poll() is None, seen.decode()
        seen += os.read(process.stdout.fileno(), 4096)
    process.send_signal(sig)
    process.communicate(timeout=60)
    return process.returncode


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_killed_first_run_leaves_no_file(tmp_path, sig):
    assert kill_while_training(tmp_path, sig) == 128 + sig
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_a_killed_retrain_keeps_the_old_file_and_the_next_run_completes(tmp_path, trained, sig):
    original = trained(NAME).path
    shutil.copy(original, tmp_path / original.name)
    before = (tmp_path / original.name).read_bytes()
    code = kill_while_training(tmp_path, sig, "--force")
    assert code in (128 + sig, -sig)
    assert (tmp_path / original.name).read_bytes() == before
    assert not [p for p in tmp_path.iterdir() if p.suffix == ".tmp" and sig != signal.SIGKILL]
    done = start_training(tmp_path, "--force", "--quiet")
    out, _ = done.communicate(timeout=300)
    assert done.returncode == 0, out
    env = {**os.environ, ENV_FOLDER: str(tmp_path)}
    check = subprocess.run([sys.executable, "-m", "superposition", "check"], env=env,
                           capture_output=True, text=True)  # fmt: skip
    assert f"ok       {NAME}" in check.stdout


def test_retraining_gives_bitwise_identical_weights(tmp_path, trained):
    cached = trained(NAME)
    if cached.device != "cpu":
        pytest.skip("the cached weights were trained on a GPU")
    done = start_training(tmp_path, "--quiet")
    out, _ = done.communicate(timeout=300)
    assert done.returncode == 0, out
    again = store.load(cached.experiment, tmp_path)
    for name in ("W1", "W2", "b"):
        assert torch.equal(getattr(again, name), getattr(cached, name))
    assert again.tensor_sha256 == cached.tensor_sha256


def test_a_chapter_refuses_a_corrupt_weight_file(tmp_path, trained):
    import jupytext
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    original = trained(NAME).path
    data = bytearray(original.read_bytes())
    data[-5] ^= 0x01  # one flipped bit in the tensor bytes
    (tmp_path / original.name).write_bytes(bytes(data))
    notebook = jupytext.read(ROOT / "book" / "no_superposition.md")
    os.environ[ENV_FOLDER] = str(tmp_path)  # the kernel inherits the environment
    try:
        client = NotebookClient(notebook, timeout=120, kernel_name="python3",
                                resources={"metadata": {"path": str(ROOT / "book")}})  # fmt: skip
        with pytest.raises(CellExecutionError) as error:
            client.execute()
    finally:
        del os.environ[ENV_FOLDER]
    message = str(error.value)
    assert "WeightsCorrupt" in message and "make figures" in message
    images = [o for cell in notebook.cells for o in cell.get("outputs", [])
              if "image/png" in o.get("data", {})]  # fmt: skip
    assert images == []  # nothing was drawn from the corrupt file
