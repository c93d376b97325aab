import dataclasses

import pytest
import torch

from superposition.experiments import Experiment
from superposition.train import lr_factor, pick_device, train

SMALL = Experiment(
    name="small", label="S", title="small", n_features=3, n_hidden=6,
    feature_probs=(1.0, 0.5), importance_decay=1.0, seeds=(0, 1),
    steps=300, batch_size=64, lr=1e-2, weight_decay=0.0, eval_batch_size=4096,
)  # fmt: skip


def test_cpu_is_always_available():
    assert pick_device("cpu") == torch.device("cpu")
    assert pick_device(None).type in ("cpu", "cuda", "mps")


@pytest.mark.parametrize("bad", ["tpu", "gpu", "cuda:x"])
def test_unknown_device_is_refused(bad):
    with pytest.raises((ValueError, RuntimeError)):
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
