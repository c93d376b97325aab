"""Measures on hand-built weights with known answers."""

import pytest
import torch

from superposition import analysis
from superposition.model import AbsModel


def abs_model(n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The textbook solution: neuron i reads x_i, neuron n+i reads -x_i; output i sums them."""
    W1 = torch.cat([torch.eye(n), -torch.eye(n)])[None]
    W2 = torch.cat([torch.eye(n), torch.eye(n)], dim=1)[None]
    return W1, W2, torch.zeros(1, n)


def test_rescaling_leaves_the_function_unchanged():
    model = AbsModel.initialise(20, 8, seeds=[0, 1], device=torch.device("cpu"))
    W1, W2 = model.W1.detach().double(), model.W2.detach().double()
    b = torch.randn(2, 20, dtype=torch.float64)
    R1, R2 = analysis.rescale(W1, W2)
    assert torch.allclose(R1.abs().amax(-1), torch.ones(2, 8, dtype=torch.float64))
    x = torch.rand(2, 500, 20, dtype=torch.float64) * 2 - 1
    before = AbsModel(W1, W2, b)(x)
    after = AbsModel(R1, R2, b)(x)
    torch.testing.assert_close(after, before, rtol=1e-12, atol=1e-12)


def test_rescaling_keeps_a_zero_neuron():
    W1 = torch.tensor([[[0.0, 0.0], [2.0, -4.0]]])
    W2 = torch.tensor([[[1.0, 1.0], [1.0, 1.0]]])
    R1, R2 = analysis.rescale(W1, W2)
    assert R1[0, 0].tolist() == [0.0, 0.0] and R1[0, 1].tolist() == [0.5, -1.0]
    assert R2[0, :, 1].tolist() == [4.0, 4.0]


def test_effective_features():
    W1 = torch.tensor([[[1.0, 0, 0, 0], [0, -3.0, 0, 0], [1, 1, 0, 0], [1, 1, 1, 1], [0, 0, 0, 0]]])
    eff = analysis.effective_features(W1)[0]
    assert eff.tolist() == pytest.approx([1, 1, 2, 4, 0])
    permuted = W1[:, torch.randperm(5)][:, :, torch.randperm(4)]
    assert sorted(analysis.effective_features(permuted)[0].tolist()) == pytest.approx(
        [0, 1, 1, 2, 4]
    )


def test_textbook_solution_computes_every_feature():
    W1, W2, b = abs_model(4)
    assert analysis.features_computed(W1, W2, b).tolist() == [4]


def test_one_sided_and_ignored_features_are_not_computed():
    W1, W2, b = abs_model(3)
    W2[0, 1, 4] = 0  # output 1 loses its negative side
    W2[0, 2, 2] = W2[0, 2, 5] = 0  # output 2 is ignored ...
    b[0, 2] = 0.5  # ... and outputs the best constant instead
    sides = analysis.computed_sides(W1, W2, b)[0]
    assert sides.tolist() == [[True, True], [False, True], [False, False]]
    assert analysis.features_computed(W1, W2, b).tolist() == [1]


def test_duplicate_neurons_are_counted_once():
    W1, W2, b = abs_model(2)
    assert analysis.duplicate_neurons(W1, W2).tolist() == [0]
    W1 = torch.cat(
        [W1, 2 * W1[:, :1]], dim=1
    )  # a fifth neuron repeating neuron 0 at twice the scale
    W2 = torch.cat([W2, 0.5 * W2[:, :, :1]], dim=2)
    assert analysis.duplicate_neurons(W1, W2).tolist() == [1]


def test_dead_outputs():
    W1, W2, b = abs_model(3)
    assert analysis.dead_outputs(W1, W2, b).tolist() == [[False, False, False]]
    W2[0, 1] = -W2[0, 1].abs()  # output 1 only ever receives negative input ...
    b[0, 1] = -0.01  # ... and a negative bias: nothing switches it on
    assert analysis.dead_outputs(W1, W2, b).tolist() == [[False, True, False]]
    b[0, 1] = 0.2  # a positive bias keeps it alive (it outputs a constant)
    assert analysis.dead_outputs(W1, W2, b).tolist() == [[False, False, False]]


def test_monosemantic_loss_matches_a_simulation():
    importance = 0.8 ** torch.arange(10.0)
    W1, W2, b = abs_model(10)
    W1, W2 = W1[:, [0, 1, 2, 10, 11, 12]], W2[:, :, [0, 1, 2, 10, 11, 12]]  # features 0-2 only
    p = 0.3
    b[0, 3:] = p / 2
    g = torch.Generator().manual_seed(0)
    x = (torch.rand(1, 200_000, 10, generator=g) * 2 - 1) * (
        torch.rand(1, 200_000, 10, generator=g) < p
    )
    from superposition.model import weighted_loss

    simulated = weighted_loss(AbsModel(W1, W2, b)(x), x, importance).item()
    assert simulated == pytest.approx(analysis.monosemantic_loss(importance, p, 3), rel=0.02)


def test_superposition_measure():
    W1, _, _ = abs_model(3)  # every feature has its own two neurons
    assert analysis.superposition(W1).tolist() == [[0.0, 0.0, 0.0]]
    shared = torch.tensor([[[1.0, 1.0, 0.0], [0.0, 0.0, 2.0]]])  # features 0, 1 share neuron 0
    assert analysis.superposition(shared)[0].tolist() == pytest.approx([1.0, 1.0, 0.0])
    half = torch.tensor([[[1.0, 0.5]]])  # one neuron, unequal weights
    assert analysis.superposition(half)[0].tolist() == pytest.approx([0.25, 1.0])
    assert analysis.superposition(torch.zeros(1, 2, 2))[0].tolist() == [0.0, 0.0]
    perm = torch.randperm(3)
    permuted = analysis.superposition(shared[:, :, perm])[0]
    assert permuted.tolist() == pytest.approx(analysis.superposition(shared)[0][perm].tolist())


def test_neuron_order_sorts_by_largest_feature_and_puts_dead_last():
    W1 = torch.tensor([[0.0, 0.0, 1.0], [0.0, 0.0, 0.0], [1.0, 0.2, 0.0], [-1.0, 0.0, 0.0]])
    W2 = torch.ones(3, 4)
    assert analysis.neuron_order(W1, W2) == [2, 3, 0, 1]


def hand_built_motif(inhibition: float = -5.0):
    """Features 0 (strong) and 1 (weak). Neuron 0 carries x0+ (weight 1) and x1- (weight
    -0.25) with reciprocal output weights 1 and 4, so x0 leaks into output 1 at 4 per unit;
    neuron 1 fires on x0+ and inhibits output 1; neurons 2, 3 are the remaining sides."""
    W1 = torch.tensor([[[1.0, -0.25], [1.0, 0.0], [-1.0, 0.0], [0.0, 1.0]]])
    W2 = torch.tensor([[[1.0, 0.0, 1.0, 0.0], [4.0, inhibition, 0.0, 1.0]]])
    return W1, W2, torch.zeros(1, 2)


def test_hand_built_motif_is_found_and_confirmed():
    W1, W2, b = hand_built_motif()
    assert analysis.features_computed(W1, W2, b).tolist() == [2]
    (motif,) = analysis.find_motifs(W1, W2, b)
    assert (motif.carrier, motif.inhibitor, motif.strong, motif.weak, motif.side) == (0, 1, 0, 1, 1)
    assert motif.ratio == pytest.approx(0.25)
    assert motif.interference == pytest.approx(4.0) and motif.inhibition == pytest.approx(5.0)
    assert motif.reverse_interference == pytest.approx(0.25)
    assert motif.error_with == 0 and motif.error_without == pytest.approx(4.0)


def test_no_motif_without_enough_inhibition_or_in_plain_models():
    assert analysis.find_motifs(*hand_built_motif(inhibition=-3.0)) == []  # leak not cancelled
    assert analysis.find_motifs(*abs_model(4)) == []
    W1, W2, b = hand_built_motif()
    W2[0, 1, 0] = 1.0  # output weights no longer reciprocal: plain superposition
    assert analysis.find_motifs(W1, W2, b) == []
    permuted = torch.tensor([1, 0])  # the same motif with the features swapped is still found
    W1, W2, b = hand_built_motif()
    (motif,) = analysis.find_motifs(W1[:, :, permuted], W2[:, permuted], b)
    assert (motif.strong, motif.weak) == (1, 0)


# --- Explained variance, on hand-built models -------------------------------------------


def _abs_model(n: int, computed: dict[int, str], p: float):
    """A model that computes feature i on the sides named in `computed` ("both", "positive"
    or "negative") with exact ReLU neurons, and outputs the best constant p/2 elsewhere."""
    rows = []
    for i, sides in computed.items():
        if sides in ("both", "positive"):
            rows.append((i, 1.0))
        if sides in ("both", "negative"):
            rows.append((i, -1.0))
    W1 = torch.zeros(1, len(rows), n)
    W2 = torch.zeros(1, n, len(rows))
    for j, (i, sign) in enumerate(rows):
        W1[0, j, i] = sign
        W2[0, i, j] = 1.0
    b = torch.tensor([[0.0 if i in computed else p / 2 for i in range(n)]])
    return W1, W2, b


# The variance of |x_i| within a side, on the measure's points (the midpoints of eight equal
# strata of (0, 1)): (1/12)(1 - 1/8^2) = 63/768, by hand.
WITHIN = 63 / 768
# The mean of u^2 on the same points: 1/4 + WITHIN.
MEAN_SQUARE = 1 / 4 + WITHIN


@pytest.mark.parametrize("p", [1.0, 0.1, 0.001])
def test_explained_variance_of_exact_and_dropped_features(p):
    W1, W2, b = _abs_model(4, {0: "both", 2: "both"}, p)
    fve = analysis.explained_variance(W1, W2, b, [p])
    for side in (fve.negative, fve.positive, fve.presence):
        assert side[0, [0, 2]].tolist() == pytest.approx([1, 1], abs=1e-9)
    # A dropped feature's output is the constant p/2: no better than the mean overall, and
    # within a side worse than the side's own constant 1/2 by (1/2 - p/2)^2.
    assert fve.presence[0, [1, 3]].tolist() == pytest.approx([0, 0], abs=1e-9)
    within = -((1 / 2 - p / 2) ** 2) / WITHIN
    # (b holds p/2 in float32, hence the relative tolerance)
    assert fve.positive[0, [1, 3]].tolist() == pytest.approx([within, within], rel=1e-7)
    assert fve.computed()[0].tolist() == [True, False, True, False]
    assert fve.sides()[0].tolist() == [2, 0, 2, 0]


def test_explained_variance_of_a_one_sided_feature():
    p = 0.01
    W1, W2, b = _abs_model(2, {0: "positive"}, p)
    fve = analysis.explained_variance(W1, W2, b, [p])
    assert fve.positive[0, 0] == pytest.approx(1, abs=1e-9)
    # On the other side the output is 0 where |x| is u: error E[u^2] against the side's 1/12
    assert fve.negative[0, 0] == pytest.approx(1 - MEAN_SQUARE / WITHIN, abs=1e-9)
    assert fve.negative[0, 0] == pytest.approx(-192 / 63, abs=1e-9)
    assert not fve.computed()[0, 0]
    assert fve.sides()[0].tolist() == [1, 0]


def test_half_the_slope_with_the_best_offset_explains_three_quarters_on_each_side():
    """y' = |x_i|/2 + 1/4 misses |x_i| by (|x_i| - 1/2)/2: a quarter of the constant's error,
    so 0.75 on each side, at any threshold below that a feature it does not compute."""
    p = 0.01
    W1 = torch.tensor([[[1.0], [-1.0]]])
    W2 = torch.tensor([[[0.5, 0.5]]])
    b = torch.tensor([[0.25]])
    fve = analysis.explained_variance(W1, W2, b, [p])
    assert fve.negative[0, 0] == pytest.approx(0.75, abs=1e-12)
    assert fve.positive[0, 0] == pytest.approx(0.75, abs=1e-12)
    assert [bool(fve.computed(t)[0, 0]) for t in analysis.FVE_THRESHOLDS] == [False] * 3
    assert bool(fve.computed(0.75)[0, 0])


def test_an_output_that_only_detects_presence_explains_nothing_within_a_side():
    """An output of 1/2 whenever x_i is present and 0 otherwise: the side's own constant, so
    0 on each side; the presence measure still credits it with about 3/4 at small p."""
    p = 0.001
    zero = torch.zeros(1, dtype=torch.float64)
    within = torch.full((1,), WITHIN, dtype=torch.float64)
    fve = analysis.scores_from_errors(zero, within, within, p)
    assert float(fve.negative[0]) == pytest.approx(0, abs=1e-12)
    assert float(fve.positive[0]) == pytest.approx(0, abs=1e-12)
    # Var|x_i| = (1 - p)(p/2)^2 + p E[(u - p/2)^2], and the output errs by WITHIN when present
    var = (1 - p) * (p / 2) ** 2 + p * (MEAN_SQUARE - p / 2 + p * p / 4)
    assert float(fve.presence[0]) == pytest.approx(1 - p * WITHIN / var, abs=1e-12)
    assert 0.74 < float(fve.presence[0]) < 0.76


def test_a_model_is_scored_on_rows_of_its_own():
    """The same model scores the same, alone or beside any other models."""
    g = torch.Generator().manual_seed(3)
    W1 = torch.randn(3, 6, 12, generator=g)
    W2 = torch.randn(3, 12, 6, generator=g)
    b = torch.rand(3, 12, generator=g) * 0.1
    probs = [0.05, 0.05, 0.2]
    together = analysis.explained_variance(W1, W2, b, probs)
    for k in range(3):
        alone = analysis.explained_variance(
            W1[k : k + 1], W2[k : k + 1], b[k : k + 1], probs[k : k + 1]
        )
        torch.testing.assert_close(alone.positive[0], together.positive[k], rtol=0, atol=0)
        torch.testing.assert_close(alone.presence[0], together.presence[k], rtol=0, atol=0)


def test_the_worst_error_of_exact_and_interfering_features():
    """The exact model errs nowhere, with any number of others active; two features that
    share one neuron err by exactly the other's |x| when both are positive (largest: 1)."""
    W1, W2, b = abs_model(5)
    for others in (0, 1, 2):
        assert float(analysis.worst_error(W1, W2, b, others).abs().max()) == pytest.approx(
            0, abs=1e-12
        )
    W1 = torch.tensor([[[1.0, 1.0, 0.0]]])
    W2 = torch.tensor([[[1.0], [1.0], [0.0]]])
    b = torch.zeros(1, 3)
    alone = analysis.worst_error(W1, W2, b, 0)[0]
    # alone: feature 0 is computed on its positive side and 0 on the other, so it misses by 1
    assert alone.tolist() == pytest.approx([1.0, 1.0, 1.0], abs=1e-12)
    with_one = analysis.worst_error(W1, W2, b, 1)[0]
    assert with_one[0] == pytest.approx(1.0, abs=0.02)  # the other feature adds up to its |x|


def test_interference_lowers_the_explained_variance():
    """Two features on one neuron, read with weight 1 each: each output picks up the other
    feature whenever both are present, so dense inputs hurt far more than sparse ones."""
    W1 = torch.tensor([[[1.0, 1.0]]])
    W2 = torch.tensor([[[1.0], [1.0]]])
    b = torch.zeros(1, 2)
    dense = analysis.explained_variance(W1, W2, b, [1.0]).positive[0, 0]
    sparse = analysis.explained_variance(W1, W2, b, [0.01]).positive[0, 0]
    assert sparse > 0.9 > dense


def test_errors_with_a_feature_set_match_the_model_run_row_by_row():
    """The fused (compiled) error sums, and the eager ones, against the model itself run on
    every row with x_i replaced by v, for every feature i and value v (empty rows included)."""
    g = torch.Generator().manual_seed(0)
    m, n, rows = 5, 7, 40
    W1 = torch.randn(m, n, generator=g, dtype=torch.float64)
    W2 = torch.randn(n, m, generator=g, dtype=torch.float64)
    b = torch.randn(n, generator=g, dtype=torch.float64) * 0.3
    x = torch.where(torch.rand(rows, n, generator=g) < 0.2, torch.rand(rows, n, generator=g), 0.0)
    x = x.double()
    assert 0 < int((x == 0).all(-1).sum()) < rows  # some rows empty, some not
    values = torch.tensor([0.0, -0.75, -0.25, 0.25, 0.75], dtype=torch.float64)
    expected = torch.empty(len(values), n, dtype=torch.float64)
    for a, v in enumerate(values):
        for i in range(n):
            xv = x.clone()
            xv[:, i] = v
            y = AbsModel(W1[None], W2[None], b[None])(xv[None])[0, :, i]
            expected[a, i] = ((y - v.abs()) ** 2).mean()
    fused = analysis._errors_with_feature_set(W1, W2, b, x, values)
    assert analysis._busy_error_sums.compiled  # this machine has a compiler: the fast path ran
    torch.testing.assert_close(fused, expected, rtol=1e-12, atol=1e-14)
    busy = x[(x != 0).any(-1)]
    args = (busy @ W1.T, busy, W1.T.contiguous(), W2, b, values)
    torch.testing.assert_close(
        analysis._busy_error_sums.eager(*args), analysis._busy_error_sums(*args), rtol=1e-12, atol=0
    )
