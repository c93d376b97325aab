"""The command line: argument errors exit 2 with usage; figures skips what is fresh."""

import subprocess
import sys

import pytest

from superposition import __main__ as cli
from superposition import experiments, store
from superposition.experiments import Experiment

TINY = Experiment(
    name="tiny-cli", label="T", title="tiny", n_features=3, n_hidden=6,
    feature_probs=(1.0,), importance_decay=1.0, seeds=(0, 1),
    steps=50, batch_size=32, lr=1e-2, weight_decay=0.0, eval_batch_size=1024,
)  # fmt: skip


@pytest.fixture
def tiny_registry(monkeypatch, tmp_path):
    monkeypatch.setattr(experiments, "REGISTRY", {TINY.name: TINY})
    monkeypatch.setenv(store.ENV_FOLDER, str(tmp_path))
    return tmp_path


@pytest.mark.parametrize(
    "argv",
    [[], ["train"], ["figures", "--only", "nope"], ["figures", "--device", "tpu"],
     ["figures", "--frobnicate"], ["list", "extra"]],
)  # fmt: skip
def test_bad_arguments_exit_2_with_usage(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(argv)
    assert exit_info.value.code == 2
    assert "usage: python -m superposition" in capsys.readouterr().err


def test_figures_trains_then_skips_then_forces(tiny_registry, capsys):
    assert cli.main(["figures", "--quiet"]) == 0
    assert "training 2 instances" in capsys.readouterr().out
    assert store.load(TINY).W1.shape == (2, 6, 3)
    assert cli.main(["figures", "--quiet"]) == 0
    assert "fresh, skipped" in capsys.readouterr().out
    assert cli.main(["figures", "--quiet", "--force", "--only", TINY.name]) == 0
    assert "forced" in capsys.readouterr().out


def test_check_and_list_report_problems(tiny_registry, capsys):
    assert cli.main(["check"]) == 1
    assert "missing" in capsys.readouterr().out
    cli.main(["figures", "--quiet"])
    assert cli.main(["check"]) == 0
    assert cli.main(["list"]) == 0
    out = capsys.readouterr().out
    assert "fresh" in out and "p=1: best" in out
    path = store.path_for(TINY)
    path.write_bytes(path.read_bytes()[:-10])
    assert cli.main(["check"]) == 1
    assert "corrupt" in capsys.readouterr().out
    cli.main(["figures", "--quiet"])  # a corrupt file is rebuilt, not used
    assert cli.main(["check"]) == 0


def test_module_entry_point_runs():
    done = subprocess.run(
        [sys.executable, "-m", "superposition", "--help"], capture_output=True, text=True
    )
    assert done.returncode == 0 and "figures" in done.stdout
