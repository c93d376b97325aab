"""The facts of the chapter "How much can m neurons compute?" (experiments D, E and B).

Per width m, importance profile and sparsity p (a *cell*): the models trained from random
starts and from constructed starts (experiments.constructed), and the one the chapter
reports, the lowest-loss of them all. For each: how many features it computes (the
within-side measure of |x_i| at least a threshold on both sides, at each of
analysis.FVE_THRESHOLDS), how many sides, the summed presence measure, and its loss over the
monosemantic solution's, which computes the m/2 most important features exactly and answers
every other one with its mean.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field

import torch
from torch import Tensor

from .. import analysis, experiments, store

PROFILES = ("decay", "equal")  # I_i = 0.8^i (the paper's) and I_i = 1
MID_P = 0.03  # the intermediate sparsity the chapter looks at up close
SEEDS = (0, 1, 2)  # every capacity experiment's seeds; B's seeds 0-2 stand in for D40


def experiment_name(profile: str, m: int) -> str:
    """The weight file of (profile, m): D40 is experiment B (`sparsity-sweep`)."""
    if profile == "decay" and m == experiments.SPARSITY_SWEEP.n_hidden:
        return experiments.SPARSITY_SWEEP.name
    return f"capacity-m{m}-{profile}"


THRESHOLDS = analysis.FVE_THRESHOLDS  # counts are given at each; sentences use the middle
RANDOM, MONOSEMANTIC, CONTINUATION = "random", "monosemantic", "continuation"
# what each seed of a constructed experiment starts from (experiments.CONSTRUCTED_SEEDS)
CONSTRUCTED_START = {0: MONOSEMANTIC, 1: CONTINUATION}


@dataclass(frozen=True)
class Candidate:
    """One trained model of a cell: a random start (one of SEEDS) or a constructed one."""

    start: str  # RANDOM, MONOSEMANTIC or CONTINUATION
    experiment: str  # its weight file
    instance: int  # its index there
    seed: int  # the random seed (for a constructed start: its seed in CONSTRUCTED_SEEDS)
    loss: float


@dataclass(frozen=True)
class Cell:
    """One (profile, m, p): its random starts (seed order: SEEDS, or B's eight seeds for the
    width B stands in for), then its constructed starts."""

    profile: str
    m: int
    p: float
    candidates: tuple[Candidate, ...]
    baseline: float  # the monosemantic solution's loss
    # the reported model (the lowest-loss candidate), measured on FVE_SEED's rows:
    computed: tuple[int, ...]  # features computed (both sides), at each of THRESHOLDS
    sides: tuple[int, ...]  # sides of |x| computed, at each of THRESHOLDS
    explained: float  # sum over features of the presence measure: features' worth of |x|
    # the reported model's count at FVE_COMPUTED and its summed presence measure, scored on
    # each of analysis.FVE_NOISE_SEEDS' rows: the measure's own noise
    noise_computed: tuple[int, ...]
    noise_explained: tuple[float, ...]
    fve: Tensor = field(repr=False)  # [n] presence measure per feature, reported model
    negative: Tensor = field(repr=False)  # [n] within-side measure, x_i < 0, reported model
    positive: Tensor = field(repr=False)  # [n] the same, x_i > 0
    worst: Tensor = field(repr=False)  # [3, n] largest error with 0, 1, 2 others active

    @property
    def random(self) -> tuple[Candidate, ...]:
        return tuple(c for c in self.candidates if c.start == RANDOM)

    @property
    def reported(self) -> Candidate:
        """The lowest-loss model of the cell, over random and constructed starts (the first
        on a tie): the best model found, which the chapter reports."""
        return reported_of(list(self.candidates))

    @property
    def random_best(self) -> Candidate:
        """The lowest-loss random start: what training from random starts finds."""
        return min(self.random, key=lambda c: c.loss)

    @property
    def constructed_won(self) -> bool:
        return self.reported.start != RANDOM

    @property
    def random_shortfall(self) -> float:
        """The lowest random start's loss over the reported model's (1 when a random start
        is the best model found)."""
        return self.random_best.loss / self.reported.loss

    def best_at(self, threshold: float) -> int:
        """Features computed by the reported model at `threshold` (one of THRESHOLDS)."""
        return self.computed[THRESHOLDS.index(threshold)]

    @property
    def best(self) -> int:
        """Features computed by the reported model, at analysis.FVE_COMPUTED."""
        return self.best_at(analysis.FVE_COMPUTED)

    @property
    def best_sides(self) -> int:
        return self.sides[THRESHOLDS.index(analysis.FVE_COMPUTED)]

    @property
    def per_neuron(self) -> float:
        return self.best / self.m

    @property
    def best_explained(self) -> float:
        return self.explained

    @property
    def best_loss_ratio(self) -> float:
        return self.reported.loss / self.baseline

    @property
    def threshold_band(self) -> tuple[int, int]:
        """The reported model's count at the strictest and at the loosest threshold."""
        return self.computed[-1], self.computed[0]

    @property
    def beats(self) -> bool:
        """The reported model computes more than m/2 features (at FVE_COMPUTED)."""
        return self.best > self.m // 2

    def worst_of_computed(self, others: int) -> float:
        """The largest error, with `others` other features active, over the features the
        reported model computes (nan if it computes none)."""
        keep = (self.negative >= analysis.FVE_COMPUTED) & (self.positive >= analysis.FVE_COMPUTED)
        return float(self.worst[others][keep].max()) if bool(keep.any()) else math.nan


@dataclass(frozen=True)
class CapacityFindings:
    n: int
    widths: dict[str, tuple[int, ...]]  # per profile
    probs: tuple[float, ...]
    seeds: tuple[int, ...]
    decay: float
    fve_computed: float
    thresholds: tuple[float, ...]
    cells: dict[tuple[str, int, float], Cell]
    # B's best-of-k curve: per p, the lowest loss of its first k seeds over the best found
    best_of_k: dict[float, tuple[float, ...]]

    def cell(self, profile: str, m: int, p: float) -> Cell:
        return self.cells[(profile, m, p)]

    def first_beating_p(
        self, profile: str, m: int, threshold: float = analysis.FVE_COMPUTED
    ) -> float | None:
        """The densest p at which the reported model computes more than m/2 features."""
        return next(
            (p for p in self.probs if self.cell(profile, m, p).best_at(threshold) > m // 2), None
        )

    def peak(self, profile: str, m: int) -> Cell:
        """The sparsity at which the reported model computes the most features (the densest
        such p on a tie)."""
        return max((self.cell(profile, m, p) for p in self.probs), key=lambda c: c.best)

    def best_loss_ratios(self, p: float) -> list[float]:
        """The reported model's loss ratio at p, for every width and profile."""
        return [self.cell(profile, m, p).best_loss_ratio
                for profile in PROFILES for m in self.widths[profile]]  # fmt: skip

    def ran_out(self, profile: str, m: int) -> bool:
        """The peak is every feature there is: the count is a lower bound on the room."""
        return self.peak(profile, m).best == self.n

    def table_rows(self) -> list[list[str]]:
        """Features computed by the reported model at each of THRESHOLDS (loosest first), by
        p; a star marks a cell whose reported model came from a constructed start."""
        rows = []
        for profile in PROFILES:
            for m in self.widths[profile]:
                row = [f"{self.decay:g}^i" if profile == "decay" else "equal", str(m)]
                for p in self.probs:
                    c = self.cell(profile, m, p)
                    star = "*" if c.constructed_won else ""
                    # word joiners keep the three counts on one line
                    row.append("\u2060/\u2060".join(str(v) for v in c.computed) + star)
                rows.append(row)
        return rows

    @property
    def all_cells(self) -> list[Cell]:
        return [self.cell(pr, m, p) for pr in PROFILES for m in self.widths[pr] for p in self.probs]

    @property
    def min_presence(self) -> float:
        """The smallest presence measure of any feature in the sparsest equal-importance cell
        of the widest width: how much of every feature's variance its outputs carry."""
        c = self.cell("equal", self.widths["equal"][-1], self.probs[-1])
        return float(c.fve.min())

    @property
    def constructed_wins(self) -> list[Cell]:
        """Cells whose best model came from a constructed start."""
        return [c for c in self.all_cells if c.constructed_won]

    @property
    def largest_shortfall(self) -> Cell:
        """The cell whose lowest random start is furthest above its best model found."""
        return max(self.all_cells, key=lambda c: c.random_shortfall)

    def dense_ratios(self) -> list[float]:
        """The reported models' loss over the monosemantic solution's at p = 1."""
        return self.best_loss_ratios(self.probs[0])

    def dense_random_ratios(self) -> list[float]:
        """The same for the lowest random start: what random starts alone reach."""
        return [c.random_best.loss / c.baseline
                for c in self.all_cells if c.p == self.probs[0]]  # fmt: skip

    def threshold_flips(self) -> list[Cell]:
        """Cells whose count at the loosest threshold is more than twice that at the
        strictest (or where only the strictest finds none): a count that hinges on where
        the threshold sits."""
        return [c for c in self.all_cells
                if c.threshold_band[1] > 2 * c.threshold_band[0]]  # fmt: skip

    @property
    def largest_noise(self) -> int:
        """The widest spread of a reported model's count over the row seeds."""
        return max(max(c.noise_computed) - min(c.noise_computed) for c in self.all_cells)

    @property
    def largest_explained_noise(self) -> float:
        return max(max(c.noise_explained) - min(c.noise_explained) for c in self.all_cells)


def adler_shavit_room(m: int) -> int:
    """The largest m' with sqrt(m' ln m') <= m: the features m neurons could compute if the
    Adler-Shavit lower bound (Omega(sqrt(m' log m')) neurons for m' features) held with
    constant 1. The bound gives no constant; this only puts a scale beside our counts."""
    k = 2
    while math.sqrt((k + 1) * math.log(k + 1)) <= m:
        k += 1
    return k


def grid_instances(w: store.Weights, p: float) -> list[int]:
    """The instances of `w` at p that the grid uses: seeds SEEDS, in that order."""
    ks = [k for k in w.instances_at(p) if w.seeds[k] in SEEDS]
    return sorted(ks, key=lambda k: SEEDS.index(w.seeds[k]))


def grid_best(w: store.Weights, p: float) -> int:
    """The lowest-loss one of `grid_instances` (the first on a tie): the lowest random start."""
    return min(grid_instances(w, p), key=w.final_loss.__getitem__)


def constructed_name(profile: str, m: int) -> str:
    return experiments.constructed(experiments.get(experiment_name(profile, m))).name


def _candidates(w: store.Weights, ks: list[int], start) -> list[Candidate]:
    return [Candidate(start=start(k), experiment=w.experiment.name, instance=k, seed=w.seeds[k],
                      loss=w.final_loss[k]) for k in ks]  # fmt: skip


def candidates_at(w: store.Weights, c: store.Weights, p: float) -> list[Candidate]:
    """A cell's models: every random start of `w` at p (in seed order), then the
    constructed starts of `c` at p."""
    randoms = sorted(w.instances_at(p), key=w.seeds.__getitem__)
    return _candidates(w, randoms, lambda k: RANDOM) + _candidates(
        c, c.instances_at(p), lambda k: CONSTRUCTED_START[c.seeds[k]]
    )


def reported_of(candidates: list[Candidate]) -> Candidate:
    """The one rule for the model a cell reports: the lowest loss, the first on a tie."""
    return min(candidates, key=lambda x: x.loss)


def _cells(profile: str, m: int) -> list[Cell]:
    w = store.load(experiment_name(profile, m))
    c = store.load(constructed_name(profile, m))
    e = w.experiment
    importance = torch.tensor(e.importance(), dtype=torch.float64)
    cells = []
    for p in e.feature_probs:
        candidates = candidates_at(w, c, p)
        best = reported_of(candidates)
        src = w if best.experiment == w.experiment.name else c
        one = slice(best.instance, best.instance + 1)
        W1, W2, b = src.W1[one], src.W2[one], src.b[one]
        noise = [analysis.explained_variance(W1, W2, b, [p], seed=s)
                 for s in analysis.FVE_NOISE_SEEDS]  # fmt: skip
        fve = noise[analysis.FVE_NOISE_SEEDS.index(analysis.FVE_SEED)]
        cells.append(
            Cell(
                profile=profile, m=m, p=p, candidates=tuple(candidates),
                baseline=analysis.monosemantic_loss(importance, p, m // 2),
                computed=tuple(int(fve.computed(t)[0].sum()) for t in THRESHOLDS),
                sides=tuple(int(fve.sides(t)[0].sum()) for t in THRESHOLDS),
                explained=float(fve.presence[0].sum()),
                noise_computed=tuple(int(v.computed()[0].sum()) for v in noise),
                noise_explained=tuple(float(v.presence[0].sum()) for v in noise),
                fve=fve.presence[0].clone(), negative=fve.negative[0].clone(),
                positive=fve.positive[0].clone(),
                worst=torch.cat([analysis.worst_error(W1, W2, b, k) for k in range(3)]),
            )
        )  # fmt: skip
    return cells


@functools.cache
def capacity() -> CapacityFindings:
    cells = {}
    for profile in PROFILES:
        for m in experiments.CAPACITY_WIDTHS[profile]:
            for c in _cells(profile, m):
                cells[(profile, m, c.p)] = c
    B = experiments.SPARSITY_SWEEP
    return CapacityFindings(
        n=B.n_features,
        widths={profile: experiments.CAPACITY_WIDTHS[profile] for profile in PROFILES},
        probs=B.feature_probs,
        seeds=SEEDS,
        decay=B.importance_decay,
        fve_computed=analysis.FVE_COMPUTED,
        thresholds=THRESHOLDS,
        cells=cells,
        best_of_k=_best_of_k(cells),
    )


def _best_of_k(cells) -> dict[float, tuple[float, ...]]:
    """For B (eight random seeds, as D40), per p: the lowest loss of its first k seeds, for
    k = 1 .. 8, over the best model found in the cell (random or constructed)."""
    m = experiments.SPARSITY_SWEEP.n_hidden
    curves = {}
    for p in experiments.SPARSITY_SWEEP.feature_probs:
        c = cells[("decay", m, p)]
        losses = [x.loss for x in c.random]  # seed order
        curves[p] = tuple(min(losses[: j + 1]) / c.reported.loss for j in range(len(losses)))
    return curves
