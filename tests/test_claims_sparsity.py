"""Each sentence of the sparsity chapter, checked on the fields it glues (findings.sparsity)."""

import pytest

from superposition import findings

pytestmark = pytest.mark.claims


@pytest.fixture(scope="module")
def f(trained):
    trained("sparsity-sweep")  # cached by `make figures`, or trained here once
    return findings.sparsity()


def test_the_dense_model_is_monosemantic_and_the_sparsest_all_polysemantic(f):
    """ "every neuron of the dense model is monosemantic ... at p = 0.001, P of m neurons are
    polysemantic" (the table: the paper's all monosemantic ... all highly polysemantic)."""
    dense, sparsest = f.settings[1.0], f.settings[f.sparsest_p]
    assert dense.polysemantic.best == 0 and dense.dead == 0
    assert sparsest.polysemantic.low > 0.5 * f.m  # every seed, mostly polysemantic
    assert sparsest.polysemantic.best == f.m - sparsest.dead
    assert sparsest.median_reads > 2


def test_polysemantic_counts_grow_with_sparsity_up_to_the_seed_spread(f):
    counts = [f.settings[p].polysemantic for p in f.probs]
    for denser, sparser in zip(counts, counts[1:], strict=False):
        assert sparser.high >= denser.low, (denser, sparser)
    assert counts[-1].low > counts[0].high


def test_the_dense_models_compute_exactly_their_capacity(f):
    """ "The lowest-loss dense model computes C features, exactly its capacity ..., and so does
    the model at p = 0.3." Exactly: the same count at all three thresholds."""
    for p in (1.0, 0.3):
        assert f.settings[p].computed_at == (f.capacity,) * 3
        assert f.settings[p].one_side.best == 0
        assert f.settings[p].sides == 2 * f.capacity == f.m


def test_the_count_dips_below_the_capacity_at_p_01_and_003(f):
    """ "At p = 0.1 and 0.03 the count dips to C1 and C2 (L at 0.8, H at 0.95 at p = 0.03):
    some of the features ... are computed in part, not to the threshold." """
    for p in (0.1, 0.03):
        assert f.settings[p].computed.best < f.capacity
    low, mid, high = f.settings[0.03].computed_at
    assert high <= mid < low  # the count moves with the threshold: partly computed features


def test_superposition_computes_a_little_more_at_intermediate_sparsity(f):
    """ "Sparser, the m neurons compute a little more than their capacity: at most K features
    (at p = ...; ...), D more than without superposition, and up to S sides." """
    assert 0 < f.most_computed - f.capacity <= 5  # 'a little more'
    assert f.most_sides > f.m
    assert all(p not in (1.0, 0.3, 0.1, f.sparsest_p) for p in f.peak_ps)
    assert all(f.settings[p].computed.best == f.most_computed for p in f.peak_ps)


def test_the_sparsest_model_computes_less_than_the_peak(f):
    """ "At p = 0.001 ... the count is X": more polysemantic is not more computation; "about
    as many as the dense one"."""
    sparsest = f.settings[f.sparsest_p]
    assert sparsest.computed.best < f.most_computed
    assert abs(sparsest.computed.best - f.settings[1.0].computed.best) <= 2
    assert sparsest.sides < f.most_sides
    assert sparsest.one_side.best > 0


def test_every_model_drops_a_tail_of_the_least_important_features(f):
    """ "Every model computes the most important features first and drops the rest", the tail
    reaching further at intermediate sparsity and back at p = 0.001."""
    for s in f.settings.values():
        assert s.first_dropped_tail >= s.computed.best  # nothing computed inside the tail
        assert bool((s.fve[s.first_dropped_tail :] < f.dropped_below).all())
        assert bool((s.within[: f.capacity // 2] >= f.fve_computed).all())  # the top is computed
    tails = {p: s.first_dropped_tail for p, s in f.settings.items()}
    assert tails[0.01] > tails[1.0] and tails[0.01] > tails[f.sparsest_p]


def test_the_sparsest_model_does_not_write_what_it_drops(f):
    """ "The dropped features do not reach their outputs: no neuron writes more than W to a
    dropped feature's output, though some neurons read one with a weight of up to R";
    "feature T weighing I of feature 0"; the constant costs a share."""
    sparsest = f.settings[f.sparsest_p]
    assert sparsest.max_write_to_dropped < 0.05
    assert 0 < sparsest.max_read_of_dropped < 1
    assert f.importance_at_sparsest_tail < 0.01
    assert 0.1 < sparsest.dropped_loss_share < 1  # "not negligible"
    assert f.examples_at_sparsest == round(f.sparsest_p * 1024 * 20_000)


def test_the_intermediate_model_keeps_its_most_important_features_monosemantic(f):
    """ "The monosemantic ones carry the most important features: every feature from 0 up to
    T has a monosemantic neuron", and they read, on average, more important features."""
    mid = f.intermediate
    assert mid.monosemantic > 0 and mid.polysemantic > 0  # both kinds in one model
    assert mid.top_monosemantic > 0  # feature 0 has its own neuron
    assert mid.mean_primary[0] < mid.mean_primary[1]
    assert mid.median_secondary < 1 and mid.max_secondary <= 1  # one primary weight of 1
    assert mid.median_reads > 1


def test_no_neuron_of_any_seed_is_dead(f):
    """No neuron of any seed is dead (0 dead neurons in all 56 models)."""
    assert f.dead_neurons == 0
    assert len(f.dead) == len(f.probs) * f.n_seeds


def test_seeds_disagree_most_at_one_sparsity(f):
    """ "at p = P the worst seed's loss is R times the lowest (at most Q at every other)"."""
    p, ratio = f.worst_loss_ratio
    assert ratio > f.other_loss_ratios_below >= 1
    assert p == f.sparsest_p  # the prose names the sparsest setting


def test_slightly_polysemantic_at_p_01(f):
    """ "each reading only a little more than one feature (median M over them)"."""
    assert 1.1 < f.settings[0.1].median_reads_polysemantic < 1.5
