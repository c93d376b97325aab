"""Environment values are untrusted input too: each is validated, and one the code does not
understand is an error, not a silent default. Each test failed on the code before it."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from superposition import compiling

ROOT = Path(__file__).resolve().parents[1]


def _serve_command(*make_args, **env):
    done = subprocess.run(["make", "-n", "serve", *make_args], cwd=ROOT, capture_output=True,
                          text=True, env={**os.environ, **env}, timeout=60)  # fmt: skip
    (line,) = [ln for ln in done.stdout.splitlines() if "http.server" in ln]
    return line


def test_make_serve_listens_on_this_machine_whatever_host_the_environment_holds():
    """Before: `HOST ?=` took HOST from the environment, so HOST=0.0.0.0 (or a container's
    host name) opened the site to the network."""
    assert "--bind 127.0.0.1 " in _serve_command(HOST="0.0.0.0", PORT="80")
    assert _serve_command(HOST="0.0.0.0").endswith(" 8000")
    assert "--bind 0.0.0.0 " in _serve_command("HOST=0.0.0.0")  # asked for, on the command line


@pytest.mark.parametrize(
    "value,on",
    [("0", False), ("false", False), ("OFF", False), (" no ", False),
     ("1", True), ("", True), ("true", True), ("Yes", True)],
)  # fmt: skip
def test_compiling_is_turned_off_by_any_usual_off_word(monkeypatch, value, on):
    """Before: only exactly "0" turned it off; "false" or "off" compiled."""
    monkeypatch.setenv(compiling.COMPILE_ENV, value)
    assert compiling.compile_wanted(torch.device("cpu")) is on


def test_an_unknown_compile_setting_is_an_error(monkeypatch):
    monkeypatch.setenv(compiling.COMPILE_ENV, "maybe\x1b[2J")
    with pytest.raises(ValueError, match=r"'maybe\\\\x1b\[2J' is neither on \(1\) nor off"):
        compiling.compile_setting()
    env = {**os.environ, compiling.COMPILE_ENV: "maybe"}
    done = subprocess.run([sys.executable, "-m", "superposition", "figures", "--only",
                           "no-superposition"], env=env, capture_output=True, text=True,
                          timeout=120)  # fmt: skip
    assert done.returncode == 2 and "neither on (1) nor off (0)" in done.stderr
    assert "Traceback" not in done.stderr
