"""Each sentence of the scaling chapter (book/scaling.md), on the fields it glues
(findings.scaling), with the cells and baselines re-derived from the weight files."""

import dataclasses
import math

import numpy as np
import pytest
import torch

from superposition import analysis, experiments, findings, starts
from superposition.findings.capacity import CONSTRUCTED_START, RANDOM, adler_shavit_room
from superposition.findings.scaling import LINEAR, MEASURES, MIXED, RELU, VARIANTS, fit
from superposition.model import outputs, weighted_loss
from superposition.train import head

pytestmark = pytest.mark.claims
PRESENCE = "presence sum"


@pytest.fixture(scope="module")
def f(trained):
    for e in (*experiments.SCALING, *experiments.READOUT_VARIANTS, experiments.READOUT_PARENT):
        trained(e.name)
        trained(experiments.constructed(e).name)
    return findings.scaling()


def test_the_fit_recovers_a_known_power_law_and_refuses_zeros():
    widths = (2, 4, 8, 16)
    assert fit(widths, [3 * m**1.7 for m in widths]).exponent == pytest.approx(1.7)
    noisy = [3 * m**1.7 * e for m, e in zip(widths, (1.1, 0.9, 1.05, 0.97), strict=True)]
    assert fit(widths, noisy).exponent == pytest.approx(
        np.polyfit(np.log(widths), np.log(noisy), 1)[0]
    )
    assert fit(widths, [0, 1, 2, 3]) == type(fit(widths, [0, 1, 2, 3]))(None, (2,))


def test_the_grid_is_n_400_widths_spanning_8x_the_two_sparsest_p_with_constructed_starts(f):
    """'n = 400 features of equal importance, m = 2, 4, 8 and 16 neurons (a span of 8x),
    at the two sparsest p of the book, each with 3 random starts ... and the two
    constructed starts'."""
    assert f.n == 400 and f.widths == (2, 4, 8, 16) and f.widths[-1] / f.widths[0] >= 8
    assert f.probs == experiments.SPARSITY_SWEEP.feature_probs[-2:] and len(f.seeds) >= 3
    for e in experiments.SCALING:
        assert e.importance_decay == 1.0 and e.steps == experiments.SPARSITY_SWEEP.steps
    for c in f.cells.values():
        starts_ = [s.candidate.start for s in c.models]
        assert starts_ == [RANDOM] * 3 + [CONSTRUCTED_START[0], CONSTRUCTED_START[1]]


def test_each_cell_reports_the_lowest_loss_in_the_weight_files(f, trained):
    """'Each cell reports its best model found, the lowest loss of the five', re-derived from
    the files, and its measures re-derived from that instance's weights."""
    for (m, p), c in f.cells.items():
        e = next(x for x in experiments.SCALING if x.n_hidden == m)
        w, k = trained(e.name), trained(experiments.constructed(e).name)
        pool = [w.final_loss[i] for i in w.instances_at(p)]
        pool += [k.final_loss[i] for i in k.instances_at(p)]
        assert c.reported.candidate.loss == min(pool) and len(pool) == 5
    c = f.cell(8, 0.001)
    src = trained(c.reported.candidate.experiment)
    i = c.reported.candidate.instance
    fve = analysis.explained_variance(src.W1[i : i + 1], src.W2[i : i + 1], src.b[i : i + 1],
                                      [0.001])  # fmt: skip
    assert c.reported.value(PRESENCE) == pytest.approx(float(fve.presence.sum()))


def test_nothing_is_computed_whole_at_any_width(f):
    """'No model in the grid, random or constructed, computes a single feature to 0.8 on
    both sides, and no output follows even one side of |x_i| to 0.9 (sides computed: 0);
    the best single side of any output explains B ... The counts have no exponent to fit:
    they are 0 at every width.'"""
    for c in f.cells.values():
        for s in c.models:
            assert s.values[: len(MEASURES) - 1] == (0.0,) * (len(MEASURES) - 1)
    assert f.best_side < analysis.FVE_COMPUTED
    for p in f.probs:
        for measure in MEASURES[:-1]:
            assert f.fit(measure, p).exponent is None


def test_the_variance_explained_grows_faster_than_the_width_and_bends(f):
    """'What grows is the variance explained'; 'k = E (seeds alone: L to H)', above the
    monosemantic solution's 1; 'between consecutive widths the slope is ..., falling as the
    width grows'."""
    for p in f.probs:
        series = f.series(PRESENCE, p)
        assert all(a < b for a, b in zip(series, series[1:], strict=False))
        assert all(v > m / 2 for v, m in zip(series, f.widths, strict=False))  # above monosemantic
        assert f.fit(PRESENCE, p).exponent > 1.5
        seeds = f.seed_exponents(PRESENCE, p)
        assert len(seeds) == len(f.seeds) and min(seeds) > 1.5
        local = f.local_exponents(PRESENCE, p)
        assert local[0] > local[-1] + 0.5 and local[-1] < f.fit(PRESENCE, p).exponent
        direct = [math.log(b / a) / math.log(2) for a, b in zip(series, series[1:], strict=False)]
        assert local == pytest.approx(direct)  # the widths double


def test_one_cell_s_best_model_is_a_continuation_and_its_last_step_is_below_1(f):
    """'the last step ... adds less than proportionally (a slope below the monosemantic
    solution's 1), and it rests on the one cell ... whose best model came from a
    constructed start (the continuation ...: P features' worth where the random starts
    carry L to H)'."""
    (won,) = f.constructed_wins()
    assert won.m == f.widths[-1] and won.reported.candidate.start == CONSTRUCTED_START[1]
    assert f.local_exponents(PRESENCE, won.p)[-1] < 1
    randoms = [won.seed(s).value(PRESENCE) for s in f.seeds]
    assert won.reported.value(PRESENCE) > max(randoms)


def test_features_do_not_run_short(f):
    """'The largest model carries X features' worth, below n/2'."""
    assert f.largest_presence < f.n / 2


def test_the_adler_shavit_scale_and_its_slope(f):
    """'at our widths its scale with constant 1 is ... features, a fitted slope of S'."""
    assert f.adler_shavit == [adler_shavit_room(m) for m in f.widths]
    for m, room in zip(f.widths, f.adler_shavit, strict=False):
        assert math.sqrt(room * math.log(room)) <= m < math.sqrt((room + 1) * math.log(room + 1))
    assert 1 < f.adler_shavit_exponent < 2
    # 'a variance explained above the Adler-Shavit scale (from m = W on)'
    first = f.widths.index(f.passes_adler_shavit_from)
    for i, room in enumerate(f.adler_shavit):
        above = all(f.series(PRESENCE, p)[i] > room for p in f.probs)
        assert above == (i >= first)


def test_the_variants_are_e10_on_the_same_batches_and_starts(f):
    """'The same small grid, E10 ..., trained four ways on the same batches from the same
    starting weights'; '(d) the same with sigma = 0, which is (a) itself'."""
    E10 = experiments.READOUT_PARENT
    linear, mixed = experiments.READOUT_VARIANTS
    assert E10.label == "E10" and f.readout_probs == E10.feature_probs[-3:]
    for v in (linear, mixed):
        assert (v.n_features, v.n_hidden, v.seeds, v.data_seed, v.steps, v.lr) == (
            E10.n_features, E10.n_hidden, E10.seeds, E10.data_seed, E10.steps, E10.lr
        )  # fmt: skip
    assert linear.readout == "linear" and linear.mixing == 0
    assert mixed.readout == "relu" and mixed.mixing == f.mixing_sigma == 0.02
    d = dataclasses.replace(mixed, name="d", mixing=0.0)
    assert d.model_kind()[:2] == E10.model_kind()[:2] and head(d, torch.device("cpu")) is None


def test_each_baseline_is_the_monosemantic_model_on_the_instance_s_own_inputs(f, trained):
    """'Each is compared with its own monosemantic solution ... both losses are measured on
    the same evaluation inputs', re-derived for one instance of each variant by drawing its
    evaluation batch and computing the loss in plain torch; for (a) and (b) it agrees with
    the closed form 95 (p/3 - p^2/4) to within the batch's sampling noise."""
    from superposition.data import counter_sample, mixing_matrix, stream_keys

    p = f.readout_probs[-1]
    for v in VARIANTS:
        c = f.readout_cell(v, p)
        cand = c.candidates[0]
        e = experiments.get(cand.experiment)
        k = cand.instance
        keys = stream_keys(e.eval_seed, [e.instance_seeds[k]], [p])
        M = mixing_matrix(e.n_features, e.mixing, e.mixing_seed)
        W1, W2, b = starts.monosemantic(e.importance(), e.n_hidden, p, M)
        total = 0.0
        for chunk in range(e.eval_batch_size // 4096):
            x = counter_sample(4096, torch.tensor([p]), e.n_features, keys,
                               torch.tensor(chunk))  # fmt: skip
            y = outputs(W1[None], W2[None], b[None], x, e.readout)
            total += float(weighted_loss(y, x, torch.ones(e.n_features), M)) * 4096
        assert c.baselines[0] == pytest.approx(total / e.eval_batch_size, rel=1e-5)
        if v != MIXED:
            assert c.baselines[0] == pytest.approx(95 * (p / 3 - p * p / 4), rel=0.05)


def test_the_relu_readout_beats_its_baseline_and_the_linear_readout_almost_does_not(f):
    """'With the ReLU readout, E10 beats its monosemantic solution more the sparser the
    inputs: A1, A2 and A3 times'; 'With a linear readout ... almost nothing: B1, B2, B3'."""
    relu = [f.readout_cell(RELU, p).ratio for p in f.readout_probs]
    linear = [f.readout_cell(LINEAR, p).ratio for p in f.readout_probs]
    assert relu[0] > relu[1] > relu[2] and max(relu) < 0.8
    assert all(0.95 < r < 1 for r in linear)
    for p in f.readout_probs:  # every random start too, not only the best
        assert max(f.readout_cell(RELU, p).random_ratios) < min(
            f.readout_cell(LINEAR, p).random_ratios
        )
    # 'at p = 0.03 and 0.1, E10 itself is only ... times its monosemantic loss'
    assert min(relu) < f.readout_cell(RELU, 0.03).ratio < f.readout_cell(RELU, 0.1).ratio


def test_the_relu_readout_s_biases_are_negative_and_the_linear_readout_s_near_the_mean(f):
    """'Under the ReLU readout, X of the outputs have a negative bias ... A linear readout
    ...: its biases sit near the mean of |x_i| (Y negative, median Z)'."""
    for p in f.readout_probs:
        relu, linear = f.readout_cell(RELU, p), f.readout_cell(LINEAR, p)
        assert relu.negative_bias > 0.85 and relu.median_bias < 0
        assert linear.negative_bias < 0.1 and 0 < linear.median_bias < p
        assert relu.negative_bias == sum(b < 0 for b in relu.reported_bias) / 100


def test_mixing_neither_creates_nor_adds_to_the_advantage(f):
    """'With labels |x| + Mx ..., E10 beats its own monosemantic solution by about as much'."""
    for p in f.readout_probs:
        mixed, relu = f.readout_cell(MIXED, p).ratio, f.readout_cell(RELU, p).ratio
        assert mixed < 0.8 and abs(mixed - relu) < 0.05 and mixed >= relu - 0.005


def test_the_loss_per_feature_over_p(f):
    """The right panel: L / (n p) of the reported model and of its baseline."""
    c = f.readout_cell(RELU, 0.001)
    assert c.per_feature == pytest.approx(c.reported.loss / (100 * 0.001))
    # the monosemantic solution's is flat in p: (1 - 5/100) (1/3 - p/4), about 0.317
    for p in f.readout_probs:
        assert f.readout_cell(LINEAR, p).baseline_per_feature == pytest.approx(
            0.95 * (1 / 3 - p / 4), rel=0.05
        )
