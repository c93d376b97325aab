"""A stop (Ctrl-C or SIGTERM) at any phase of `figures` ends it with 130 or 143 and leaves
the old weight file, or none, and no temporary file.

Each case sends the signal to this process from inside one phase of a real (tiny) run, so
the command line's own handlers meet it where a user's would. End-to-end kills from outside,
during the steps, are in test_faults.py.
"""

import contextlib
import dataclasses
import os
import signal

import pytest

from superposition import __main__ as cli
from superposition import compiling, cpu_slot, experiments, store
from superposition import train as train_module
from superposition.experiments import Experiment

TINY = Experiment(
    name="tiny-stop", label="T", title="tiny", n_features=3, n_hidden=6,
    feature_probs=(1.0,), importance_decay=1.0, seeds=(0, 1),
    steps=40, batch_size=32, lr=1e-2, weight_decay=0.0, eval_batch_size=1024,
    recycle_at=(20,),
)  # fmt: skip


def _stop(target: object, name: str, sig: signal.Signals | None, when, after: bool = False):
    """`target.name`, counting its calls, that signals this process (before it runs, or as
    soon as it has returned) on the first call for which `when(call number)` holds."""
    real, calls, fired = getattr(target, name), [], []

    def stopping(*args, **kwargs):
        calls.append(None)
        fire = not fired and when(len(calls))
        if fire:
            fired.append(len(calls))
        if fire and sig is not None and not after:
            os.kill(os.getpid(), sig)
        result = real(*args, **kwargs)
        if fire and sig is not None and after:
            os.kill(os.getpid(), sig)
        return result

    stopping.fired = fired  # the call that signalled (or would have, with sig None)
    return stopping


_saving: list[bool] = []  # true while store.save runs (set by the "saving" phase)


def _first(call: int) -> bool:
    return call == 1


# phase: (object, attribute, on which call, after it returned): where the signal arrives
PHASES = {
    "start-up": (store, "prepare", _first, False),
    # a temporary file of the write probe exists; its name is not yet stored
    "start-up-probe": (store, "_temporary", _first, True),
    "compilation": (compiling.CompiledOrEager, "__call__", _first, False),
    "steps": (train_module.Step, "__call__", lambda call: call == 10, False),
    "recycling": (train_module, "recycle", _first, False),
    "evaluation": (train_module, "evaluate", _first, False),
    # the weight file's temporary exists; its name is not yet stored
    "saving": (store, "_temporary", lambda call: bool(_saving), True),
}


def _patch_phase(monkeypatch, phase: str, sig: signal.Signals | None):
    target, name, when, after = PHASES[phase]
    wrapper = _stop(target, name, sig, when, after)
    monkeypatch.setattr(target, name, wrapper)
    real_save = store.save

    def save(*args, **kwargs):
        _saving.append(True)
        try:
            return real_save(*args, **kwargs)
        finally:
            _saving.clear()

    monkeypatch.setattr(store, "save", save)
    return wrapper


@pytest.fixture
def stop_registry(monkeypatch, tmp_path):
    monkeypatch.setattr(experiments, "REGISTRY", {TINY.name: TINY})
    monkeypatch.setenv(store.ENV_FOLDER, str(tmp_path))
    monkeypatch.setenv(cpu_slot.LOCK_ENV, str(tmp_path / "cpu.lock"))
    monkeypatch.setattr(cli, "_stopped_by", [])
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    # as from a terminal, even when these tests run as a background job (SIGINT ignored)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    yield tmp_path
    for s, handler in handlers.items():
        signal.signal(s, handler)


def _figures(*extra: str) -> int:
    try:
        return cli.main(["figures", "--quiet", *extra])
    except SystemExit as exc:  # a SIGTERM unwinds as SystemExit(143)
        return exc.code


@pytest.mark.parametrize("retrain", [False, True], ids=["first-run", "retrain"])
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
@pytest.mark.parametrize("phase", list(PHASES))
def test_a_stop_in_any_phase_ends_the_run_and_keeps_the_old_file(
    stop_registry, monkeypatch, capsys, phase, sig, retrain
):
    path = store.path_for(TINY)
    if retrain:
        assert _figures() == 0
        monkeypatch.setattr(cli, "_stopped_by", [])
    before = path.read_bytes() if retrain else None
    _patch_phase(monkeypatch, phase, sig)

    assert _figures(*(["--force"] if retrain else [])) == 128 + sig
    assert (path.read_bytes() if path.exists() else None) == before
    assert sorted(p.name for p in stop_registry.iterdir()) == sorted(
        [path.name] * retrain + ["cpu.lock"] * (not phase.startswith("start-up") or retrain)
    )
    assert store.leftover_temporaries() == []
    capsys.readouterr()


def test_a_swallowed_ctrl_c_never_saves(stop_registry, monkeypatch):
    """A KeyboardInterrupt that something inside training swallows is remembered: the next
    step ends the run with 130, and nothing is saved."""
    real = train_module.train_together

    def swallowing(trained_together, device, progress, stop_check, starts=None):
        with contextlib.suppress(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
        return real(trained_together, device, progress, stop_check, starts)

    monkeypatch.setattr(train_module, "train_together", swallowing)
    assert _figures() == 130
    assert not store.path_for(TINY).exists()


def test_a_background_run_keeps_ignoring_ctrl_c(stop_registry, monkeypatch):
    """Started with SIGINT ignored (a shell's background job), `figures` leaves it ignored."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _patch_phase(monkeypatch, "evaluation", signal.SIGINT)
    assert _figures() == 0
    assert store.path_for(TINY).exists()
    assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN


@pytest.mark.parametrize("phase", list(PHASES))
def test_every_phase_happens_in_the_tiny_run(stop_registry, monkeypatch, phase):
    """The cases above mean something only if the run reaches each phase's signal."""
    wrapper = _patch_phase(monkeypatch, phase, None)
    assert _figures() == 0
    assert wrapper.fired


# A second tiny experiment on TINY's batches: `figures` trains the two in one shared run.
WIDER = dataclasses.replace(TINY, name="tiny-stop-wider", n_hidden=9, importance_decay=0.5)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_stop_in_a_shared_run_keeps_every_old_file(stop_registry, monkeypatch, sig):
    monkeypatch.setattr(experiments, "REGISTRY", {e.name: e for e in (TINY, WIDER)})
    assert _figures() == 0
    monkeypatch.setattr(cli, "_stopped_by", [])
    before = [store.path_for(e).read_bytes() for e in (TINY, WIDER)]
    stopping = _stop(train_module.SharedStep, "__call__", sig, lambda call: call == 10)
    monkeypatch.setattr(train_module.SharedStep, "__call__", stopping)
    assert _figures("--force") == 128 + sig
    assert stopping.fired == [10]
    assert [store.path_for(e).read_bytes() for e in (TINY, WIDER)] == before
    assert store.leftover_temporaries() == []


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_stop_between_the_saves_of_a_shared_run_keeps_what_was_saved(
    stop_registry, monkeypatch, sig
):
    monkeypatch.setattr(experiments, "REGISTRY", {e.name: e for e in (TINY, WIDER)})
    monkeypatch.setattr(store, "save", _stop(store, "save", sig, _first, after=True))
    assert _figures() == 128 + sig
    assert store.status(TINY)[0] == "fresh"  # saved whole before the stop
    assert not store.path_for(WIDER).exists()
    assert store.leftover_temporaries() == []
