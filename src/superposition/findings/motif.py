"""Every fact the motif chapter (book/motif.md) states: experiment C's motifs, the motif of
the shown models of experiments C and B, and how often the detector fires.

    from superposition import findings
    f = findings.motif()                  # MotifFindings
    f.c_shown.motifs[0].leak_ratio         # the shown C model's strongest motif, leak / reverse

The motifs are `analysis.find_motifs`'s; this module only gathers, orders and measures them
on the cached weights (it trains nothing), so the chapter can glue and draw them.
"""

from __future__ import annotations

import dataclasses
import functools
import statistics
from dataclasses import dataclass
from math import nan

import torch
from torch import Tensor

from .. import analysis, experiments, stats, store

# The paper's example of a carrier neuron: input weights on the strong and the weak
# feature, and output weights to the strong and the weak feature's outputs.
PAPER_W1 = (2.0, -0.5)
PAPER_W2 = (0.5, 2.0)
# Points of the ablation curve, over x_strong in [-1, 1].
ABLATION_POINTS = 201
# The diagrams draw weights of at least this size (rescaled); a motif's neurons are said to
# read the other features they hold above it.
DRAWN = 0.05
# A pair the detector misses only because its inhibition falls short of the leak by less
# than this fraction is a near miss: find_motifs reports it once every negative output
# weight of the model is made this much stronger.
NEAR_MISS = 0.01


@dataclass(frozen=True)
class MotifFacts:
    """One motif `find_motifs` reports, with the rescaled weights the diagram writes on its
    edges (every neuron's largest |W1| weight is 1; indices are the raw model's)."""

    carrier: int
    inhibitor: int
    strong: int
    weak: int
    side: str  # "positive" or "negative": the side of x_strong on which the carrier fires
    ratio: float  # the carrier's |W1 weak| / |W1 strong|
    w1_strong: float  # W1[carrier, strong]
    w1_weak: float  # W1[carrier, weak]
    w2_strong: float  # W2[strong, carrier]
    w2_weak: float  # W2[weak, carrier]
    w1_inhibitor: float  # W1[inhibitor, strong]
    w2_inhibitor: float  # W2[weak, inhibitor]
    leak: float  # weak output's input from the carrier, per unit |x_strong|
    reverse_leak: float  # strong output's input from the carrier, per unit |x_weak|
    leak_ratio: float  # leak / reverse_leak
    inhibition: float  # weak output's negative input from the inhibitor, per unit |x_strong|
    error_with: float  # weak output's largest error, x_strong alone on the carrier's side
    error_without: float  # the same with the inhibitor's output weights set to 0
    inhibitor_main: int  # the inhibitor's largest-|W1| feature: its main job
    inhibitor_main_side: str  # "positive" or "negative": the side of it the inhibitor reads
    inhibitor_main_gain: float  # W2[main, inhibitor] * |W1[inhibitor, main]|: > 0 computes it
    carrier_reads_more: int  # other features the carrier reads (|W1| >= DRAWN), not drawn
    inhibitor_reads_more: int  # the same for the inhibitor (its main feature is drawn)

    @property
    def error_rise(self) -> float:
        return self.error_without - self.error_with

    @property
    def weak_gain(self) -> float:
        """The weak feature's own gain through the carrier, w2_weak * |w1_weak|."""
        return self.w2_weak * abs(self.w1_weak)

    @property
    def weak_side(self) -> str:
        """The side of the weak feature on which the carrier fires."""
        return _side(self.w1_weak)

    @property
    def excess(self) -> float:
        """How much the inhibition exceeds the leak, as a fraction of the leak (< 0: short)."""
        return self.inhibition / self.leak - 1

    @property
    def inhibitor_is_other_features_neuron(self) -> bool:
        """The inhibitor mainly computes one side of another feature (its own output)."""
        return self.inhibitor_main != self.strong and self.inhibitor_main_gain > 0


@dataclass(frozen=True)
class ShownModel:
    """The lowest-loss model of one setting, with every motif found in it, clearest first
    (largest rise of the weak output's error when the inhibitor is ablated)."""

    label: str  # "C" or "B", as the book names the experiment
    experiment: str  # its weight file's name
    p: float
    instance: int
    seed: int
    loss: float
    motifs: tuple[MotifFacts, ...]

    @property
    def motif(self) -> MotifFacts:
        return self.motifs[0]


@dataclass(frozen=True)
class Ablation:
    """The weak output of a motif as x_strong sweeps [-1, 1], every other feature 0, with
    the whole model and with the inhibitor's output weights set to 0."""

    x: Tensor  # [points]
    pre_whole: Tensor  # [points] weak output's pre-activation, whole model
    pre_ablated: Tensor  # [points] the same, inhibitor ablated
    out_whole: Tensor  # [points] ReLU of pre_whole: the model's output
    out_ablated: Tensor  # [points]
    pre_at_zero: float  # pre_whole at x_strong = 0: the weak output's bias
    pre_at_end: float  # pre_whole at x_strong = +1 or -1, on the carrier's side
    pre_max_on_side: float  # largest pre_whole on the carrier's side (x_strong != 0)
    out_max_ablated: float  # largest out_ablated


@dataclass(frozen=True)
class DetectorRow:
    """One row of the chapter's table: one sparsity of one experiment."""

    label: str
    experiment: str
    p: float
    seeds: int
    seeds_with: int  # seeds in which the detector finds at least one motif
    motifs: int  # motifs found, all seeds together
    in_best: bool  # whether the lowest-loss seed holds one
    two_feature_neurons: int  # neurons of the lowest-loss seed that pass the carrier's shape
    polysemantic: int  # polysemantic neurons of the lowest-loss seed


@dataclass(frozen=True)
class MotifFindings:
    # The paper's example carrier
    paper_leak: float  # strong feature into the weak output
    paper_reverse_leak: float
    paper_leak_ratio: float
    # The detector's thresholds (analysis.MOTIF_*)
    max_ratio: float
    floor: float
    third: float
    gain_factor: float
    min_rise: float
    # Experiment C
    c_n: int
    c_m: int
    c_capacity: int  # features that fit without superposition, m / 2
    c_p: float
    c_decay: float
    c_seeds: int
    c_with_motif: int  # seeds in which the detector fires
    c_loss_with: float  # median final loss of those seeds
    c_loss_without: float  # ... and of the others
    c_top: int  # = c_with_motif: how many of the lowest-loss seeds are counted
    c_top_with: int  # how many of those hold a motif
    c_shown: ShownModel  # the lowest-loss seed
    # Out of sample: setting C on fresh seeds that played no part in choosing it
    h_seeds: int
    h_with_motif: int  # of them, how many hold the motif
    h_loss_with: float  # median final loss of those seeds
    h_loss_without: float  # ... and of the others
    h_top_with: int  # how many of the h_with_motif lowest-loss seeds hold it
    h_p_value: float  # one-sided exact rank-sum test: motif seeds have the lower losses
    c_near_misses: tuple[MotifFacts, ...]  # its pairs that miss the detector by < NEAR_MISS
    near_miss: float  # NEAR_MISS
    c_motif_neurons: tuple[int, ...]  # carriers and inhibitors of both kinds, sorted
    c_ablation: Ablation | None  # of c_shown.motif (None if the shown model has none)
    # analysis.effective_features of c_shown.motif's carrier and inhibitor, and the threshold
    # above which analysis.polysemantic_neurons counts a live neuron as polysemantic
    c_carrier_features: float
    c_inhibitor_features: float
    polysemantic_threshold: float
    c_carrier_shaped: bool  # whether c_shown.motif's carrier is a carrier-shaped neuron
    c_computed_both: tuple[int, ...]  # features the shown model computes on both sides
    c_computed_one: tuple[tuple[int, str], ...]  # (feature, side) computed on one side only
    c_neurons: tuple[tuple[int, str], ...]  # per neuron of it: (largest feature, its sign)
    drawn: float  # DRAWN
    # How often the detector fires, experiment B then C
    detector: tuple[DetectorRow, ...]
    b_probs_with: tuple[float, ...]  # B's sparsities at which some seed holds a motif
    b_best_with: tuple[float, ...]  # B's sparsities whose lowest-loss seed holds one
    b_denser: tuple[DetectorRow, ...]  # B's rows denser than every sparsity with a motif
    b_sparser: tuple[DetectorRow, ...]  # B's rows sparser than every sparsity with a motif
    b_shown: ShownModel | None  # the B model shown: see `_pick_b`
    b_m: int  # neurons of experiment B's models
    b_models: int  # experiment B's models, all sparsities and seeds
    b_models_with: int  # of those, how many the detector finds a motif in


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def _side(sign: float) -> str:
    return "positive" if sign > 0 else "negative"


def _facts(R1: Tensor, R2: Tensor, m: analysis.Motif) -> MotifFacts:
    """`m` with its rescaled weights (R1: [m, n], R2: [n, m] of its instance)."""
    a, c, i, j = m.carrier, m.inhibitor, m.strong, m.weak
    main = int(R1[c].abs().argmax())
    drawn = torch.zeros(R1.shape[1], dtype=torch.bool)
    drawn[[i, j, main]] = True
    reads = (R1.abs() >= DRAWN) & ~drawn  # [m, n]: other features read, not drawn
    return MotifFacts(
        carrier=a,
        inhibitor=c,
        strong=i,
        weak=j,
        side=_side(m.side),
        ratio=m.ratio,
        w1_strong=float(R1[a, i]),
        w1_weak=float(R1[a, j]),
        w2_strong=float(R2[i, a]),
        w2_weak=float(R2[j, a]),
        w1_inhibitor=float(R1[c, i]),
        w2_inhibitor=float(R2[j, c]),
        leak=m.interference,
        reverse_leak=m.reverse_interference,
        leak_ratio=m.interference / m.reverse_interference,
        inhibition=m.inhibition,
        error_with=m.error_with,
        error_without=m.error_without,
        inhibitor_main=main,
        inhibitor_main_side=_side(float(R1[c, main])),
        inhibitor_main_gain=float(R2[main, c] * R1[c, main].abs()),
        carrier_reads_more=int(reads[a].sum()),
        inhibitor_reads_more=int(reads[c].sum()),
    )


def _shown(w: store.Weights, k: int, found: list[analysis.Motif]) -> ShownModel:
    R1, R2 = analysis.rescale(w.W1[k : k + 1].double(), w.W2[k : k + 1].double())
    mine = sorted(
        (m for m in found if m.instance == k), key=lambda m: m.error_without - m.error_with
    )[::-1]
    return ShownModel(
        label=w.experiment.label,
        experiment=w.experiment.name,
        p=w.feature_probs[k],
        instance=k,
        seed=w.seeds[k],
        loss=w.final_loss[k],
        motifs=tuple(_facts(R1[0], R2[0], m) for m in mine),
    )


def ablation(w: store.Weights, k: int, f: MotifFacts) -> Ablation:
    """`Ablation` of motif `f` of instance k, on the raw weights (rescaling changes no
    output)."""
    W1, W2, b = w.W1[k].double(), w.W2[k].double(), w.b[k].double()
    x = torch.linspace(-1, 1, ABLATION_POINTS, dtype=torch.float64)
    hidden = torch.relu(W1[:, f.strong, None] * x)  # [m, points]
    ablated = W2.clone()
    ablated[:, f.inhibitor] = 0
    pre_whole = W2[f.weak] @ hidden + b[f.weak]
    pre_ablated = ablated[f.weak] @ hidden + b[f.weak]
    positive = f.side == "positive"
    on_side = (x > 0) if positive else (x < 0)
    return Ablation(
        x=x,
        pre_whole=pre_whole,
        pre_ablated=pre_ablated,
        out_whole=torch.relu(pre_whole),
        out_ablated=torch.relu(pre_ablated),
        pre_at_zero=float(pre_whole[ABLATION_POINTS // 2]),
        pre_at_end=float(pre_whole[-1 if positive else 0]),
        pre_max_on_side=float(pre_whole[on_side].max()),
        out_max_ablated=float(torch.relu(pre_ablated).max()),
    )


def _near_misses(w: store.Weights, shown: ShownModel) -> tuple[MotifFacts, ...]:
    """Pairs of `shown` that `find_motifs` reports once every negative output weight is
    NEAR_MISS stronger, and not on the model itself; their facts are the real model's."""
    k = shown.instance
    W1, W2, b = w.W1[k : k + 1].double(), w.W2[k : k + 1].double(), w.b[k : k + 1].double()
    stronger = torch.where(W2 < 0, W2 * (1 + NEAR_MISS), W2)
    known = {(f.carrier, f.inhibitor, f.strong, f.weak) for f in shown.motifs}
    R1, R2 = analysis.rescale(W1, W2)
    misses = []
    for m in analysis.find_motifs(W1, stronger, b):
        if (m.carrier, m.inhibitor, m.strong, m.weak) in known:
            continue
        ablated = R2[0].clone()
        ablated[:, m.inhibitor] = 0
        real = dataclasses.replace(
            m,
            instance=k,
            inhibition=m.inhibition / (1 + NEAR_MISS),
            error_with=analysis.weak_output_error(R1[0], R2[0], b[0], m.strong, m.weak, m.side),
            error_without=analysis.weak_output_error(
                R1[0], ablated, b[0], m.strong, m.weak, m.side
            ),
        )
        misses.append(_facts(R1[0], R2[0], real))
    return tuple(sorted(misses, key=lambda f: -f.error_rise))


def _two_feature_neurons(W1: Tensor, W2: Tensor) -> Tensor:  # [instances] int
    """How many of each instance's neurons `_carrier_shaped` marks."""
    return _carrier_shaped(W1, W2).sum(-1)


def _carrier_shaped(W1: Tensor, W2: Tensor) -> Tensor:  # [instances, m] bool
    """Live neurons shaped like a carrier (the detector's first condition): a secondary
    rescaled weight between MOTIF_FLOOR and MOTIF_MAX_RATIO, every other weight at most
    MOTIF_THIRD times it."""
    R1, _ = analysis.rescale(W1.double(), W2.double())
    size = R1.abs().sort(dim=-1, descending=True).values  # [instances, m, n]
    second, third = size[..., 1], size[..., 2]
    shaped = (second >= analysis.MOTIF_FLOOR) & (second <= analysis.MOTIF_MAX_RATIO)
    shaped &= third <= analysis.MOTIF_THIRD * second
    return shaped & ~analysis.dead_neurons(W1, W2)


def _rows(w: store.Weights, found: list[analysis.Motif]) -> list[DetectorRow]:
    shaped = _two_feature_neurons(w.W1, w.W2)
    poly = analysis.polysemantic_neurons(w.W1, w.W2).sum(-1)
    rows = []
    for p in w.experiment.feature_probs:
        ks, best = w.instances_at(p), w.best(p)
        per_seed = [sum(m.instance == k for m in found) for k in ks]
        rows.append(
            DetectorRow(
                label=w.experiment.label,
                experiment=w.experiment.name,
                p=p,
                seeds=len(ks),
                seeds_with=sum(n > 0 for n in per_seed),
                motifs=sum(per_seed),
                in_best=any(m.instance == best for m in found),
                two_feature_neurons=int(shaped[best]),
                polysemantic=int(poly[best]),
            )
        )
    return rows


def _pick_b(w: store.Weights, found: list[analysis.Motif]) -> ShownModel | None:
    """Of B's lowest-loss models that hold a motif, the one whose clearest motif is the
    clearest of all (largest error rise when its inhibitor is ablated)."""
    shown = [
        _shown(w, w.best(p), found)
        for p in w.experiment.feature_probs
        if any(m.instance == w.best(p) for m in found)
    ]
    return max(shown, key=lambda s: s.motif.error_rise, default=None)


@functools.cache
def motif() -> MotifFindings:
    """The motif chapter's facts, from the cached weights of experiments B and C."""
    c = store.load("asymmetric-motif")
    C = c.experiment
    found_c = analysis.find_motifs(c.W1, c.W2, c.b)
    with_motif = sorted({m.instance for m in found_c})
    without = [q for q in range(len(c.final_loss)) if q not in with_motif]
    ranked = sorted(range(len(c.final_loss)), key=c.final_loss.__getitem__)
    c_shown = _shown(c, c.best(C.feature_probs[0]), found_c)
    c_near = _near_misses(c, c_shown)
    k = c_shown.instance
    sides = analysis.computed_sides(c.W1[k : k + 1], c.W2[k : k + 1], c.b[k : k + 1])[0]
    main, sign = analysis.primary_features(c.W1[k : k + 1])  # [1, m] each
    effective = analysis.effective_features(c.W1[k : k + 1])[0]  # [m]

    h = store.load(experiments.MOTIF_HOLDOUT.name)
    h_with = sorted({m.instance for m in analysis.find_motifs(h.W1, h.W2, h.b)})
    h_losses_with = [h.final_loss[q] for q in h_with]
    h_losses_without = [loss for q, loss in enumerate(h.final_loss) if q not in h_with]
    h_ranked = sorted(range(len(h.final_loss)), key=h.final_loss.__getitem__)

    b = store.load("sparsity-sweep")
    found_b = analysis.find_motifs(b.W1, b.W2, b.b)
    rows_b = _rows(b, found_b)

    strong, weak = abs(PAPER_W1[0]), abs(PAPER_W1[1])
    paper_leak = PAPER_W2[1] * strong  # the weak output's input when x_strong = 1
    paper_reverse = PAPER_W2[0] * weak  # the strong output's input when |x_weak| = 1
    return MotifFindings(
        paper_leak=paper_leak,
        paper_reverse_leak=paper_reverse,
        paper_leak_ratio=paper_leak / paper_reverse,
        max_ratio=analysis.MOTIF_MAX_RATIO,
        floor=analysis.MOTIF_FLOOR,
        third=analysis.MOTIF_THIRD,
        gain_factor=analysis.MOTIF_GAIN_FACTOR,
        min_rise=analysis.MOTIF_MIN_ERROR_RISE,
        c_n=C.n_features,
        c_m=C.n_hidden,
        c_capacity=C.n_hidden // 2,
        c_p=C.feature_probs[0],
        c_decay=C.importance_decay,
        c_seeds=len(C.seeds),
        c_with_motif=len(with_motif),
        c_loss_with=_median([c.final_loss[q] for q in with_motif]),
        c_loss_without=_median([c.final_loss[q] for q in without]),
        c_top=len(with_motif),
        c_top_with=sum(q in with_motif for q in ranked[: len(with_motif)]),
        c_shown=c_shown,
        h_seeds=len(h.final_loss),
        h_with_motif=len(h_with),
        h_loss_with=_median(h_losses_with),
        h_loss_without=_median(h_losses_without),
        h_top_with=sum(q in h_with for q in h_ranked[: len(h_with)]),
        h_p_value=(
            stats.rank_sum_p(h_losses_with, h_losses_without)
            if h_losses_with and h_losses_without
            else nan
        ),  # fmt: skip
        c_near_misses=c_near,
        near_miss=NEAR_MISS,
        c_motif_neurons=tuple(
            sorted({n for f in c_shown.motifs + c_near for n in (f.carrier, f.inhibitor)})
        ),
        c_ablation=ablation(c, k, c_shown.motif) if c_shown.motifs else None,
        c_carrier_features=float(effective[c_shown.motif.carrier]) if c_shown.motifs else nan,
        c_inhibitor_features=(float(effective[c_shown.motif.inhibitor]) if c_shown.motifs else nan),
        polysemantic_threshold=analysis.POLYSEMANTIC_THRESHOLD,
        c_carrier_shaped=bool(c_shown.motifs)
        and bool(_carrier_shaped(c.W1[k : k + 1], c.W2[k : k + 1])[0, c_shown.motif.carrier]),
        c_computed_both=tuple(i for i, (neg, pos) in enumerate(sides.tolist()) if neg and pos),
        c_computed_one=tuple(
            (i, "negative" if neg else "positive")
            for i, (neg, pos) in enumerate(sides.tolist())
            if neg != pos
        ),
        c_neurons=tuple(zip(main[0].tolist(), map(_side, sign[0].tolist()), strict=True)),
        drawn=DRAWN,
        detector=tuple(rows_b + _rows(c, found_c)),
        b_probs_with=tuple(r.p for r in rows_b if r.seeds_with),
        b_best_with=tuple(r.p for r in rows_b if r.in_best),
        b_denser=tuple(r for r in rows_b if all(r.p > q.p for q in rows_b if q.motifs)),
        b_sparser=tuple(r for r in rows_b if all(r.p < q.p for q in rows_b if q.motifs)),
        b_shown=_pick_b(b, found_b),
        b_m=b.experiment.n_hidden,
        b_models=sum(r.seeds for r in rows_b),
        b_models_with=sum(r.seeds_with for r in rows_b),
    )
