"""The facts of the chapter "Superposition versus sparsity" (experiment B)."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from math import nan

import torch
from torch import Tensor

from .. import analysis, store

# A feature is *dropped* when its output explains less than this fraction of the variance
# of |x_i| (the presence measure, which credits detecting x_i at all): the model answers it
# with (nearly) a constant.
DROPPED_BELOW = 0.1
MID_P = 0.03  # the intermediate sparsity the chapter looks at up close
SECONDARY_READ = 0.05  # a rescaled weight above this counts as a feature the neuron reads

# The paper's description of its sweep figure, by p (SPEC).
PAPER = {
    1.0: "all monosemantic (each computes one side of one feature)",
    0.3: "still monosemantic",
    0.1: "a few slightly polysemantic neurons",
    0.03: "a few highly polysemantic neurons, carrying low-importance features",
    0.01: "more polysemantic neurons",
    0.003: "more polysemantic still",
    0.001: "all neurons highly polysemantic",
}


@dataclass(frozen=True)
class Spread:
    """A count for the lowest-loss seed, with the range over every seed."""

    best: int
    low: int
    high: int

    def __str__(self) -> str:
        return (
            f"{self.best} ({self.low}–{self.high})"
            if self.low != self.high
            else (f"{self.best} ({self.low})")
        )


@dataclass(frozen=True)
class Setting:
    """One sparsity of the sweep."""

    p: float
    best: int  # instance of the lowest-loss seed (the one the figures show)
    loss: float
    polysemantic: Spread
    dead: int  # neurons, lowest-loss seed
    median_reads: float  # median effective number of features of its live neurons
    median_reads_polysemantic: float  # the same over its polysemantic neurons (nan if none)
    loss_ratio: float  # worst seed's loss over the lowest
    computed: Spread  # features computed on both sides (within-side measure >= FVE_COMPUTED)
    computed_at: tuple[int, ...]  # lowest-loss seed's count at each of FVE_THRESHOLDS
    one_side: Spread  # computed on exactly one side
    dropped: Spread  # explained variance below DROPPED_BELOW: answered by a constant
    first_dropped_tail: int  # lowest-loss seed: every feature from this index on is dropped
    sides: int  # sides of |x| the lowest-loss seed computes: 2 per feature, 1 per one-sided
    dropped_loss_share: float  # what answering its dropped features by p/2 costs, over its loss
    max_read_of_dropped: float  # largest rescaled W1 weight on a dropped feature
    max_write_to_dropped: float  # largest rescaled W2 weight into a dropped feature's output
    fve: Tensor  # [n] presence measure per feature, lowest-loss seed
    fve_median: Tensor  # [n] median over seeds
    within: Tensor  # [n] within-side measure on the worse side, lowest-loss seed


@dataclass(frozen=True)
class Intermediate:
    """The lowest-loss model at MID_P, which holds both kinds of neuron."""

    p: float
    monosemantic: int
    polysemantic: int
    top_monosemantic: int  # every feature below this index has a monosemantic neuron
    median_primary_of_polysemantic: int  # median index of their largest feature
    mean_primary: tuple[float, float]  # mean index of the largest feature: (mono, poly)
    median_secondary: float  # their second-largest rescaled weight, median
    max_secondary: float
    median_reads: int  # features read above SECONDARY_READ, median


@dataclass(frozen=True)
class SparsityFindings:
    n: int
    m: int
    capacity: int  # features with a neuron per side, without superposition: m / 2
    decay: float
    n_seeds: int
    probs: tuple[float, ...]
    settings: dict[float, Setting]
    # per instance, for the figures: what the chapter draws, measured once here
    effective: Tensor  # [instances, m] features read per neuron (analysis.effective_features)
    polysemantic: Tensor  # [instances, m] bool
    dead: Tensor  # [instances, m] bool
    superposition: Tensor  # [instances, n] on the rescaled weights the figures show
    computed: Tensor  # [instances] features computed on both sides
    one_side: Tensor  # [instances] features computed on one side only
    polysemantic_dense_all_seeds: int  # polysemantic neurons at p = 1 over every seed
    peak_ps: tuple[float, ...]  # where the lowest-loss seed computes the most features
    most_computed: int  # that most
    most_sides: int  # the most sides of |x| any lowest-loss seed computes
    examples_at_sparsest: int  # training inputs in which a given feature is present there
    sparsest_p: float
    importance_at_sparsest_tail: float  # I_i of the first dropped feature of the tail there
    intermediate: Intermediate
    # constants the chapter states
    poly_threshold: float
    dead_fraction: float
    fve_computed: float
    thresholds: tuple[float, ...]
    dropped_below: float

    def table_rows(self) -> list[list[str]]:
        """The chapter's table: the paper's description beside our measurements."""
        return [
            [f"{s.p:g}", PAPER.get(s.p, ""), str(s.polysemantic), f"{s.median_reads:.2f}",
             str(s.computed), "\u2060/\u2060".join(map(str, s.computed_at)), str(s.one_side),
             str(s.dropped), f"{s.loss:.2e}",
             f"{s.loss_ratio:.1f}"]
            for s in self.settings.values()
        ]  # fmt: skip

    @property
    def dead_neurons(self) -> int:
        """Dead neurons in every model of the sweep together (every seed, every sparsity)."""
        return int(self.dead.sum())

    @property
    def worst_loss_ratio(self) -> tuple[float, float]:
        """(p, ratio) where the worst seed's loss is furthest above the lowest-loss seed's."""
        s = max(self.settings.values(), key=lambda s: s.loss_ratio)
        return s.p, s.loss_ratio

    @property
    def other_loss_ratios_below(self) -> float:
        """The largest worst-over-best loss ratio at every other sparsity."""
        p, _ = self.worst_loss_ratio
        return max(s.loss_ratio for s in self.settings.values() if s.p != p)


def _largest(weights: Tensor) -> float:
    return float(weights.abs().max()) if weights.numel() else 0.0


def _spread(values: Tensor, best_position: int) -> Spread:
    values = [int(v) for v in values.tolist()]
    return Spread(values[best_position], min(values), max(values))


@functools.cache
def sparsity() -> SparsityFindings:
    w = store.load("sparsity-sweep")
    E = w.experiment
    R1, R2 = analysis.rescale(w.W1.double(), w.W2.double())
    eff = analysis.effective_features(w.W1)
    poly = analysis.polysemantic_neurons(w.W1, w.W2)
    dead = analysis.dead_neurons(w.W1, w.W2)
    fve = analysis.explained_variance(w.W1, w.W2, w.b, w.feature_probs)
    importance = torch.tensor(E.importance(), dtype=torch.float64)
    both = fve.computed()
    one = fve.sides() == 1
    dropped = fve.presence < DROPPED_BELOW
    settings = {}
    for p in E.feature_probs:
        ks, k = w.instances_at(p), w.best(p)
        at = ks.index(k)
        tail = len(dropped[k])
        while tail > 0 and dropped[k, tail - 1]:
            tail -= 1
        constant_loss = float((importance[dropped[k]] * (p / 3 - p * p / 4)).sum())
        settings[p] = Setting(
            p=p, best=k, loss=w.final_loss[k],
            polysemantic=_spread(poly[ks].sum(-1), at),
            dead=int(dead[k].sum()),
            median_reads=float(eff[k][~dead[k]].median()),
            median_reads_polysemantic=float(eff[k][poly[k]].median()) if poly[k].any() else nan,
            loss_ratio=max(w.final_loss[q] for q in ks) / w.final_loss[k],
            computed=_spread(both[ks].sum(-1), at),
            computed_at=tuple(int(fve.computed(t)[k].sum()) for t in analysis.FVE_THRESHOLDS),
            one_side=_spread(one[ks].sum(-1), at),
            dropped=_spread(dropped[ks].sum(-1), at),
            first_dropped_tail=tail,
            sides=int(2 * both[k].sum() + one[k].sum()),
            dropped_loss_share=constant_loss / w.final_loss[k],
            max_read_of_dropped=_largest(R1[k][:, dropped[k]]),
            max_write_to_dropped=_largest(R2[k][dropped[k]]),
            fve=fve.presence[k].clone(),
            fve_median=fve.presence[ks].median(0).values,
            within=torch.minimum(fve.negative[k], fve.positive[k]).clone(),
        )  # fmt: skip
    most = max(s.computed.best for s in settings.values())
    sparsest = min(E.feature_probs)
    return SparsityFindings(
        n=E.n_features, m=E.n_hidden, capacity=E.n_hidden // 2, decay=E.importance_decay,
        n_seeds=len(E.seeds), probs=tuple(E.feature_probs), settings=settings,
        effective=eff, polysemantic=poly, dead=dead, superposition=analysis.superposition(R1),
        computed=both.sum(-1), one_side=one.sum(-1),
        polysemantic_dense_all_seeds=int(poly[w.instances_at(1.0)].sum()),
        peak_ps=tuple(p for p in E.feature_probs if settings[p].computed.best == most),
        most_computed=most,
        most_sides=max(s.sides for s in settings.values()),
        sparsest_p=sparsest,
        examples_at_sparsest=round(sparsest * E.batch_size * E.steps),
        importance_at_sparsest_tail=E.importance_decay ** settings[sparsest].first_dropped_tail,
        intermediate=_intermediate(w, R1, poly, dead),
        poly_threshold=analysis.POLYSEMANTIC_THRESHOLD, dead_fraction=analysis.DEAD_FRACTION,
        fve_computed=analysis.FVE_COMPUTED, thresholds=analysis.FVE_THRESHOLDS,
        dropped_below=DROPPED_BELOW,
    )  # fmt: skip


def _intermediate(w: store.Weights, R1: Tensor, poly: Tensor, dead: Tensor) -> Intermediate:
    k = w.best(MID_P)
    feature, _ = analysis.primary_features(R1)
    is_mono = ~poly[k] & ~dead[k]
    mono_features = set(feature[k][is_mono].tolist())
    top = 0
    while top in mono_features:
        top += 1
    secondary = R1[k].abs().sort(-1, descending=True).values[:, 1]  # [m]
    reads = (R1[k].abs() > SECONDARY_READ).sum(-1)
    return Intermediate(
        p=MID_P,
        monosemantic=int(is_mono.sum()),
        polysemantic=int(poly[k].sum()),
        top_monosemantic=top,
        median_primary_of_polysemantic=int(feature[k][poly[k]].double().median()),
        mean_primary=(
            float(feature[k][is_mono].double().mean()),
            float(feature[k][poly[k]].double().mean()),
        ),
        median_secondary=float(secondary[poly[k]].median()),
        max_secondary=float(secondary[poly[k]].max()),
        median_reads=int(reads[poly[k]].double().median()),
    )
