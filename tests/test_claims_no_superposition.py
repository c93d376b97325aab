"""Claims of the chapter on experiment A (book/no_superposition.md), on the fields it glues.
(That every seed learns one neuron per side of each feature, and computes |x|, is in
tests/test_claims_engine.py.)"""

import re
from pathlib import Path

import pytest

from superposition import findings

pytestmark = pytest.mark.claims
CHAPTER = Path(__file__).resolve().parents[1] / "book" / "no_superposition.md"


@pytest.fixture(scope="module")
def f(trained):
    trained("no-superposition")
    return findings.no_superposition()


def test_the_setting_is_dense_equal_and_two_neurons_per_feature(f):
    assert f.p == 1.0 and f.equal_importance
    assert f.m == 2 * f.n  # "two neurons per feature are exactly enough"


def test_the_shown_model_is_the_lowest_loss_seed(f, trained):
    w = trained("no-superposition")
    assert f.instance == w.best(1.0)
    assert f.loss == min(w.final_loss)


def test_errors_and_biases_are_rounding_level(f):
    assert f.mean_error < 1e-3
    assert f.max_error < 1e-3  # over every seed and input
    assert f.max_bias < 1e-3
    assert f.single_feature_error < 1e-3  # "each output follows |x_i|"


def test_each_neuron_reads_one_feature_and_writes_it_back_positively(f):
    """The matrix and stack captions: weight +-1 on one feature, a positive weight to the
    same output, one rectangle per column; the graph caption: nothing else above its cut."""
    for u in f.neurons:
        assert abs(u.w1) == pytest.approx(1.0) and u.sign * u.w1 > 0
        assert u.w2 > 0
        assert u.largest_other_w1 < 0.01 * f.graph_threshold
        assert u.largest_other_w2 < 0.01 * f.graph_threshold
    assert f.largest_cross_weight < f.graph_threshold


def test_neurons_are_listed_by_feature_positive_side_first(f):
    assert [(u.feature, -u.sign) for u in f.neurons] == sorted(
        (u.feature, -u.sign) for u in f.neurons
    )
    assert f.order == tuple(u.index for u in f.neurons)


def test_the_graph_caption_states_the_threshold_the_figure_uses():
    text = CHAPTER.read_text()
    (stated,) = re.findall(r"one edge per weight larger than ([0-9.]+) in magnitude", text)
    assert float(stated) == findings.no_superposition().graph_threshold
    assert "threshold=f.graph_threshold" in text


def test_rescaling_changes_the_weights_but_not_the_function(f):
    assert f.scale_min < f.scale_max  # the raw neurons differ in scale: rescaling does something
    assert f.rescale_difference < 1e-10  # rounding error, in double precision
