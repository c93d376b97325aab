"""Measures on trained weights: pure functions of (W1, W2, b), no plotting, no files.

All functions take tensors with a leading instance axis (W1: [instances, m, n],
W2: [instances, n, m], b: [instances, n]) and work in float64 for exactness.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from .compiling import CompiledOrEager, compile_wanted
from .model import DEAD_FRACTION, neuron_effect

# A feature counts as computed (on one side) when, with only that feature present, its
# output stays within this distance of |x_i| everywhere on the side's grid. Outputs live
# in [0, 1], so 0.1 is a tenth of the full scale; a feature the model ignores sits near a
# constant and misses by about 0.5.
COMPUTED_TOLERANCE = 0.1


def rescale(W1: Tensor, W2: Tensor) -> tuple[Tensor, Tensor]:
    """SPEC's footnote-15 rescaling: every neuron's largest |W1| weight becomes 1.

    Row j of W1 is divided by a_j = max_k |W1[j, k]| and column j of W2 multiplied by it,
    which leaves ReLU(W2 ReLU(W1 x) + b) unchanged because ReLU(a z) = a ReLU(z) for a > 0.
    A neuron whose W1 row is all zero is left as it is.
    """
    scale = W1.abs().amax(dim=-1)  # [instances, m]
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    return W1 / scale[..., None], W2 * scale[:, None, :]


def effective_features(W1: Tensor) -> Tensor:  # [instances, m]
    """How many features a neuron reads: the participation ratio of its squared W1 weights.

    (sum_k w_k^2)^2 / sum_k w_k^4 is 1 for a neuron that reads one feature, 2 for one that
    reads two features equally, and k for k equal weights; it does not depend on the
    neuron's scale, so it is the same before and after `rescale`.
    """
    sq = W1.double() ** 2
    num = sq.sum(-1) ** 2
    den = (sq**2).sum(-1)
    return torch.where(den > 0, num / den.clamp_min(1e-300), torch.zeros_like(num))


def superposition(W1: Tensor) -> Tensor:  # [instances, n]
    """The paper's measure of how much feature i shares its neurons with other features:
    sum over j != i of (unit(W_i) . W_j)^2, with W_i the i-th column of W1 (the feature's
    direction in neuron space). 0 for a feature no other feature overlaps, and for a
    feature with no weight at all. Pass rescaled weights to measure what the figures show.
    """
    W = W1.double()  # [instances, m, n]
    norm = W.norm(dim=1, keepdim=True)  # [instances, 1, n]
    unit = W / norm.clamp_min(1e-300)
    dots = unit.transpose(1, 2) @ W  # [instances, n, n]: unit(W_i) . W_j
    dots = dots - torch.diag_embed(torch.diagonal(dots, dim1=1, dim2=2))
    return (dots**2).sum(-1)


def single_feature_response(
    W1: Tensor, W2: Tensor, b: Tensor, grid: Tensor
) -> Tensor:  # [instances, n, points]
    """Output i when feature i alone takes each value of `grid` and every other feature is 0."""
    W1, W2, b, grid = W1.double(), W2.double(), b.double(), grid.double()
    hidden = torch.relu(W1[..., None] * grid)  # [instances, m, n, points]
    return torch.relu(torch.einsum("inm,imnp->inp", W2, hidden) + b[..., None])


def computed_sides(
    W1: Tensor, W2: Tensor, b: Tensor, tolerance: float = COMPUTED_TOLERANCE, points: int = 101
) -> Tensor:  # [instances, n, 2] bool: (negative side, positive side)
    """Which side of |x_i| each output computes, judged on a grid over [-1, 1]."""
    grid = torch.linspace(-1.0, 1.0, points, dtype=torch.float64)
    error = (single_feature_response(W1, W2, b, grid) - grid.abs()).abs()
    negative = error[..., grid < 0].amax(-1) <= tolerance
    positive = error[..., grid > 0].amax(-1) <= tolerance
    return torch.stack([negative, positive], dim=-1)


def features_computed(W1: Tensor, W2: Tensor, b: Tensor) -> Tensor:  # [instances] int
    """Number of features whose output follows |x_i| on both sides."""
    return computed_sides(W1, W2, b).all(-1).sum(-1)


# A live neuron is polysemantic when it reads more than this many features (effective
# number, see `effective_features`): one secondary weight of about 0.23 of the primary,
# or several smaller ones, is enough.
POLYSEMANTIC_THRESHOLD = 1.1


def dead_neurons(W1: Tensor, W2: Tensor) -> Tensor:  # [instances, m] bool
    """Neurons whose `model.neuron_effect` is below `DEAD_FRACTION` of the model's largest."""
    effect = neuron_effect(W1.double(), W2.double())
    return effect < DEAD_FRACTION * effect.amax(-1, keepdim=True)


def polysemantic_neurons(W1: Tensor, W2: Tensor) -> Tensor:  # [instances, m] bool
    """Live neurons that read more than one feature (dead ones are neither mono nor poly)."""
    return ~dead_neurons(W1, W2) & (effective_features(W1) > POLYSEMANTIC_THRESHOLD)


def primary_features(W1: Tensor) -> tuple[Tensor, Tensor]:  # ([instances, m], [instances, m])
    """Each neuron's largest-|w| feature and the sign of that weight (+1 or -1)."""
    index = W1.abs().argmax(-1)
    sign = torch.sign(torch.gather(W1, -1, index[..., None]))[..., 0]
    return index, sign


# Two live neurons whose W1 rows agree to within this cosine count as duplicates.
DUPLICATE_COSINE = 0.99


def duplicate_neurons(W1: Tensor, W2: Tensor, cosine: float = DUPLICATE_COSINE) -> Tensor:
    """How many live neurons repeat another live neuron (W1 rows within `cosine`).

    Two such neurons compute the same ReLU up to scale, so one of them is wasted.
    """
    live = ~dead_neurons(W1, W2)
    unit = W1.double() / W1.double().norm(dim=-1, keepdim=True).clamp_min(1e-300)
    cos = unit @ unit.transpose(1, 2)  # [instances, m, m]
    pair = (cos > cosine) & live[:, :, None] & live[:, None, :]
    earlier = torch.ones_like(pair[0]).tril(-1).bool()  # count a neuron once, if an earlier one
    return (pair & earlier).any(-1).sum(-1)


def dead_outputs(W1: Tensor, W2: Tensor, b: Tensor) -> Tensor:  # [instances, n] bool
    """Outputs that no input with a single active feature can switch on.

    With feature k alone at value t in [-1, 1], output i's pre-activation is linear in |t|
    on each side, so it is largest at t = 0 (just b_i) or t = +-1. An output that stays at
    or below zero at all those points sits behind its ReLU with no gradient to leave.
    """
    W1, W2, b = W1.double(), W2.double(), b.double()
    ends = torch.tensor([-1.0, 1.0], dtype=torch.float64)
    hidden = torch.relu(W1[..., None] * ends)  # [instances, m, k, 2]
    pre = torch.einsum("inm,imkt->inkt", W2, hidden) + b[..., None, None]  # [inst, n, k, 2]
    return (b <= 0) & (pre.flatten(-2).amax(-1) <= 0)


def monosemantic_loss(importance: Tensor, p: float, computed: int) -> float:
    """Loss of the plain solution: the `computed` most important features exactly, the
    rest replaced by their best constant E|x_i| = p/2, which costs Var|x_i| = p/3 - p^2/4."""
    return float(importance[computed:].double().sum() * (p / 3 - p * p / 4))


def neuron_order(W1: Tensor, W2: Tensor) -> list[int]:
    """One instance's neurons (W1: [m, n]) sorted as in the paper's sweep figure: by the
    importance of their largest feature (feature 0 first), positive side first, then by
    how many features they read; dead neurons go last."""
    index, sign = primary_features(W1[None])
    eff = effective_features(W1[None])[0]
    dead = dead_neurons(W1[None], W2[None])[0]
    keys = zip(dead.tolist(), index[0].tolist(), (-sign[0]).tolist(), eff.tolist(), strict=True)
    return [j for _, j in sorted((key, j) for j, key in enumerate(keys))]


# --- The asymmetric superposition motif (SPEC, experiment C) -----------------------------

# A carrier neuron holds two features: its rescaled W1 row has weight 1 on the strong
# feature, a secondary weight between MOTIF_FLOOR and MOTIF_MAX_RATIO on the weak one, and
# every other weight at most MOTIF_THIRD times the secondary one.
MOTIF_MAX_RATIO = 0.5
MOTIF_FLOOR = 0.05
MOTIF_THIRD = 0.5
# Its two output weights are reciprocal: each feature's own side passes through the neuron
# with a gain within this factor of the other's (plain superposition would have W2 equal).
MOTIF_GAIN_FACTOR = 2.0
# Ablating the inhibitor must raise the weak output's largest error, with the strong feature
# alone on the carrier's side, by at least this much (outputs are on the scale of |x| <= 1).
MOTIF_MIN_ERROR_RISE = 0.05


@dataclass(frozen=True)
class Motif:
    """One asymmetric-superposition pair in one model (indices into the raw weights)."""

    instance: int
    carrier: int  # neuron that holds both features
    inhibitor: int  # neuron that switches the weak output off when the strong feature fires
    strong: int  # the feature that interferes strongly ...
    weak: int  # ... with this feature's output
    side: int  # +1 or -1: the sign of x_strong that activates the carrier
    ratio: float  # |secondary W1| / |primary W1| of the carrier
    interference: float  # weak output's input from the carrier, per unit |x_strong|
    reverse_interference: float  # strong output's input from the carrier, per unit |x_weak|
    inhibition: float  # weak output's negative input from the inhibitor, per unit |x_strong|
    error_with: float  # weak output's largest error, strong feature alone on its side
    error_without: float  # the same with the inhibitor's output weights set to zero


def weak_output_error(W1: Tensor, W2: Tensor, b: Tensor, strong: int, weak: int, side: int):
    """The weak output's largest value (its error: |x_weak| = 0) with the strong feature alone
    on `side`, over 20 points of (0.05, 1]. One instance: W1 [m, n], W2 [n, m], b [n]."""
    grid = side * torch.linspace(0.05, 1.0, 20, dtype=torch.float64)
    hidden = torch.relu(W1[:, strong, None] * grid)  # [m, points]
    out = torch.relu(W2[weak] @ hidden + b[weak])  # target |x_weak| = 0
    return float(out.abs().max())


def find_motifs(W1: Tensor, W2: Tensor, b: Tensor) -> list[Motif]:
    """Every asymmetric-superposition pair in every instance, confirmed by ablation."""
    R1, R2 = rescale(W1.double(), W2.double())
    b = b.double()
    dead = dead_neurons(W1, W2)
    found = []
    for k in range(R1.shape[0]):
        for a in (~dead[k]).nonzero().flatten().tolist():
            row = R1[k, a]
            size, index = row.abs().sort(descending=True)
            if size[1] < MOTIF_FLOOR or (len(size) > 2 and size[2] > MOTIF_THIRD * size[1]):
                continue
            strong, weak = int(index[0]), int(index[1])
            ratio = float(size[1] / size[0])
            gain_strong = float(R2[k, strong, a] * row[strong].abs())
            gain_weak = float(R2[k, weak, a] * row[weak].abs())
            if ratio > MOTIF_MAX_RATIO or gain_strong <= 0 or gain_weak <= 0:
                continue
            if not 1 / MOTIF_GAIN_FACTOR <= gain_weak / gain_strong <= MOTIF_GAIN_FACTOR:
                continue
            side = int(torch.sign(row[strong]))
            interference = float(R2[k, weak, a] * row[strong].abs())
            with_all = weak_output_error(R1[k], R2[k], b[k], strong, weak, side)
            for c in (~dead[k]).nonzero().flatten().tolist():
                inhibition = float(-R2[k, weak, c] * torch.relu(side * R1[k, c, strong]))
                if c == a or inhibition < interference:
                    continue
                ablated = R2[k].clone()
                ablated[:, c] = 0
                without = weak_output_error(R1[k], ablated, b[k], strong, weak, side)
                if without - with_all < MOTIF_MIN_ERROR_RISE:
                    continue
                found.append(Motif(
                    instance=k, carrier=a, inhibitor=c, strong=strong, weak=weak, side=side,
                    ratio=ratio, interference=interference,
                    reverse_interference=float(R2[k, strong, a] * row[weak].abs()),
                    inhibition=inhibition, error_with=with_all, error_without=without,
                ))  # fmt: skip
    return found


# --- What each output computes, under the model's own input distribution -----------------

# A feature counts as computed when its output explains at least this fraction of the
# within-side variance of |x_i| on both sides (see `explained_variance`). Sentences use the
# middle one; tables and figures show all three, since many models compute features in part.
FVE_THRESHOLDS = (0.8, 0.9, 0.95)
FVE_COMPUTED = FVE_THRESHOLDS[1]
# Background inputs per estimate: every feature's conditional errors are averaged over the
# same rows of the other features, enough rows that about FVE_BUSY_ROWS of them hold some
# feature (the empty ones cost nothing: they are computed once). Each model draws its own
# rows from the seed alone, so its score never depends on which other models are scored
# with it; the findings repeat the estimate with FVE_NOISE_SEEDS to give the measure's noise.
FVE_BUSY_ROWS = 4096
FVE_POINTS = 8  # values of x_i per side: midpoints of equal strata of (0, 1)
FVE_SEED = 2022
FVE_NOISE_SEEDS = (2022, 2023, 2024)


@dataclass(frozen=True)
class ExplainedVariance:
    """Per instance and feature, what output i explains of |x_i| under the model's own input
    distribution (every feature present with its p).

    `negative` and `positive` are the *within-side* measure: the fraction of the variance of
    |x_i| given x_i on that side (1/12 for a uniform magnitude) that the output explains, the
    baseline being the best constant given the side (1/2). 1 is exact; 0 is no better than
    knowing only that x_i is present on that side; below 0 is worse than that constant.

    `presence` is the looser overall measure: the fraction of Var|x_i| (presence included)
    explained, against the constant E|x_i| = p/2. At small p it credits an output for
    detecting that x_i is present at all: an output of 1/2 whenever x_i is present scores
    about 0.75 on it and 0 on both sides."""

    presence: Tensor  # [instances, n]
    negative: Tensor  # [instances, n]: within-side, given x_i < 0
    positive: Tensor  # [instances, n]: within-side, given x_i > 0

    def sides(self, threshold: float = FVE_COMPUTED) -> Tensor:  # [instances, n] 0, 1 or 2
        """How many sides of |x_i| each output computes (at least `threshold` each)."""
        return (self.negative >= threshold).long() + (self.positive >= threshold).long()

    def computed(self, threshold: float = FVE_COMPUTED) -> Tensor:  # [instances, n] bool
        """Features whose output follows |x_i| on both sides (at least `threshold` each)."""
        return self.sides(threshold) == 2


def scores_from_errors(e0: Tensor, e_neg: Tensor, e_pos: Tensor, p: float) -> ExplainedVariance:
    """`ExplainedVariance` of one instance ([1, n] each) from its mean squared errors: e0 with
    x_i = 0, e_neg and e_pos with x_i at the midpoints of FVE_POINTS equal strata of each side
    (averaged over those points). Every baseline is the constant's own error on the same
    points, so the best constant scores exactly 0 (on a fine grid: within a side 1/12, and
    Var|x_i| = p/3 - p^2/4)."""
    u = torch.tensor([(s + 0.5) / FVE_POINTS for s in range(FVE_POINTS)], dtype=torch.float64)
    within = float(((u - u.mean()) ** 2).mean())  # the constant 1/2's error given the side
    presence_var = (1 - p) * (p / 2) ** 2 + p * float(((u - p / 2) ** 2).mean())
    presence = 1 - ((1 - p) * e0 + p * (e_neg + e_pos) / 2) / presence_var
    return ExplainedVariance(presence=presence, negative=1 - e_neg / within,
                             positive=1 - e_pos / within)  # fmt: skip


def background_rows(p: float, n: int, busy_rows: int = FVE_BUSY_ROWS) -> int:
    """Rows to draw at feature probability p so that about `busy_rows` hold some feature."""
    return math.ceil(busy_rows / (1 - (1 - p) ** n))


def explained_variance(
    W1: Tensor,
    W2: Tensor,
    b: Tensor,
    probs: Sequence[float],
    busy_rows: int = FVE_BUSY_ROWS,
    seed: int = FVE_SEED,
) -> ExplainedVariance:
    """`ExplainedVariance` of each instance at its own feature probability `probs[k]`.

    For each feature i the error (y'_i - |x_i|)^2 is averaged over `background_rows` draws of
    the other features (from `seed` alone, for every instance), with x_i set to 0 and to the
    midpoints of FVE_POINTS equal strata of each side (stratified, so a rare feature is
    measured as precisely as a common one); `scores_from_errors` turns them into scores.
    """
    W1, W2, b = W1.double(), W2.double(), b.double()
    instances, _, n = W1.shape
    u = [(s + 0.5) / FVE_POINTS for s in range(FVE_POINTS)]
    values = torch.tensor([0.0, *(-v for v in u), *u], dtype=torch.float64)  # 0, side -, side +
    scores = []
    for k in range(instances):
        p = float(probs[k])
        rows = background_rows(p, n, busy_rows)
        g = torch.Generator().manual_seed(seed)
        present = torch.rand(rows, n, generator=g) < p
        x = torch.where(present, torch.rand(rows, n, generator=g) * 2 - 1, 0.0).double()
        errors = _errors_with_feature_set(W1[k], W2[k], b[k], x, values)  # [values, n]
        e_neg, e_pos = errors[1 : 1 + FVE_POINTS].mean(0), errors[1 + FVE_POINTS :].mean(0)
        scores.append(scores_from_errors(errors[0], e_neg, e_pos, p))
    return ExplainedVariance(*(torch.stack([getattr(s, f) for s in scores])
                               for f in ("presence", "negative", "positive")))  # fmt: skip


def _errors_with_feature_set(W1: Tensor, W2: Tensor, b: Tensor, x: Tensor, values: Tensor):
    """[values, n]: the mean over the rows of x of (y'_i - |v|)^2 with x_i set to v and the
    other features from x, for every feature i and value v at once (one model: W1 [m, n]).
    Rows with no feature present are all alike (at small p, most rows): they are computed
    once and weighted by their count."""
    W1T = W1.T.contiguous()  # [n, m]: the weights that read feature i
    # A row with no feature present: the hidden layer sees v W1[:, i] alone.
    empty = (torch.relu(values[:, None, None] * W1T) * W2).sum(-1)  # [values, n]
    empty = (torch.relu(empty + b) - values.abs()[:, None]) ** 2
    rows = x.shape[0]
    x = x[(x != 0).any(-1)]
    total = (rows - len(x)) * empty
    if len(x):
        total = total + _busy_error_sums(x @ W1.T, x, W1T, W2, b, values)
    return total / rows


def _without_feature(P: Tensor, x: Tensor, W1T: Tensor) -> Tensor:  # [n, rows, m]
    """The hidden pre-activations of rows x [rows, n] (P = x W1^T, [rows, m]) with feature i
    left out, for every feature i: P - x_i W1[:, i]."""
    return P[None] - x.T[:, :, None] * W1T[:, None, :]


def _error_sums(base: Tensor, W1T: Tensor, W2: Tensor, b: Tensor, values: Tensor) -> Tensor:
    """[values, n]: the sum over rows of (y'_i - |v|)^2 with x_i set to v, for every value v
    and feature i, from the pre-activations without it (`_without_feature`)."""
    pre = base[None] + values[:, None, None, None] * W1T[None, :, None, :]  # [v, n, rows, m]
    y = (torch.relu(pre) * W2[None, :, None, :]).sum(-1)  # [values, n, rows]
    return ((torch.relu(y + b[None, :, None]) - values.abs()[:, None, None]) ** 2).sum(-1)


def _busy_error_sums_fused(P: Tensor, x: Tensor, W1T: Tensor, W2: Tensor, b: Tensor, values):
    return _error_sums(_without_feature(P, x, W1T), W1T, W2, b, values)


def _eager_error_sums(P: Tensor, x: Tensor, W1T: Tensor, W2: Tensor, b: Tensor, values) -> Tensor:
    """`_busy_error_sums_fused` one value at a time, without a compiler."""
    base = _without_feature(P, x, W1T)
    return torch.cat([_error_sums(base, W1T, W2, b, v[None]) for v in values])


# `_error_sums` of every value at once, compiled into fused loops that never hold the
# [values, n, rows, m] pre-activations (about 10x faster than eager code on a dense model),
# or, when SUPERPOSITION_COMPILE=0 or compiling fails, eagerly one value at a time.
_busy_error_sums = CompiledOrEager(
    _busy_error_sums_fused,
    _eager_error_sums,
    dynamic=True,
    wanted=compile_wanted(torch.device("cpu")),
)


# --- The worst case: how far an output strays when a few other features are active --------

WORST_POINTS = 16  # values of |x_i| per side: 1/16, 2/16, ..., 1
WORST_ROWS = 256  # background rows per feature, each with exactly `others` other features


def worst_error(
    W1: Tensor, W2: Tensor, b: Tensor, others: int, rows: int = WORST_ROWS, seed: int = FVE_SEED
) -> Tensor:  # [instances, n]
    """Per instance and feature i, the largest |y'_i - |x_i|| with x_i present (at +-1/16,
    ..., +-1) and exactly `others` other features active: none (then exact), or `rows`
    background rows whose `others` features are drawn uniformly from the rest, with values
    uniform on [-1, 1], from `seed` alone. With others > 0 it is the largest error found in
    that sample, a lower bound on the true worst case."""
    W1, W2, b = W1.double(), W2.double(), b.double()
    instances, m, n = W1.shape
    grid = torch.linspace(1 / WORST_POINTS, 1, WORST_POINTS, dtype=torch.float64)
    values = torch.cat([-grid, grid])  # [V]
    g = torch.Generator().manual_seed(seed)
    if others == 0:
        background = torch.zeros(n, 1, n, dtype=torch.float64)  # [feature, rows, n]
    else:
        if others >= n:
            raise ValueError(f"others must be below n = {n}")
        picks = torch.rand(n, rows, n - 1, generator=g).argsort(-1)[..., :others]  # [n, R, k]
        picks = picks + (picks >= torch.arange(n)[:, None, None]).long()  # skip feature i
        background = torch.zeros(n, rows, n, dtype=torch.float64)
        vals = torch.rand(n, rows, others, generator=g, dtype=torch.float64) * 2 - 1
        background.scatter_(-1, picks, vals)
    worst = torch.empty(instances, n, dtype=torch.float64)
    for k in range(instances):
        base = background @ W1[k].T  # [n, R, m]: pre-activations of the other features
        pre = base[:, None] + values[None, :, None, None] * W1[k].T[:, None, None, :]  # [n,V,R,m]
        y = torch.relu((torch.relu(pre) * W2[k][:, None, None, :]).sum(-1) + b[k][:, None, None])
        worst[k] = (y - values.abs()[None, :, None]).abs().amax((-1, -2))
    return worst
