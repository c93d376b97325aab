"""The training step: grouped and row-compacted on the CPU, and still the same loss and
gradients as the dense step on the whole batch."""

import dataclasses
import math

import pytest
import torch

from superposition.data import counter_sample, stream_keys
from superposition.experiments import Experiment
from superposition.model import compact_loss_and_grads, loss_and_grads
from superposition.train import (
    GROUP_SIZE,
    Group,
    SharedStep,
    Step,
    make_step,
    plan,
    row_capacity,
)

CPU = torch.device("cpu")
# A dense p and a sparse p, each with more seeds than one group holds.
SWEEP = Experiment(
    name="step", label="S", title="step", n_features=40, n_hidden=12,
    feature_probs=(1.0, 0.005), importance_decay=0.9, seeds=tuple(range(GROUP_SIZE + 3)),
    steps=10, batch_size=512, lr=1e-3, weight_decay=0.0,
)  # fmt: skip


# Three seeds at two dense p's and a sparse one: a group holds instances of two p's.
MIXED = dataclasses.replace(SWEEP, feature_probs=(1.0, 0.5, 0.005), seeds=(0, 1, 2))


def weights(e: Experiment, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    k, m, n = e.n_instances, e.n_hidden, e.n_features
    shape1, shape2 = (k, m, n), (k, n, m)
    # a bias with both signs, so the closed form for empty rows meets both sides of the ReLU
    return (torch.randn(shape1, generator=g) * 0.3, torch.randn(shape2, generator=g) * 0.3,
            torch.rand(e.n_instances, e.n_features, generator=g) * 0.2 - 0.05)  # fmt: skip


def dense_step(e: Experiment, W1, W2, b, t: int):
    probs = torch.tensor(e.instance_probs)
    keys = stream_keys(e.data_seed, e.instance_seeds, e.instance_probs)
    x = counter_sample(e.batch_size, probs, e.n_features, keys, torch.tensor(t))
    return loss_and_grads(W1, W2, b, x, torch.tensor(e.importance()))


def assert_close(got, want, rtol=2e-5):
    for a, b in zip(got, want, strict=True):
        assert a.shape == b.shape
        assert (a - b).abs().max() <= rtol * b.abs().max(), (a - b).abs().max()


def test_the_plan_groups_instances_of_one_row_count_and_compacts_only_sparse_ones():
    groups = plan(SWEEP, CPU)
    size, seeds = GROUP_SIZE, GROUP_SIZE + 3  # each p: one full group and a group of three
    assert [(g.start, g.stop) for g in groups] == [
        (0, size), (size, seeds), (seeds, seeds + size), (seeds + size, 2 * seeds)]  # fmt: skip
    assert [g.rows for g in groups[:2]] == [512, 512]  # p = 1: every row has a feature
    assert all(g.rows < 512 / 2 for g in groups[2:])  # p = 0.005, n = 40: 18 % of rows filled
    assert plan(SWEEP, torch.device("meta")) == (Group(0, 2 * seeds, 512),)  # a GPU: one group
    # two dense p's with three seeds each: groups across the two p's; then the sparse p alone
    mixed = plan(MIXED, CPU)
    dense = [(s, min(s + GROUP_SIZE, 6)) for s in range(0, 6, GROUP_SIZE)]
    assert [(g.start, g.stop) for g in mixed] == [*dense, (6, 9)]
    assert mixed[0].stop > 3 and mixed[0].rows == 512  # the first group holds both dense p's


@pytest.mark.parametrize("p", [0.001, 0.003, 0.01, 0.03, 0.3])
def test_the_row_capacity_is_eight_standard_deviations_above_the_mean(p):
    n, batch = 100, 1024
    filled = 1 - (1 - p) ** n
    mean, sd = batch * filled, math.sqrt(batch * filled * (1 - filled))
    rows = row_capacity(p, n, batch)
    assert rows == batch or mean + 8 * sd < rows <= mean + 8 * sd + 17
    assert rows % 16 == 0 or rows == batch


@pytest.mark.parametrize("e", [SWEEP, MIXED], ids=["sweep", "mixed"])
def test_the_step_equals_the_dense_step_on_the_whole_batch(e):
    step = make_step(e, CPU)
    W1, W2, b = weights(e)
    for t in (0, 7):
        assert_close(step(W1, W2, b, torch.tensor(t)), dense_step(e, W1, W2, b, t))
    assert step.overflows == 0


def test_a_batch_past_the_capacity_falls_back_to_the_whole_batch():
    tight = [dataclasses.replace(g, rows=16 if g.rows < SWEEP.batch_size else g.rows)
             for g in plan(SWEEP, CPU)]  # fmt: skip
    step = Step(SWEEP, CPU, tight)
    W1, W2, b = weights(SWEEP, seed=1)
    assert_close(step(W1, W2, b, torch.tensor(3)), dense_step(SWEEP, W1, W2, b, 3))
    assert step.overflows == 2  # both sparse groups have more than 16 filled rows


def test_compaction_adds_the_empty_rows_in_closed_form():
    # Rows 0 and 2 hold features; every other row is empty.
    x = torch.zeros(2, 6, 4)
    x[:, 0, 1], x[:, 2, 3], x[1, 2, 0] = 0.5, -0.25, 0.75
    W1, W2 = torch.randn(2, 3, 4), torch.randn(2, 4, 3)
    b = torch.tensor([[0.1, -0.2, 0.3, 0.0]] * 2)
    importance = torch.tensor([1.0, 0.5, 0.25, 2.0])
    *compact, overflow = compact_loss_and_grads(W1, W2, b, x, importance, rows=2)
    assert not overflow
    assert_close(compact, loss_and_grads(W1, W2, b, x, importance), rtol=1e-6)
    *_, overflow = compact_loss_and_grads(W1, W2, b, x, importance, rows=1)
    assert overflow


# Another model on SWEEP's batches: a different width and importance, the same stream.
WIDER = dataclasses.replace(SWEEP, name="wider", n_hidden=20, importance_decay=1.0)


@pytest.mark.parametrize("tight", [False, True], ids=["planned", "overflowing"])
def test_a_shared_step_gives_each_experiment_its_own_steps_numbers_bit_for_bit(tight):
    # as train() allows: every shape here is compiled, none falls back to eager
    with torch._dynamo.config.patch(recompile_limit=1024):
        _shared_equals_alone(tight)


def _shared_equals_alone(tight: bool) -> None:
    groups = plan(SWEEP, CPU)
    if tight:  # both sparse groups overflow and fall back to the whole batch
        groups = [dataclasses.replace(g, rows=16 if g.rows < SWEEP.batch_size else g.rows)
                  for g in groups]  # fmt: skip
    shared = SharedStep([SWEEP, WIDER], CPU, groups)
    alone = [Step(e, CPU, groups) for e in (SWEEP, WIDER)]
    models = [weights(SWEEP, seed=2), weights(WIDER, seed=3)]
    for t in (0, 7):
        together = shared(models, torch.tensor(t))
        for step, model, got in zip(alone, models, together, strict=True):
            want = step(*model, torch.tensor(t))
            assert all(torch.equal(a, b) for a, b in zip(got, want, strict=True))
    assert shared.overflows == (4 if tight else 0)  # two groups, two steps
    assert shared.compiled == all(step.compiled for step in alone)


@pytest.mark.parametrize(
    "change", [{"n_features": 41}, {"batch_size": 256}, {"data_seed": 1},
               {"feature_probs": (1.0, 0.01)}, {"seeds": (0, 1)}, {"steps": 11}],
    ids=lambda change: next(iter(change)),
)  # fmt: skip
def test_experiments_that_draw_different_batches_cannot_share_a_step(change):
    other = dataclasses.replace(SWEEP, name="other", **change)
    with pytest.raises(ValueError, match="do not draw the same batches"):
        SharedStep([SWEEP, other], CPU)
    with pytest.raises(ValueError, match="listed twice"):
        SharedStep([SWEEP, SWEEP], CPU)
