"""Claims of the sparsity chapter, checked on the cached models (the motif chapter's are in
test_claims_motif.py)."""

import pytest

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


def test_sparse_models_compute_more_features_than_the_capacity(trained):
    w = trained("sparsity-sweep")
    computed = analysis.features_computed(w.W1, w.W2, w.b)
    capacity = w.experiment.n_hidden // 2
    assert computed[w.best(0.01)] > capacity >= computed[w.best(1.0)]
