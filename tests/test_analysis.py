"""Measures on hand-built weights with known answers."""

import pytest
import torch

from superposition import analysis
from superposition.model import AbsModel


def abs_model(n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The textbook solution: neuron i reads x_i, neuron n+i reads -x_i; output i sums them."""
    W1 = torch.cat([torch.eye(n), -torch.eye(n)])[None]
    W2 = torch.cat([torch.eye(n), torch.eye(n)], dim=1)[None]
    return W1, W2, torch.zeros(1, n)


def test_rescaling_leaves_the_function_unchanged():
    model = AbsModel.initialise(20, 8, seeds=[0, 1], device=torch.device("cpu"))
    W1, W2 = model.W1.detach().double(), model.W2.detach().double()
    b = torch.randn(2, 20, dtype=torch.float64)
    R1, R2 = analysis.rescale(W1, W2)
    assert torch.allclose(R1.abs().amax(-1), torch.ones(2, 8, dtype=torch.float64))
    x = torch.rand(2, 500, 20, dtype=torch.float64) * 2 - 1
    before = AbsModel(W1, W2, b)(x)
    after = AbsModel(R1, R2, b)(x)
    torch.testing.assert_close(after, before, rtol=1e-12, atol=1e-12)


def test_rescaling_keeps_a_zero_neuron():
    W1 = torch.tensor([[[0.0, 0.0], [2.0, -4.0]]])
    W2 = torch.tensor([[[1.0, 1.0], [1.0, 1.0]]])
    R1, R2 = analysis.rescale(W1, W2)
    assert R1[0, 0].tolist() == [0.0, 0.0] and R1[0, 1].tolist() == [0.5, -1.0]
    assert R2[0, :, 1].tolist() == [4.0, 4.0]


def test_effective_features():
    W1 = torch.tensor([[[1.0, 0, 0, 0], [0, -3.0, 0, 0], [1, 1, 0, 0], [1, 1, 1, 1], [0, 0, 0, 0]]])
    eff = analysis.effective_features(W1)[0]
    assert eff.tolist() == pytest.approx([1, 1, 2, 4, 0])
    permuted = W1[:, torch.randperm(5)][:, :, torch.randperm(4)]
    assert sorted(analysis.effective_features(permuted)[0].tolist()) == pytest.approx(
        [0, 1, 1, 2, 4]
    )


def test_textbook_solution_computes_every_feature():
    W1, W2, b = abs_model(4)
    assert analysis.features_computed(W1, W2, b).tolist() == [4]


def test_one_sided_and_ignored_features_are_not_computed():
    W1, W2, b = abs_model(3)
    W2[0, 1, 4] = 0  # output 1 loses its negative side
    W2[0, 2, 2] = W2[0, 2, 5] = 0  # output 2 is ignored ...
    b[0, 2] = 0.5  # ... and outputs the best constant instead
    sides = analysis.computed_sides(W1, W2, b)[0]
    assert sides.tolist() == [[True, True], [False, True], [False, False]]
    assert analysis.features_computed(W1, W2, b).tolist() == [1]


def test_duplicate_neurons_are_counted_once():
    W1, W2, b = abs_model(2)
    assert analysis.duplicate_neurons(W1, W2).tolist() == [0]
    W1 = torch.cat(
        [W1, 2 * W1[:, :1]], dim=1
    )  # a fifth neuron repeating neuron 0 at twice the scale
    W2 = torch.cat([W2, 0.5 * W2[:, :, :1]], dim=2)
    assert analysis.duplicate_neurons(W1, W2).tolist() == [1]


def test_dead_outputs():
    W1, W2, b = abs_model(3)
    assert analysis.dead_outputs(W1, W2, b).tolist() == [[False, False, False]]
    W2[0, 1] = -W2[0, 1].abs()  # output 1 only ever receives negative input ...
    b[0, 1] = -0.01  # ... and a negative bias: nothing switches it on
    assert analysis.dead_outputs(W1, W2, b).tolist() == [[False, True, False]]
    b[0, 1] = 0.2  # a positive bias keeps it alive (it outputs a constant)
    assert analysis.dead_outputs(W1, W2, b).tolist() == [[False, False, False]]


def test_monosemantic_loss_matches_a_simulation():
    importance = 0.8 ** torch.arange(10.0)
    W1, W2, b = abs_model(10)
    W1, W2 = W1[:, [0, 1, 2, 10, 11, 12]], W2[:, :, [0, 1, 2, 10, 11, 12]]  # features 0-2 only
    p = 0.3
    b[0, 3:] = p / 2
    g = torch.Generator().manual_seed(0)
    x = (torch.rand(1, 200_000, 10, generator=g) * 2 - 1) * (
        torch.rand(1, 200_000, 10, generator=g) < p
    )
    from superposition.model import weighted_loss

    simulated = weighted_loss(AbsModel(W1, W2, b)(x), x, importance).item()
    assert simulated == pytest.approx(analysis.monosemantic_loss(importance, p, 3), rel=0.02)


def test_superposition_measure():
    W1, _, _ = abs_model(3)  # every feature has its own two neurons
    assert analysis.superposition(W1).tolist() == [[0.0, 0.0, 0.0]]
    shared = torch.tensor([[[1.0, 1.0, 0.0], [0.0, 0.0, 2.0]]])  # features 0, 1 share neuron 0
    assert analysis.superposition(shared)[0].tolist() == pytest.approx([1.0, 1.0, 0.0])
    half = torch.tensor([[[1.0, 0.5]]])  # one neuron, unequal weights
    assert analysis.superposition(half)[0].tolist() == pytest.approx([0.25, 1.0])
    assert analysis.superposition(torch.zeros(1, 2, 2))[0].tolist() == [0.0, 0.0]
    perm = torch.randperm(3)
    permuted = analysis.superposition(shared[:, :, perm])[0]
    assert permuted.tolist() == pytest.approx(analysis.superposition(shared)[0][perm].tolist())


def test_neuron_order_sorts_by_largest_feature_and_puts_dead_last():
    W1 = torch.tensor([[0.0, 0.0, 1.0], [0.0, 0.0, 0.0], [1.0, 0.2, 0.0], [-1.0, 0.0, 0.0]])
    W2 = torch.ones(3, 4)
    assert analysis.neuron_order(W1, W2) == [2, 3, 0, 1]
