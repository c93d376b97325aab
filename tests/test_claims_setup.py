"""Claims of the setup chapter (book/setup.md), on the fields of `findings.setup()` it glues.
(The three failures of the plain recipe, and our dense model's features, are in
tests/test_claims_engine.py.)"""

import math

import pytest
import torch

from superposition import analysis, experiments, findings, store, train
from superposition.model import AbsModel, neuron_effect

pytestmark = pytest.mark.claims


@pytest.fixture(scope="module")
def f(every_model):
    return findings.setup()


def test_the_task_is_experiment_b(f):
    e = experiments.get("sparsity-sweep")
    assert (f.n, f.m, f.decay, f.sweep_label) == (e.n_features, e.n_hidden, 0.8, e.label)
    assert f.capacity == f.m // 2


def test_the_sampler_gives_each_feature_with_probability_p(f):
    for p, present in f.present_fraction:
        error = math.sqrt(p * (1 - p) / (f.input_samples * f.n))
        assert abs(present - p) <= 5 * error + 1e-12, (p, present)


def test_the_official_recipe_is_what_the_text_says(f):
    """'AdamW at a learning rate of 1e-3, batch 1024, for 10,000 steps, from Xavier-normal
    weights and a zero bias', with a constant rate and no recycling."""
    plain = {row.setting: row.plain for row in f.recipe}
    assert plain["optimiser"] == "adamw"
    assert (plain["learning rate"], plain["batch"], plain["steps"]) == ("0.001", "1024", "10,000")
    assert (plain["initial weights"], plain["initial output bias"]) == ("Xavier × 1", "0")
    assert (plain["schedule"], plain["recycling"]) == ("constant", "never")


def test_our_recipe_changes_what_the_text_says_and_keeps_the_rest(f):
    changed = {"steps", "learning rate", "warm-up", "schedule", "initial weights",
               "initial output bias", "recycling"}  # fmt: skip
    assert set(f.recipe_changed) == changed
    assert set(f.recipe_kept) == {"batch", "optimiser", "weight decay"}
    assert f.same_model_and_task
    ours = [e for e in experiments.REGISTRY.values()
            if e.name != "plain-recipe" and e.start == "random"]  # fmt: skip
    assert set(f.ours_labels) == {e.label for e in ours} >= {"A", "B", "C", "E5", "E20"}
    recipe = experiments.RECIPE
    assert all({k: getattr(e, k) for k in recipe} == recipe for e in ours)
    assert f.plain_label == "B0"


def test_recycling_is_every_k_steps_until_the_last(f):
    e = experiments.get("sparsity-sweep")
    assert e.recycle_at == tuple(range(f.recycle_every, f.recycle_until + 1, f.recycle_every))
    assert f.merge_cosine == train.MERGE_COSINE
    assert f.merge_bound == pytest.approx(math.sqrt(2 * (1 - f.merge_cosine)))


def _recycled(W1: torch.Tensor, W2: torch.Tensor):
    """The model before and after one call of train.recycle (outputs on random inputs)."""
    b = torch.zeros(1, W2.shape[1], dtype=torch.float64)
    model = AbsModel(W1.clone(), W2.clone(), b)
    optimiser = torch.optim.AdamW(model.parameters())
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    optimiser.step()  # creates the optimiser state that recycling resets
    x = torch.rand(1, 2000, W1.shape[2], generator=torch.Generator().manual_seed(0),
                   dtype=torch.float64) * 2 - 1  # fmt: skip
    with torch.no_grad():
        model.W1.copy_(W1)  # undo the (zero-gradient) weight decay step
        model.W2.copy_(W2)
        before = model(x)
        freed = train.recycle(model, optimiser, torch.Generator().manual_seed(1))
        after = model(x)
    return freed, before, after, x


def test_a_merge_of_parallel_neurons_is_exact_and_of_near_parallel_ones_bounded(f):
    g = torch.Generator().manual_seed(3)
    n, m = 6, 4
    W1 = torch.randn(1, m, n, generator=g, dtype=torch.float64)
    W2 = torch.rand(1, n, m, generator=g, dtype=torch.float64)
    W1[0, 1] = 0.5 * W1[0, 0]  # exactly parallel: the same ReLU up to scale
    freed, before, after, _ = _recycled(W1, W2)
    assert freed == 1
    assert (after - before).abs().max() < 1e-12

    # Within the merge cosine but not parallel: the change is at most the stated bound.
    direction = torch.randn(n, generator=g, dtype=torch.float64)
    direction -= (direction @ W1[0, 0]) / W1[0, 0].norm() ** 2 * W1[0, 0]
    tilt = math.tan(math.acos(f.merge_cosine)) * 0.9  # cosine just above the threshold
    W1[0, 1] = 0.5 * (W1[0, 0] + tilt * W1[0, 0].norm() * direction / direction.norm())
    unit = W1[0] / W1[0].norm(dim=-1, keepdim=True)
    assert unit[0] @ unit[1] > f.merge_cosine
    freed, before, after, x = _recycled(W1, W2)
    assert freed == 1
    change = (after - before).abs().max()
    # Whichever of the two is freed, its pre-activation moves by at most merge_bound |w| |x|.
    reach = max(W1[0, j].norm() * W2[0, :, j].abs().max() for j in (0, 1))
    assert 0 < change <= f.merge_bound * reach * x.norm(dim=-1).max()


def test_a_dead_neuron_is_dropped_with_less_than_its_bound(f):
    g = torch.Generator().manual_seed(4)
    W1 = torch.randn(1, 4, 6, generator=g, dtype=torch.float64)
    W2 = torch.rand(1, 6, 4, generator=g, dtype=torch.float64)
    W2[0, :, 2] *= 1e-5  # neuron 2 is dead
    effect = neuron_effect(W1, W2)[0]
    assert effect[2] < f.dead_fraction * effect.max()
    freed, before, after, x = _recycled(W1, W2)
    assert freed == 1
    assert (after - before).abs().max() <= effect[2] * x.shape[-1]


def test_the_plain_recipe_is_b_at_three_sparsities(f):
    plain = experiments.get("plain-recipe")
    assert f.plain_settings == plain.feature_probs
    assert set(f.plain_settings) <= set(experiments.get("sparsity-sweep").feature_probs)
    assert f.plain_seeds == len(plain.seeds)
    assert [(o.p, o.recipe) for o in f.outcomes] == [
        (p, r) for p in f.plain_settings for r in ("plain", "this book")
    ]


def test_recycling_is_not_the_whole_answer(f):
    """'Only K of our 8 seeds compute all 20 ... J of our seeds compute a feature outside the
    top 20 while missing one inside it.'"""
    assert 1 <= f.ours_dense_at_capacity < f.ours_dense_seeds
    assert f.ours_dense_misplaced >= 1
    assert f.outcome("this book", 1.0).duplicates == 0


def test_tangles_the_plain_model_is_worse_than_the_monosemantic_solution(f):
    """At p = 0.1 the plain model does worse than the solution without superposition, and
    ours does better than it."""
    assert f.outcome("plain", 0.1).loss_ratio > 1 > f.outcome("this book", 0.1).loss_ratio
    assert f.outcome("plain", 0.1).polysemantic > f.outcome("this book", 0.1).polysemantic


def test_our_bias_keeps_most_top_outputs_alive(f):
    assert f.outcome("this book", 0.001).dead_top < f.capacity / 2


def test_our_bias_keeps_the_top_outputs_alive_and_the_dead_ones_are_dropped_features(f):
    """'keeps those most important outputs alive: ours has 0 dead among the top 20 ... overall
    ours has more dead outputs than the plain model ... and all of them are on features less
    important than the least important feature it computes alone on even one side'."""
    plain, ours = f.outcome("plain", 0.001), f.outcome("this book", 0.001)
    assert ours.dead_top == 0 < plain.dead_top
    assert ours.dead_outputs > plain.dead_outputs
    assert ours.dead_past_computed == ours.dead_outputs
    assert ours.computed <= ours.last_computed + 1  # the computed features lie before it


def test_features_computed_here_is_the_single_feature_grid_test(f):
    """The table's 'features computed (one feature alone, within 0.1)'."""
    assert f.tolerance == analysis.COMPUTED_TOLERANCE
    for o in f.outcomes:
        name = "plain-recipe" if o.recipe == "plain" else "sparsity-sweep"
        w, k = store.load(name), o.instance
        count = analysis.features_computed(w.W1[k : k + 1], w.W2[k : k + 1], w.b[k : k + 1])
        assert o.computed == int(count[0])


def test_the_hardware_table_lists_every_experiment(f):
    assert [(c.label, c.name) for c in f.files] == [
        (e.label, e.name) for e in experiments.REGISTRY.values()
    ]
    assert all(c.mode in ("compiled", "eager") for c in f.files)
