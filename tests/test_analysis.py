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
    assert sorted(analysis.effective_features(permuted)[0].tolist()) == pytest.approx([0, 1, 1, 2, 4])


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
