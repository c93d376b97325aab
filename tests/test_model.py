import torch

from superposition.model import AbsModel, loss_and_grads, weighted_loss


def test_vectorised_forward_equals_one_model_at_a_time():
    model = AbsModel.initialise(5, 4, seeds=[0, 1, 2], device=torch.device("cpu"))
    with torch.no_grad():
        model.b.copy_(torch.randn(3, 5, generator=torch.Generator().manual_seed(0)))
    x = torch.randn(3, 16, 5, generator=torch.Generator().manual_seed(1))
    y = model(x)
    assert y.shape == (3, 16, 5)
    for k in range(3):
        h = torch.relu(x[k] @ model.W1[k].T)
        expected = torch.relu(h @ model.W2[k].T + model.b[k])
        torch.testing.assert_close(y[k], expected)


def test_an_instance_depends_only_on_its_own_seed():
    alone = AbsModel.initialise(5, 4, seeds=[7], device=torch.device("cpu"))
    among = AbsModel.initialise(5, 4, seeds=[3, 7, 9], device=torch.device("cpu"))
    assert torch.equal(alone.W1[0], among.W1[1]) and torch.equal(alone.W2[0], among.W2[1])
    assert not torch.equal(among.W1[0], among.W1[1])


def test_hand_built_absolute_value_has_zero_loss():
    n = 3
    W1 = torch.cat([torch.eye(n), -torch.eye(n)])[None]  # [1, 2n, n]: ReLU(x_i), ReLU(-x_i)
    W2 = torch.cat([torch.eye(n), torch.eye(n)], dim=1)[None]  # [1, n, 2n]: sum both sides
    model = AbsModel(W1, W2, torch.zeros(1, n))
    x = torch.rand(1, 100, n) * 2 - 1
    torch.testing.assert_close(model(x), x.abs())
    assert weighted_loss(model(x), x, torch.ones(n)).item() == 0


def test_loss_is_importance_weighted_sum_over_features_mean_over_batch():
    x = torch.tensor([[[1.0, -2.0], [0.0, 1.0]]])  # [instances 1, batch 2, n 2]
    y = torch.zeros_like(x)
    importance = torch.tensor([1.0, 0.5])
    # per sample: 1*1 + 0.5*4 = 3 and 0 + 0.5*1 = 0.5; mean 1.75
    assert weighted_loss(y, x, importance).tolist() == [1.75]


def test_mismatched_shapes_are_refused():
    import pytest

    with pytest.raises(ValueError, match="shapes"):
        AbsModel(torch.zeros(1, 4, 3), torch.zeros(1, 4, 3), torch.zeros(1, 3))


def test_hand_written_backward_matches_autograd():
    g = torch.Generator().manual_seed(3)
    model = AbsModel.initialise(7, 5, seeds=[0, 1], device=torch.device("cpu"))
    with torch.no_grad():
        model.b.copy_(torch.randn(2, 7, generator=g) * 0.3)
    x = (torch.rand(2, 64, 7, generator=g) * 2 - 1) * (torch.rand(2, 64, 7, generator=g) < 0.5)
    importance = 0.9 ** torch.arange(7.0)
    loss = weighted_loss(model(x), x, importance)
    loss.sum().backward()
    by_hand = loss_and_grads(model.W1.detach(), model.W2.detach(), model.b.detach(), x, importance)
    torch.testing.assert_close(by_hand[0], loss.detach())
    for ours, param in zip(by_hand[1:], (model.W1, model.W2, model.b), strict=True):
        torch.testing.assert_close(ours, param.grad)
