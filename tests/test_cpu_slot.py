"""Two CPU trainings never share the cores: the second waits for the first, and says so."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from superposition import cpu_slot

WAITER = """
from superposition.cpu_slot import cpu_slot
with cpu_slot("second"):
    print("got the CPU", flush=True)
"""


def test_a_second_run_waits_for_the_first_and_says_who_holds_it(tmp_path, monkeypatch):
    monkeypatch.setenv(cpu_slot.LOCK_ENV, str(tmp_path / "cpu.lock"))
    with cpu_slot.cpu_slot("first"):
        pipes = dict(stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        second = subprocess.Popen([sys.executable, "-c", WAITER], env=os.environ.copy(), **pipes)
        time.sleep(3)
        assert second.poll() is None  # still waiting
    out, err = second.communicate(timeout=30)
    assert second.returncode == 0 and out == "got the CPU\n"
    assert f"waiting for the CPU: pid {os.getpid()} (first) is training on it" in err


def test_the_lock_is_free_again_after_a_run(tmp_path, monkeypatch):
    monkeypatch.setenv(cpu_slot.LOCK_ENV, str(tmp_path / "cpu.lock"))
    with cpu_slot.cpu_slot("first"):
        pass
    done = subprocess.run([sys.executable, "-c", WAITER], capture_output=True, text=True,
                          timeout=30)  # fmt: skip
    assert done.stdout == "got the CPU\n" and "waiting" not in done.stderr


def test_the_lock_is_in_one_place_per_user_whatever_tmpdir_says(tmp_path, monkeypatch):
    """Before: the lock lived in tempfile.gettempdir(), so runs with different TMPDIRs both
    took "the" lock and shared the cores after all."""
    import tempfile

    monkeypatch.delenv(cpu_slot.LOCK_ENV, raising=False)
    places = set()
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        monkeypatch.setenv("TMPDIR", str(tmp_path / folder))
        monkeypatch.setattr(tempfile, "tempdir", None)  # re-read TMPDIR
        places.add(cpu_slot.lock_path())
    assert places == {Path("/tmp") / f"superposition-cpu-{os.getuid()}.lock"}


def test_a_symlink_planted_at_the_lock_is_not_written_through(tmp_path, monkeypatch):
    """Before: O_CREAT without O_NOFOLLOW, then truncate and write: the link's target (here
    a file standing for someone else's) was overwritten with "pid ... (first)"."""
    monkeypatch.delenv(cpu_slot.LOCK_ENV, raising=False)
    monkeypatch.setattr(cpu_slot, "LOCK_FOLDER", tmp_path)
    victim = tmp_path / "victim"
    victim.write_text("precious")
    cpu_slot.lock_path().symlink_to(victim)
    held = cpu_slot.cpu_slot("first")
    with pytest.raises(cpu_slot.LockError, match="is a symbolic link.* was not opened"):
        held.__enter__()
    assert victim.read_text() == "precious"


def test_figures_reports_a_planted_lock_and_trains_nothing(tmp_path):
    lock = tmp_path / "cpu.lock"
    lock.symlink_to(tmp_path / "victim")
    env = {**os.environ, cpu_slot.LOCK_ENV: str(lock), "SUPERPOSITION_WEIGHTS": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-m", "superposition", "figures", "--only", "no-superposition",
         "--device", "cpu", "--quiet"], env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "is a symbolic link" in done.stderr and not (tmp_path / "victim").exists()
    assert not (tmp_path / "no-superposition.safetensors").exists()
