import dataclasses

import pytest
import torch

from superposition.devices import pick_device
from superposition.experiments import Experiment
from superposition.train import PHASES, lr_factor, train, train_together

SMALL = Experiment(
    name="small", label="S", title="small", n_features=3, n_hidden=6,
    feature_probs=(1.0, 0.5), importance_decay=1.0, seeds=(0, 1),
    steps=300, batch_size=64, lr=1e-2, weight_decay=0.0, eval_batch_size=4096,
)  # fmt: skip


def test_cpu_is_always_available():
    assert pick_device("cpu") == torch.device("cpu")
    assert pick_device(None).type in ("cpu", "cuda", "mps")


@pytest.mark.parametrize("bad", ["tpu", "gpu", "cuda:x", "cpu:-1", "cpu:abc", "", "cuda:"])
def test_unknown_device_is_refused(bad):
    with pytest.raises(ValueError, match="unknown device"):
        pick_device(bad)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_missing_cuda_is_a_clear_error():
    with pytest.raises(ValueError, match="not available"):
        pick_device("cuda")


def test_schedules():
    warm = dataclasses.replace(SMALL, warmup_steps=10, lr_schedule="cosine", steps=110)
    assert lr_factor(0, warm) == pytest.approx(0.1)
    assert lr_factor(9, warm) == pytest.approx(1.0)
    assert lr_factor(10, warm) == pytest.approx(1.0)
    assert lr_factor(60, warm) == pytest.approx(0.5)
    assert lr_factor(109, warm) < 0.01
    assert all(lr_factor(s, SMALL) == 1.0 for s in range(0, 300, 37))


def test_training_is_bitwise_reproducible_on_the_cpu():
    a = train(SMALL, device="cpu", progress=False)
    b = train(SMALL, device="cpu", progress=False)
    for name in ("W1", "W2", "b"):
        assert torch.equal(getattr(a, name), getattr(b, name))
    assert a.final_loss == b.final_loss
    other = train(dataclasses.replace(SMALL, data_seed=1), device="cpu", progress=False)
    assert not torch.equal(a.W1, other.W1)


def test_training_lowers_the_loss_of_every_instance():
    untrained = train(dataclasses.replace(SMALL, steps=1), device="cpu", progress=False)
    trained = train(SMALL, device="cpu", progress=False)
    assert trained.W1.shape == (4, 6, 3) and trained.b.shape == (4, 3)
    for before, after in zip(untrained.final_loss, trained.final_loss, strict=True):
        assert after < 0.5 * before


def test_the_result_records_compiled_or_eager(monkeypatch):
    assert train(SMALL, device="cpu", progress=False).mode == "compiled"
    monkeypatch.setenv("SUPERPOSITION_COMPILE", "0")
    assert train(SMALL, device="cpu", progress=False).mode == "eager"


def test_a_stop_check_ends_training():
    calls = []

    def stop():
        calls.append(1)
        if len(calls) == 5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(SMALL, device="cpu", progress=False, stop_check=stop)
    assert len(calls) == 5


def test_subnormals_are_flushed_while_training_and_only_then():
    tiny = torch.tensor([1e-40])  # subnormal in float32
    seen = []

    def probe():
        if not seen:
            seen.append((tiny * 1.0).item())

    train(dataclasses.replace(SMALL, steps=2), device="cpu", progress=False, stop_check=probe)
    assert seen == [0.0]
    assert (tiny * 1.0).item() > 0  # restored afterwards


def test_the_result_says_where_the_time_went():
    result = train(SMALL, device="cpu", progress=False)
    assert set(result.phases) == set(PHASES)
    assert all(seconds >= 0 for seconds in result.phases.values())
    assert result.phases["steps"] > 0 and result.phases["evaluation"] > 0
    assert sum(result.phases.values()) == pytest.approx(result.seconds, rel=0.05, abs=0.05)


def test_experiments_trained_together_end_bit_for_bit_as_when_trained_alone():
    # sparse enough that rows are compacted, with recycling, two widths and importances
    base = dataclasses.replace(
        SMALL, n_features=12, feature_probs=(1.0, 0.02), steps=120, recycle_at=(40, 80)
    )
    wider = dataclasses.replace(base, name="wider", n_hidden=9, importance_decay=0.8, lr=3e-3)
    together = train_together([base, wider], device="cpu", progress=False)
    for e, got in zip((base, wider), together, strict=True):
        alone = train(e, device="cpu", progress=False)
        for name in ("W1", "W2", "b"):
            assert torch.equal(getattr(got, name), getattr(alone, name))
        assert got.final_loss == alone.final_loss and got.mode == alone.mode
    assert together[0].seconds == together[1].seconds  # the time of the whole run
    with pytest.raises(ValueError, match="do not draw the same batches"):
        train_together([base, dataclasses.replace(SMALL, name="other")], device="cpu")
