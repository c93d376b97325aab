"""Each sentence of the scaling chapter (book/scaling.md), on the fields it glues
(findings.scaling), with the cells and baselines re-derived from the weight files."""

import math

import numpy as np
import pytest
import torch

from superposition import analysis, experiments, findings, starts
from superposition.findings.capacity import CONSTRUCTED_START, RANDOM, adler_shavit_room
from superposition.findings.scaling import LINEAR, MEASURES, MIXED, RELU, VARIANTS, fit
from superposition.model import outputs, weighted_loss

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
    both sides, and no output follows even one side of |x_i| to 0.8 ... The counts have no
    exponent to fit: they are 0 at every width.'"""
    for c in f.cells.values():
        for s in c.models:
            assert s.values[: len(MEASURES) - 1] == (0.0,) * (len(MEASURES) - 1)
    assert f.best_side < analysis.FVE_THRESHOLDS[0]
    for p in f.probs:
        for measure in MEASURES[:-1]:
            assert f.fit(measure, p).exponent is None


def test_the_variance_explained_grows_faster_than_the_width_and_bends(f):
    """'What grows is the variance explained'; 'k = E (seeds alone: L to H)', above the
    monosemantic solution's 1; 'between consecutive widths the slope is ..., falling as the
    width grows'."""
    for p in f.probs:
        series = f.series(PRESENCE, p)
        assert all(a < b for a, b in zip(series, series[1:]))
        assert all(v > m / 2 for v, m in zip(series, f.widths))  # above monosemantic
        assert f.fit(PRESENCE, p).exponent > 1.5
        seeds = f.seed_exponents(PRESENCE, p)
        assert len(seeds) == len(f.seeds) and min(seeds) > 1.5
        local = f.local_exponents(PRESENCE, p)
        assert local[0] > local[-1] + 0.5 and local[-1] < f.fit(PRESENCE, p).exponent
        direct = [math.log(b / a) / math.log(2) for a, b in zip(series, series[1:])]
        assert local == pytest.approx(direct)  # the widths double


def test_features_do_not_run_short(f):
    """'The largest model carries X features' worth, below n/2'."""
    assert f.largest_presence < f.n / 2


def test_the_adler_shavit_scale_and_its_slope(f):
    """'at our widths its scale with constant 1 is ... features, a fitted slope of S'."""
    assert f.adler_shavit == [adler_shavit_room(m) for m in f.widths]
    for m, room in zip(f.widths, f.adler_shavit):
        assert math.sqrt(room * math.log(room)) <= m < math.sqrt((room + 1) * math.log(room + 1))
    assert 1 < f.adler_shavit_exponent < 2
