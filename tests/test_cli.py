"""The command line: argument errors exit 2 with usage; figures skips what is fresh."""

import contextlib
import subprocess
import sys

import pytest

from superposition import __main__ as cli
from superposition import cpu_slot, experiments, store
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
    monkeypatch.setenv(cpu_slot.LOCK_ENV, str(tmp_path / "cpu.lock"))  # not a real run's lock
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


@pytest.mark.parametrize("device", ["cpu:-1", "cpu:abc", "gpu", "cuda:x", ""])
def test_every_bad_device_exits_2_with_usage(device, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["figures", "--device", device])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "usage: python -m superposition" in err and "--device" in err


@pytest.fixture
def counted_training(tiny_registry, monkeypatch):
    """`figures` with its trainer counted (and really run)."""
    from superposition import train as train_module

    calls = []
    real = train_module.train_together

    def counting(trained_together, *args):
        calls.extend(experiment.name for experiment in trained_together)
        return real(trained_together, *args)

    monkeypatch.setattr(train_module, "train_together", counting)
    return calls


def test_a_repeated_only_trains_once(counted_training, capsys):
    argv = ["figures", "--quiet", "--force", "--only", TINY.name, "--only", TINY.name]
    assert cli.main(argv) == 0
    assert counted_training == [TINY.name]
    assert capsys.readouterr().out.count("training 2 instances") == 1


def test_an_unwritable_folder_is_found_before_training(counted_training, monkeypatch, capsys):
    def read_only(src, dst):
        raise OSError(30, "Read-only file system")

    monkeypatch.setattr(store.os, "replace", read_only)
    assert cli.main(["figures", "--quiet"]) == 1
    assert counted_training == []
    err = capsys.readouterr().err
    assert "Read-only file system" in err and "Nothing was trained" in err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    "options,message",
    [("ro,size=4m", "Read-only file system"), ("size=64k", "MiB free in the weights folder")],
    ids=["read-only", "full"],
)
def test_a_real_unwritable_folder_is_found_before_training(
    counted_training, tiny_registry, monkeypatch, capsys, options, message
):
    """The real thing, a tmpfs mounted read-only or too small, where this machine lets us
    mount (CI runs as root)."""
    mount = tiny_registry / "mount"
    mount.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(mount)],
                          capture_output=True)  # fmt: skip
    if made.returncode != 0:
        pytest.skip(f"cannot mount here: {made.stderr.decode().strip()}")
    try:
        monkeypatch.setenv(store.ENV_FOLDER, str(mount))
        assert cli.main(["figures", "--quiet"]) == 1
    finally:
        subprocess.run(["umount", str(mount)], check=True)
    assert counted_training == []
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    "damage",
    ["bad-loss", "dict-loss", "nan-loss", "other-experiment", "empty-folder"],
)
def test_force_repairs_a_malformed_file_and_check_reports_it_cleanly(tiny_registry, damage, capsys):
    assert cli.main(["figures", "--quiet"]) == 0
    path = store.path_for(TINY)
    if damage == "empty-folder":
        path.unlink()
        path.mkdir()
    else:
        from test_store import _rewrite

        change = {
            "bad-loss": {"final_loss": '["x", "x"]'},
            "dict-loss": {"final_loss": "[{}, {}]"},
            "nan-loss": {"final_loss": "[NaN, 0.1]"},
            "other-experiment": {"experiment": "sparsity-sweep"},
        }[damage]
        _rewrite(path, **change)
    capsys.readouterr()
    assert cli.main(["check"]) == 1
    assert cli.main(["list"]) == 0
    assert "corrupt" in capsys.readouterr().out
    assert cli.main(["figures", "--quiet", "--force"]) == 0
    assert cli.main(["check"]) == 0
    assert store.load(TINY).final_loss[0] > 0


def test_a_weights_folder_that_is_a_file_is_reported_by_every_command(tiny_registry, monkeypatch,
                                                                      capsys):  # fmt: skip
    (tiny_registry / "file").write_text("x")
    monkeypatch.setenv(store.ENV_FOLDER, str(tiny_registry / "file"))
    assert cli.main(["check"]) == 1
    assert cli.main(["list"]) == 0
    assert "weights folder is not a folder" in capsys.readouterr().out
    assert cli.main(["figures", "--quiet", "--force"]) == 1
    assert "Nothing was trained" in capsys.readouterr().err


@pytest.mark.parametrize("trainer_checks", [True, False], ids=["stops-at-next-step", "after"])
def test_a_swallowed_stop_never_saves(tiny_registry, monkeypatch, trainer_checks):
    """If the SystemExit of a SIGTERM is swallowed inside training (by a library's
    catch-all or a finaliser), the next step ends the run, and nothing is saved after it."""
    from superposition import train as train_module

    real = train_module.train_together

    def swallowing(trained_together, device, progress, stop_check, starts=None):
        with contextlib.suppress(SystemExit):
            cli._on_signal(15, None)
        return real(
            trained_together, device, progress, stop_check if trainer_checks else None, starts
        )

    monkeypatch.setattr(train_module, "train_together", swallowing)
    monkeypatch.setattr(cli, "_stopped_by", [])
    with pytest.raises(SystemExit) if trainer_checks else contextlib.nullcontext() as stopped:
        code = cli.main(["figures", "--quiet"])
    assert (stopped.value.code if trainer_checks else code) == 143
    assert not store.path_for(TINY).exists()


def test_cpu_training_holds_the_cpu_lock(tiny_registry, monkeypatch):
    import fcntl
    import os

    from superposition import train as train_module

    real, held = train_module.train_together, []

    def probing(trained_together, *args):
        fd = os.open(cpu_slot.lock_path(), os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            held.append(False)
        except BlockingIOError:
            held.append(True)
        finally:
            os.close(fd)
        return real(trained_together, *args)

    monkeypatch.setattr(train_module, "train_together", probing)
    assert cli.main(["figures", "--quiet", "--device", "cpu"]) == 0
    assert held == [True]


def test_experiments_that_draw_the_same_batches_train_in_one_run(
    tiny_registry, monkeypatch, capsys
):
    import dataclasses

    from superposition import train as train_module

    wider = dataclasses.replace(TINY, name="tiny-wider", n_hidden=9, importance_decay=0.5)
    other = dataclasses.replace(TINY, name="tiny-other", data_seed=1)
    registry = {e.name: e for e in (TINY, other, wider)}
    monkeypatch.setattr(experiments, "REGISTRY", registry)
    real, runs = train_module.train_together, []

    def recording(trained_together, *args):
        runs.append([experiment.name for experiment in trained_together])
        return real(trained_together, *args)

    monkeypatch.setattr(train_module, "train_together", recording)
    assert cli.main(["figures", "--quiet"]) == 0
    assert runs == [[TINY.name, wider.name], [other.name]]
    assert all(store.status(e)[0] == "fresh" for e in registry.values())
    out = capsys.readouterr().out
    assert f"{TINY.name}: training 2 instances on cpu, together with 1 more" in out
    assert f"{TINY.name}, {wider.name}: 50 steps in" in out
