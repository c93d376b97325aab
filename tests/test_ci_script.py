"""`.ci/run` reaches the README's test command and passes on its exit status.

The script runs under `set -euo pipefail`, where a pipe into an early-exiting reader
(`make --version | head -1`) kills the writer with SIGPIPE and fails CI with exit 141 before
any test runs. The stub `make` here writes its version banner slowly, so that such a pipe
fails every time instead of once in about sixty runs."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

STUB_MAKE = """#!/usr/bin/env bash
if [ "$1" = --version ]; then
    echo "GNU Make 4.3 (stub)"
    sleep 0.3
    for i in $(seq 1 50); do echo "banner line $i"; done
    exit 0
fi
echo "stub make $*" >> "$STUB_LOG"
exit "${STUB_STATUS:-0}"
"""


def run_ci_script(tmp_path: Path, status: int) -> subprocess.CompletedProcess:
    repo = tmp_path / "repo"
    (repo / ".ci").mkdir(parents=True)
    shutil.copy(ROOT / ".ci" / "run", repo / ".ci" / "run")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in [("make", STUB_MAKE), ("apt-get", "#!/bin/sh\nexit 0\n")]:
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    env = {
        **os.environ,
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "STUB_LOG": str(tmp_path / "make.log"),
        "STUB_STATUS": str(status),
    }
    return subprocess.run(
        ["bash", str(repo / ".ci" / "run")], env=env, capture_output=True, text=True, timeout=60
    )


def test_ci_script_runs_make_test(tmp_path):
    done = run_ci_script(tmp_path, status=0)
    assert done.returncode == 0, done.stderr
    assert "GNU Make 4.3 (stub)" in done.stdout
    assert "banner line" not in done.stdout
    assert (tmp_path / "make.log").read_text() == "stub make test\n"


@pytest.mark.parametrize("status", [1, 2])
def test_ci_script_fails_when_the_tests_fail(tmp_path, status):
    done = run_ci_script(tmp_path, status=status)
    assert done.returncode == status
