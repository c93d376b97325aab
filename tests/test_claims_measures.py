"""Claims of the sparsity and motif chapters, checked on the cached models."""

import pytest
import torch

from superposition import analysis

pytestmark = pytest.mark.claims


@pytest.fixture(scope="module")
def sweep(trained):
    w = trained("sparsity-sweep")
    return w, analysis.polysemantic_neurons(w.W1, w.W2), analysis.dead_neurons(w.W1, w.W2)


def test_sparsest_models_are_mostly_polysemantic(sweep):
    w, poly, dead = sweep
    for k in w.instances_at(min(w.feature_probs)):
        live = ~dead[k]
        assert poly[k].sum() > 0.5 * live.sum(), f"instance {k}"


def test_polysemantic_count_grows_with_sparsity_up_to_the_seed_spread(sweep):
    w, poly, _ = sweep
    counts = [poly[w.instances_at(p)].sum(-1) for p in w.experiment.feature_probs]
    for denser, sparser in zip(counts, counts[1:], strict=False):
        assert sparser.max() >= denser.min(), (denser.tolist(), sparser.tolist())
    assert counts[-1].min() > counts[0].max()


def test_the_intermediate_model_keeps_its_most_important_features_monosemantic(sweep):
    w, poly, dead = sweep
    k = w.best(0.03)
    feature, _ = analysis.primary_features(analysis.rescale(w.W1, w.W2)[0])
    mono = ~poly[k] & ~dead[k]
    assert mono.any() and poly[k].any()  # both kinds in one model
    assert 0 in feature[k][mono].tolist()  # the most important feature has its own neuron
    assert feature[k][mono].double().mean() < feature[k][poly[k]].double().mean()


def test_experiment_c_best_model_holds_the_motif(trained):
    c = trained("asymmetric-motif")
    best = c.best(c.experiment.feature_probs[0])
    assert any(m.instance == best for m in analysis.find_motifs(c.W1, c.W2, c.b))


def test_the_motif_belongs_to_limited_superposition(sweep):
    w, _, _ = sweep
    found = torch.tensor(
        [w.feature_probs[m.instance] for m in analysis.find_motifs(w.W1, w.W2, w.b)]
    )
    assert not (found >= 0.3).any() and not (found <= 0.003).any(), found.tolist()
    assert len(found) > 0


def test_the_motif_goes_with_a_better_optimum(trained):
    c = trained("asymmetric-motif")
    with_motif = {m.instance for m in analysis.find_motifs(c.W1, c.W2, c.b)}
    assert 0 < len(with_motif) < len(c.final_loss)
    losses_with = torch.tensor([c.final_loss[k] for k in with_motif])
    losses_without = torch.tensor(
        [loss for k, loss in enumerate(c.final_loss) if k not in with_motif]
    )
    assert losses_with.median() < losses_without.median()


def test_sparse_models_compute_more_features_than_the_capacity(trained):
    w = trained("sparsity-sweep")
    computed = analysis.features_computed(w.W1, w.W2, w.b)
    capacity = w.experiment.n_hidden // 2
    assert computed[w.best(0.01)] > capacity >= computed[w.best(1.0)]
