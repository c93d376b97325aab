"""The facts of the chapter "How the answer scales, and where the advantage comes from".

Scaling (experiments S, `experiments.SCALING`): equal importance at n = 400, widths spanning
8x, the two sparsest p. Per cell (m, p), every model (the random starts and the constructed
ones) is measured as the capacity chapter measures: features computed at each of
analysis.FVE_THRESHOLDS, sides computed, and the summed presence measure. The reported
model is the capacity chapter's (`capacity.reported_of`: the lowest loss). Per measure and
p, an exponent is fitted to log(measure) against log(m): for the reported models, and for
each random seed on its own, which gives its spread.

Readout (experiments E10lin and E10mix, `experiments.READOUT_VARIANTS`): E10 with a linear
readout and with mixed labels, beside E10 itself. Per variant and p, the reported model's
loss over the variant's own monosemantic solution (`starts.monosemantic`), both evaluated
on the same evaluation inputs (the instance's own, as its `final_loss` was), and the loss
per feature over p, L / (n p), as Bhagat et al. draw it.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import torch

from .. import analysis, experiments, starts, store, train
from ..data import mixing_matrix
from ..model import AbsModel
from .capacity import RANDOM, Candidate, adler_shavit_room, candidates_at, reported_of

THRESHOLDS = analysis.FVE_THRESHOLDS
PRESENCE = "presence sum"
# The measures a width is fitted on: a name for the table, then how to read it off Scores.
MEASURES = (
    *(f"computed at {t:g}" for t in THRESHOLDS),
    f"sides at {analysis.FVE_COMPUTED:g}",
    PRESENCE,
)


@dataclass(frozen=True)
class Scores:
    """One model's measures, in the order of MEASURES."""

    candidate: Candidate
    values: tuple[float, ...]
    best_side: float  # the highest within-side measure of any output, on either side

    def value(self, measure: str) -> float:
        return self.values[MEASURES.index(measure)]


@dataclass(frozen=True)
class ScalingCell:
    m: int
    p: float
    models: tuple[Scores, ...]  # the random starts in seed order, then the constructed ones

    @property
    def reported(self) -> Scores:
        best = reported_of([s.candidate for s in self.models])
        return next(s for s in self.models if s.candidate is best)

    def seed(self, seed: int) -> Scores:
        return next(s for s in self.models
                    if s.candidate.start == RANDOM and s.candidate.seed == seed)  # fmt: skip

    @property
    def constructed_won(self) -> bool:
        return self.reported.candidate.start != RANDOM


@dataclass(frozen=True)
class Fit:
    """A straight line through (log m, log value): value ~ m ** exponent. None when some
    width has a value of 0 (no logarithm)."""

    exponent: float | None
    zeros: tuple[int, ...]  # the widths whose value is 0


def fit(widths: tuple[int, ...], values: list[float]) -> Fit:
    """The least-squares slope of log(value) on log(m)."""
    zeros = tuple(m for m, v in zip(widths, values, strict=True) if v <= 0)
    if zeros:
        return Fit(None, zeros)
    xs = [math.log(m) for m in widths]
    ys = [math.log(v) for v in values]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sum(
        (x - mx) ** 2 for x in xs
    )
    return Fit(slope, ())


def _local(widths: tuple[int, ...], values: list[float]) -> list[float]:
    points = list(zip(widths, values, strict=True))
    pairs = zip(points, points[1:], strict=False)
    return [math.log(v2 / v1) / math.log(m2 / m1) if v1 > 0 and v2 > 0 else math.nan
            for (m1, v1), (m2, v2) in pairs]  # fmt: skip


@dataclass(frozen=True)
class ReadoutCell:
    variant: str  # one of VARIANTS
    p: float
    n: int
    candidates: tuple[Candidate, ...]
    baselines: tuple[float, ...]  # the monosemantic loss on each candidate's own inputs
    reported_bias: tuple[float, ...]  # the reported model's output biases

    @property
    def reported(self) -> Candidate:
        return reported_of(list(self.candidates))

    def ratio_of(self, c: Candidate) -> float:
        return c.loss / self.baselines[self.candidates.index(c)]

    @property
    def ratio(self) -> float:
        """The reported model's loss over the monosemantic solution's, on the same inputs."""
        return self.ratio_of(self.reported)

    @property
    def random_ratios(self) -> tuple[float, ...]:
        return tuple(self.ratio_of(c) for c in self.candidates if c.start == RANDOM)

    @property
    def per_feature(self) -> float:
        """The reported model's loss per feature over p: L / (n p)."""
        return self.reported.loss / (self.n * self.p)

    @property
    def baseline_per_feature(self) -> float:
        return self.baselines[self.candidates.index(self.reported)] / (self.n * self.p)

    @property
    def negative_bias(self) -> float:
        """The fraction of the reported model's outputs whose bias is below 0."""
        return sum(v < 0 for v in self.reported_bias) / len(self.reported_bias)

    @property
    def median_bias(self) -> float:
        values = sorted(self.reported_bias)
        return values[len(values) // 2]


# (a) E10 itself, (b) its linear readout, (c) its mixed labels; (d), sigma = 0, is (a).
RELU, LINEAR, MIXED = "ReLU readout", "linear readout", "mixed labels"
VARIANTS = (RELU, LINEAR, MIXED)


def variant_experiment(variant: str) -> experiments.Experiment:
    if variant == RELU:
        return experiments.READOUT_PARENT
    return experiments.READOUT_VARIANTS[VARIANTS.index(variant) - 1]


@dataclass(frozen=True)
class ScalingFindings:
    n: int
    widths: tuple[int, ...]
    probs: tuple[float, ...]
    seeds: tuple[int, ...]
    thresholds: tuple[float, ...]
    cells: dict[tuple[int, float], ScalingCell]
    readout_probs: tuple[float, ...]
    readout_m: int
    mixing_sigma: float
    # (a) at every p of E10, (b) and (c) at readout_probs
    readout: dict[tuple[str, float], ReadoutCell]

    def cell(self, m: int, p: float) -> ScalingCell:
        return self.cells[(m, p)]

    def series(self, measure: str, p: float, seed: int | None = None) -> list[float]:
        """The measure against width at p: of the reported models, or of one random seed."""
        cells = [self.cell(m, p) for m in self.widths]
        pick = (lambda c: c.reported) if seed is None else (lambda c: c.seed(seed))
        return [pick(c).value(measure) for c in cells]

    def fit(self, measure: str, p: float, seed: int | None = None) -> Fit:
        return fit(self.widths, self.series(measure, p, seed))

    def seed_exponents(self, measure: str, p: float) -> list[float]:
        """The exponent of each random seed that has one (no zero at any width)."""
        fits = [self.fit(measure, p, s) for s in self.seeds]
        return [f.exponent for f in fits if f.exponent is not None]

    def local_exponents(self, measure: str, p: float) -> list[float]:
        """The slope of log(measure) between consecutive widths, reported models (nan where
        a value is 0)."""
        return _local(self.widths, self.series(measure, p))

    @property
    def passes_adler_shavit_from(self) -> int | None:
        """The narrowest width from which, at every p, the reported models' variance
        explained exceeds the Adler-Shavit scale at every wider width too."""
        above = [all(v > room for v in (self.series(PRESENCE, p)[i] for p in self.probs))
                 for i, room in enumerate(self.adler_shavit)]  # fmt: skip
        first = next((i for i in range(len(above)) if all(above[i:])), None)
        return None if first is None else self.widths[first]

    def local_adler_shavit(self) -> list[float]:
        return _local(self.widths, [float(v) for v in self.adler_shavit])

    @property
    def best_side(self) -> float:
        """The highest within-side measure of any output of any model in the grid."""
        return max(s.best_side for c in self.cells.values() for s in c.models)

    @property
    def largest_presence(self) -> float:
        """The largest summed presence measure of any model in the grid (features' worth):
        the supply of features is not what bounds it while this stays below n / 2."""
        return max(s.value("presence sum") for c in self.cells.values() for s in c.models)

    @property
    def adler_shavit(self) -> list[int]:
        return [adler_shavit_room(m) for m in self.widths]

    @property
    def adler_shavit_exponent(self) -> float:
        """The same fit through the Adler-Shavit scale at our widths (constant 1)."""
        return fit(self.widths, [float(v) for v in self.adler_shavit]).exponent

    def readout_cell(self, variant: str, p: float) -> ReadoutCell:
        return self.readout[(variant, p)]

    def constructed_wins(self) -> list[ScalingCell]:
        return [c for c in self.cells.values() if c.constructed_won]


def _scores(w: store.Weights, k: int, p: float, candidate: Candidate) -> Scores:
    one = slice(k, k + 1)
    fve = analysis.explained_variance(w.W1[one], w.W2[one], w.b[one], [p])
    values = (
        *(float(fve.computed(t)[0].sum()) for t in THRESHOLDS),
        float(fve.sides()[0].sum()),
        float(fve.presence[0].sum()),
    )
    best_side = float(torch.maximum(fve.negative, fve.positive).max())
    return Scores(candidate=candidate, values=values, best_side=best_side)


def _scaling_cells(e: experiments.Experiment) -> list[ScalingCell]:
    w = store.load(e)
    c = store.load(experiments.constructed(e))
    cells = []
    for p in e.feature_probs:
        models = []
        for cand in candidates_at(w, c, p):
            src = w if cand.experiment == e.name else c
            models.append(_scores(src, cand.instance, p, cand))
        cells.append(ScalingCell(m=e.n_hidden, p=p, models=tuple(models)))
    return cells


def baseline_losses(experiment: experiments.Experiment) -> list[float]:
    """The monosemantic solution's loss for every instance of `experiment`, on that
    instance's own evaluation inputs (`train.evaluate`, as its `final_loss`)."""
    mixing = mixing_matrix(experiment.n_features, experiment.mixing, experiment.mixing_seed)
    importance, m = experiment.importance(), experiment.n_hidden
    built = [starts.monosemantic(importance, m, p, mixing) for p in experiment.instance_probs]
    model = AbsModel(*(torch.stack(parts) for parts in zip(*built, strict=True)))
    probs = torch.tensor(experiment.instance_probs, dtype=torch.float32)
    return train.evaluate(model, experiment, probs)[0]


def _readout_cells(variant: str) -> list[ReadoutCell]:
    """Every p the variant trained at (E10 itself: all seven, the denser ones for context)."""
    e = variant_experiment(variant)
    w, c = store.load(e), store.load(experiments.constructed(e))
    base = {e.name: baseline_losses(e), c.experiment.name: baseline_losses(c.experiment)}
    cells = []
    for p in e.feature_probs:
        candidates = candidates_at(w, c, p)
        best = reported_of(candidates)
        src = w if best.experiment == e.name else c
        cells.append(
            ReadoutCell(
                variant=variant, p=p, n=e.n_features, candidates=tuple(candidates),
                baselines=tuple(base[x.experiment][x.instance] for x in candidates),
                reported_bias=tuple(src.b[best.instance].tolist()),
            )
        )  # fmt: skip
    return cells


@functools.cache
def scaling() -> ScalingFindings:
    cells = {}
    for e in experiments.SCALING:
        for cell in _scaling_cells(e):
            cells[(cell.m, cell.p)] = cell
    readout = {}
    for variant in VARIANTS:
        for cell in _readout_cells(variant):
            readout[(variant, cell.p)] = cell
    first = experiments.SCALING[0]
    return ScalingFindings(
        n=first.n_features,
        widths=experiments.SCALING_WIDTHS,
        probs=first.feature_probs,
        seeds=first.seeds,
        thresholds=THRESHOLDS,
        cells=cells,
        readout_probs=experiments.READOUT_PROBS,
        readout_m=experiments.READOUT_PARENT.n_hidden,
        mixing_sigma=experiments.MIXING_SIGMA,
        readout=readout,
    )
