"""Constructed starts (starts.py) against answers known by hand."""

import dataclasses

import pytest
import torch

from superposition import analysis, experiments, starts, store, train
from superposition.model import AbsModel


def test_the_monosemantic_solution_computes_the_most_important_half_exactly():
    importance = [0.5, 1.0, 0.25, 1.0, 0.1]  # features 1 and 3 tie for most important
    W1, W2, b = starts.monosemantic(importance, 5, 0.2)  # odd m: one neuron left at zero
    assert W1.tolist() == [
        [0, 1, 0, 0, 0],
        [0, -1, 0, 0, 0],
        [0, 0, 0, 1, 0],
        [0, 0, 0, -1, 0],
        [0, 0, 0, 0, 0],
    ]
    assert b.tolist() == pytest.approx([0.1, 0.0, 0.1, 0.0, 0.1])
    x = torch.tensor([[[0.3, -0.7, 0.0, 0.9, -0.2]]])
    y = AbsModel(W1[None], W2[None], b[None])(x)[0, 0]
    assert y.tolist() == pytest.approx([0.1, 0.7, 0.1, 0.9, 0.1])


@pytest.mark.parametrize("p", [1.0, 0.1])
def test_the_monosemantic_loss_is_what_training_evaluates_on_the_construction(p):
    """`analysis.monosemantic_loss` (closed form) against the construction run on the
    evaluation batch: they agree to the batch's sampling noise (65,536 rows)."""
    e = dataclasses.replace(experiments.get("capacity-m10-equal"), feature_probs=(p,), seeds=(0,))
    W1, W2, b = starts.monosemantic(e.importance(), e.n_hidden, p)
    model = AbsModel(W1[None], W2[None], b[None])
    (loss,), _ = train.evaluate(model, e, torch.tensor([p]))
    closed = analysis.monosemantic_loss(torch.tensor(e.importance()), p, e.n_hidden // 2)
    assert loss == pytest.approx(closed, rel=5e-3)


def _fake_parent(e: experiments.Experiment) -> store.Weights:
    """A parent whose instance k is filled with the number k, and whose losses make seed 1
    the lowest at every p."""
    k, m, n = e.n_instances, e.n_hidden, e.n_features
    fill = torch.arange(k, dtype=torch.float32)
    loss = [1.0 if s == 1 else 2.0 for s in e.instance_seeds]
    return store.Weights(
        experiment=e, W1=fill[:, None, None].expand(k, m, n).clone(),
        W2=fill[:, None, None].expand(k, n, m).clone(), b=fill[:, None].expand(k, n).clone(),
        feature_probs=e.instance_probs, seeds=e.instance_seeds, final_loss=loss, device="cpu",
        mode="eager", hardware="", versions={}, content_hash="", tensor_sha256="", path=None,
    )  # fmt: skip


def test_a_continuation_starts_from_the_parent_s_best_model_at_the_next_denser_p():
    parent = experiments.get("capacity-m10-equal")
    child = experiments.constructed(parent)
    W1, W2, b = starts.initial(child, _fake_parent(parent))
    probs, seeds = child.instance_probs, child.instance_seeds
    assert seeds[:2] == [0, 1] and probs[:2] == [1.0, 1.0]
    mono = starts.monosemantic(parent.importance(), parent.n_hidden, 1.0)[2]
    # At p = 1 both instances are monosemantic starts (the bias is not perturbed)
    assert b[0].tolist() == b[1].tolist() == mono.tolist()
    for k in range(2, child.n_instances):
        denser = parent.feature_probs[parent.feature_probs.index(probs[k]) - 1]
        if seeds[k] == 1:  # the parent's seed 1 at the denser p: its instance index
            expected = parent.instance_probs.index(denser) + 1
            assert b[k].unique().tolist() == [expected]
            assert (W1[k] - expected).abs().max() < 0.1  # the perturbation is small
        else:
            assert b[k].max() == pytest.approx(probs[k] / 2)


def test_a_constructed_experiment_refuses_another_parent():
    child = experiments.constructed(experiments.get("capacity-m10-equal"))
    with pytest.raises(ValueError, match="does not refine"):
        starts.initial(child, _fake_parent(experiments.get("capacity-m20-equal")))


def test_training_needs_starting_weights_exactly_for_a_constructed_experiment():
    child = experiments.constructed(experiments.get("capacity-m5-equal"))
    with pytest.raises(ValueError, match="needs starting weights"):
        train.train(child, "cpu", progress=False)
    random = experiments.get("capacity-m5-equal")
    start = tuple(torch.zeros(random.n_instances, *s) for s in ((5, 100), (100, 5), (100,)))
    with pytest.raises(ValueError, match="needs no starting weights"):
        train.train(random, "cpu", progress=False, start=start)
