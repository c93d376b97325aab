"""Two CPU trainings never share the cores: the second waits for the first, and says so."""

import os
import subprocess
import sys
import time

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
