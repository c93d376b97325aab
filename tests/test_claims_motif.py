"""Claims of the motif chapter (book/motif.md), on the fields of `findings.motif()` that the
chapter glues: one test per claim, in the chapter's order."""

import pytest

from superposition import experiments, findings

pytestmark = pytest.mark.claims


@pytest.fixture(scope="module")
def f(trained):
    c = trained("asymmetric-motif")  # trains the weights here if they are missing or stale
    trained("sparsity-sweep")
    trained(experiments.MOTIF_HOLDOUT.name)
    found = findings.motif()
    assert found.c_shown.instance == c.best(c.experiment.feature_probs[0])
    return found


def test_the_papers_example_leaks_sixteen_times_more_one_way(f):
    assert (f.paper_leak, f.paper_reverse_leak) == (4.0, 0.25)
    assert f.paper_leak_ratio == 16.0


def test_the_detector_runs_on_every_b_and_c_model_and_finds_the_motif_in_some(f):
    """'finds the motif in 5 of C's 16 seeds and 7 of B's 56 models': not in every model."""
    rows = [r for r in f.detector if r.label == "B"]
    assert f.b_models == sum(r.seeds for r in rows)
    assert f.b_models_with == sum(r.seeds_with for r in rows)
    assert 0 < f.b_models_with < f.b_models
    (row,) = [r for r in f.detector if r.label == "C"]
    assert (row.seeds, row.seeds_with) == (f.c_seeds, f.c_with_motif)
    assert 0 < f.c_with_motif < f.c_seeds


def test_experiment_c_best_model_holds_the_motif(f):
    assert len(f.c_shown.motifs) == 1  # "the detector finds 1 motif in this model"
    (row,) = [r for r in f.detector if r.label == "C"]
    assert row.in_best and row.seeds_with == f.c_with_motif


def test_in_sample_the_motif_seemed_to_go_with_a_better_optimum(f):
    """'On the 16 seeds that chose this setting it seemed to: the seeds that hold it have a
    median loss of L, the others L', and T of the K lowest-loss seeds hold it.'"""
    assert 0 < f.c_with_motif < f.c_seeds
    assert f.c_loss_with < f.c_loss_without
    assert f.c_top == f.c_with_motif
    assert f.c_top_with / f.c_top > f.c_with_motif / f.c_seeds


def test_out_of_sample_there_is_no_evidence_for_a_better_optimum(f, trained):
    """'On 64 fresh seeds ... a one-sided Wilcoxon rank-sum test ... gives p = P. Out of
    sample we find no evidence that the motif goes with a better optimum.'"""
    h = trained(experiments.MOTIF_HOLDOUT.name)
    assert f.h_seeds == len(h.final_loss) == 64
    assert not set(experiments.MOTIF_HOLDOUT.seeds) & set(experiments.ASYMMETRIC_MOTIF.seeds)
    assert 0 < f.h_with_motif < f.h_seeds
    assert f.h_p_value > 0.05  # no evidence at the usual level
    # at the same loss as the others: medians within 5 % of each other
    assert f.h_loss_with == pytest.approx(f.h_loss_without, rel=0.05)


def test_the_shown_model_is_the_plain_solution_plus_one_feature_on_one_side(f):
    both = set(f.c_computed_both)
    assert 2 * len(both) == f.c_m  # two neurons per feature fill the model
    for feature in both:
        assert sorted(side for i, side in f.c_neurons if i == feature) == ["negative", "positive"]
    assert {i for i, _ in f.c_neurons} == both
    ((extra, side),) = f.c_computed_one
    assert extra not in both  # no neuron of its own ...
    assert (f.c_shown.motif.weak, f.c_shown.motif.weak_side) == (extra, side)  # ... the motif


def test_the_carrier_has_the_papers_pattern(f):
    m = f.c_shown.motif
    assert f.c_neurons[m.carrier] == (m.strong, m.side)  # the strong feature's own neuron
    assert abs(m.w1_strong) == pytest.approx(1.0) and abs(m.w1_weak) < abs(m.w1_strong)
    assert m.w2_weak > m.w2_strong > 0  # reciprocal: the weak input, the large output weight
    assert m.leak > m.reverse_leak > 0 and m.leak_ratio > 1
    assert m.leak_ratio == pytest.approx(m.leak / m.reverse_leak)


def test_the_inhibitor_cancels_the_leak_and_is_another_features_neuron(f):
    m = f.c_shown.motif
    assert 0 < m.excess < 0.05  # "just above the leak"
    assert m.error_without - m.error_with >= f.min_rise
    assert m.inhibitor_main != m.strong and m.inhibitor_is_other_features_neuron
    assert f.c_neurons[m.inhibitor] == (m.inhibitor_main, m.inhibitor_main_side)


def test_a_second_pair_misses_the_detector_by_a_hair(f):
    (miss,) = f.c_near_misses
    m = f.c_shown.motif
    assert miss.weak == m.weak  # the same output
    assert {miss.carrier, miss.inhibitor}.isdisjoint({m.carrier, m.inhibitor})
    assert f.c_neurons[miss.carrier] == (miss.strong, miss.side)
    assert miss.leak_ratio > 1 and miss.w2_weak > miss.w2_strong > 0
    assert -f.near_miss < miss.excess < 0  # short of the leak, by less than NEAR_MISS
    assert miss.error_without - miss.error_with >= f.min_rise
    # feature 4 on both sides through other features' neurons; one side too weak to count
    assert miss.weak_side != m.weak_side
    assert (miss.weak, miss.weak_side) not in f.c_computed_one
    # both inhibitors are one feature's two neurons, one per side
    assert miss.inhibitor_main == m.inhibitor_main and miss.inhibitor_is_other_features_neuron
    assert {miss.inhibitor_main_side, m.inhibitor_main_side} == {"negative", "positive"}
    assert set(f.c_motif_neurons) == {m.carrier, m.inhibitor, miss.carrier, miss.inhibitor}


def test_the_pre_activation_stays_below_the_leak(f):
    a, m = f.c_ablation, f.c_shown.motif
    assert a.out_max_ablated == pytest.approx(m.error_without, rel=0.05)
    assert a.pre_at_end < 0 < a.pre_at_zero  # from the bias down, below zero
    assert a.pre_max_on_side <= a.pre_at_zero + 1e-12  # the leak never lifts it
    assert m.error_with < f.min_rise <= m.error_without


def test_the_motif_belongs_to_limited_superposition(f):
    rows = [r for r in f.detector if r.label == "B"]
    assert all(r.motifs == 0 for r in rows if r.p >= 0.3 or r.p <= 0.003)
    assert sum(r.motifs for r in rows) > 0
    assert f.b_probs_with == tuple(r.p for r in rows if r.motifs)
    assert f.b_denser and all(r.motifs == 0 and r.polysemantic == 0 for r in f.b_denser)
    assert f.b_sparser and all(r.motifs == 0 for r in f.b_sparser)
    assert all(r.two_feature_neurons <= 0.1 * r.polysemantic for r in f.b_sparser)  # "few"
    assert f.b_sparser[-1].polysemantic == f.b_m  # "all of the neurons"
    assert f.b_sparser[-1].p == min(r.p for r in rows)


def test_dense_models_have_no_carrier_shaped_neuron(f):
    """'the dense and nearly dense models have no such neuron ... the detector's first
    condition fails on every neuron'."""
    assert f.b_denser and all(r.two_feature_neurons == 0 for r in f.b_denser)
    assert all(r.motifs == 0 for r in f.b_denser)


def test_the_polysemantic_threshold_counts_cs_carrier_and_inhibitor_as_monosemantic(f):
    """C's lowest-loss model holds the motif with no polysemantic neuron: its carrier and
    inhibitor read about one feature each (effective number under the threshold), while the
    carrier-shaped count includes the carrier."""
    (row,) = [r for r in f.detector if r.label == "C"]
    assert row.in_best and row.polysemantic == 0
    assert 1 < f.c_carrier_features < f.polysemantic_threshold
    assert 1 < f.c_inhibitor_features < f.polysemantic_threshold
    assert f.c_carrier_shaped and row.two_feature_neurons >= 1
    assert abs(f.c_shown.motif.w1_weak) < f.max_ratio  # "a small weight"


def test_experiment_b_shows_the_motif_in_one_lowest_loss_model(f):
    b = f.b_shown
    assert b is not None and f.b_best_with == (b.p,)
    assert b.p < f.c_p  # "this sparser model"
    m = b.motif
    assert m.leak > m.reverse_leak > 0 and m.leak_ratio > 1
    assert m.w2_weak > m.w2_strong > 0
    assert m.excess > 0 and m.error_without - m.error_with >= f.min_rise
    # unlike C's, this inhibitor is a second neuron for the strong feature's own side
    assert m.inhibitor_main == m.strong and m.inhibitor_main_side == m.side
    assert m.inhibitor_main_gain > 0
    assert f.c_shown.motif.inhibitor_main != f.c_shown.motif.strong
    assert m.carrier_reads_more > 0 and m.inhibitor_reads_more > 0
