"""The two model variants of the scaling chapter: a linear readout and mixed labels. Their
hand-written gradients against autograd on the plain formulas, their labels and readout on
hand-worked inputs, the mixing matrix's shape, the monosemantic solution of mixed labels, and
that a run never trains two kinds of model in one step."""

import dataclasses

import pytest
import torch

from superposition import experiments, starts
from superposition.__main__ import _runs
from superposition.data import mixing_matrix
from superposition.model import (
    compact_loss_and_grads,
    loss_and_grads,
    outputs,
    targets,
    weighted_loss,
)
from superposition.train import _check_shared


def _autograd(W1, W2, b, x, importance, readout, M):
    """The loss written out plainly, differentiated by autograd."""
    params = [t.clone().requires_grad_() for t in (W1, W2, b)]
    h = torch.relu(x @ params[0].transpose(1, 2))
    out = h @ params[1].transpose(1, 2) + params[2][:, None, :]
    y = torch.relu(out) if readout == "relu" else out
    label = x.abs() + (0 if M is None else x @ M.T)
    loss = (importance * (y - label) ** 2).sum(-1).mean(1)
    return (loss.detach(), *torch.autograd.grad(loss.sum(), params))


@pytest.mark.parametrize("readout", ["relu", "linear"])
@pytest.mark.parametrize("sigma", [0.0, 0.05])
def test_the_hand_written_gradients_of_every_variant_match_autograd(readout, sigma):
    g = torch.Generator().manual_seed(0)
    k, m, n, batch = 3, 5, 12, 64
    W1 = torch.randn(k, m, n, generator=g, dtype=torch.float64)
    W2 = torch.randn(k, n, m, generator=g, dtype=torch.float64)
    b = torch.randn(k, n, generator=g, dtype=torch.float64)  # both signs: the ReLU matters
    present = torch.rand(k, batch, n, generator=g) < 0.2
    x = (torch.rand(k, batch, n, generator=g, dtype=torch.float64) * 2 - 1) * present
    x[:, :24] = 0  # empty rows, which the compact path adds in closed form
    importance = torch.rand(n, generator=g, dtype=torch.float64)
    M = mixing_matrix(n, sigma, 3)
    M = None if M is None else M.double()
    expected = _autograd(W1, W2, b, x, importance, readout, M)
    head = (readout, M)
    for got in (loss_and_grads(W1, W2, b, x, importance, head),
                compact_loss_and_grads(W1, W2, b, x, importance, 48, head)[:4]):  # fmt: skip
        for a, e in zip(got, expected, strict=True):
            torch.testing.assert_close(a, e, rtol=1e-10, atol=1e-12)


def test_a_linear_readout_passes_negative_outputs_and_the_relu_readout_cuts_them():
    W1 = torch.tensor([[[1.0]]])  # one feature, one neuron: h = ReLU(x)
    W2 = torch.tensor([[[2.0]]])
    b = torch.tensor([[-1.0]])
    x = torch.tensor([[[0.25], [0.0], [1.0]]])
    # W2 h + b = 2 ReLU(x) - 1: -0.5, -1, 1
    assert outputs(W1, W2, b, x, "linear").flatten().tolist() == [-0.5, -1.0, 1.0]
    assert outputs(W1, W2, b, x).flatten().tolist() == [0.0, 0.0, 1.0]


def test_mixed_labels_add_m_x_to_the_absolute_value():
    M = torch.tensor([[0.0, 0.5], [0.5, 0.0]])
    x = torch.tensor([[[-1.0, 0.0], [0.5, -0.25]]])
    # row 1: |x| = (1, 0), M x = (0, -0.5); row 2: |x| = (0.5, 0.25), M x = (-0.125, 0.25)
    expected = torch.tensor([[[1.0, -0.5], [0.375, 0.5]]])
    torch.testing.assert_close(targets(x, M), expected)
    assert torch.equal(targets(x), x.abs())
    y = torch.zeros_like(x)
    # mean over rows of the summed squares: (1 + 0.25 + 0.140625 + 0.25) / 2
    assert weighted_loss(y, x, torch.ones(2), M).item() == pytest.approx(0.8203125)


def test_the_mixing_matrix_is_symmetric_with_a_zero_diagonal_and_sigma_off_it():
    M = mixing_matrix(400, 0.02, 1)
    assert torch.equal(M, M.T) and torch.equal(M.diagonal(), torch.zeros(400))
    off = M[~torch.eye(400, dtype=torch.bool)]
    assert off.std().item() == pytest.approx(0.02, rel=0.01)  # 159,600 draws: sd ~0.2 %
    assert abs(off.mean().item()) < 0.0002  # 5 standard errors of the mean
    assert torch.equal(M, mixing_matrix(400, 0.02, 1))  # from its seed alone
    assert not torch.equal(M, mixing_matrix(400, 0.02, 2))
    assert mixing_matrix(400, 0.0, 1) is None


def test_the_monosemantic_solution_of_mixed_labels_computes_its_features_in_every_label():
    """With only the pairs' own features present, every label is linear in them, so the
    pairs compute each label exactly, up to the bias (0 on a pair's own output, p/2 on
    every other), wherever the ReLU readout can follow it (not below 0)."""
    n, m, p = 8, 6, 0.1
    M = mixing_matrix(n, 0.05, 4)
    W1, W2, b = starts.monosemantic([1.0] * n, m, p, M)
    assert b[:3].tolist() == [0.0] * 3 and b[3:].tolist() == pytest.approx([p / 2] * 5)
    g = torch.Generator().manual_seed(5)
    x = torch.zeros(1, 200, n)
    x[0, :, :3] = torch.rand(200, 3, generator=g) * 2 - 1  # the three computed features
    y, label = outputs(W1[None], W2[None], b[None], x), targets(x, M)
    assert (label[..., :3] > 0).float().mean() > 0.9  # so the check below is mostly uncut
    torch.testing.assert_close(y, torch.relu(label + b))


def test_a_variant_never_trains_in_one_run_with_another_kind_of_model():
    E10 = experiments.READOUT_PARENT
    linear, mixed = experiments.READOUT_VARIANTS
    same_batches = dataclasses.replace(linear, feature_probs=E10.feature_probs)
    assert same_batches.batch_stream() == E10.batch_stream()
    runs = _runs([(E10, ""), (same_batches, ""), (mixed, "")])
    assert [[e.name for e, _ in run] for run in runs] == [[E10.name], [linear.name], [mixed.name]]
    with pytest.raises(ValueError, match="differ in readout or labels"):
        _check_shared([E10, same_batches])


def test_a_bad_readout_or_mixing_is_refused():
    E10 = experiments.READOUT_PARENT
    with pytest.raises(ValueError, match="unknown readout"):
        dataclasses.replace(E10, readout="sigmoid")
    for bad in (-0.1, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="mixing must be"):
            dataclasses.replace(E10, mixing=bad)
