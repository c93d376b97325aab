"""The facts of the chapter "How much can m neurons compute?" (experiments D, E and B).

Per width m, importance profile and sparsity p: how many features each model computes
(explained variance of |x_i| at least analysis.FVE_COMPUTED on both sides), per neuron, and
its loss over the loss of the monosemantic solution, which computes the m/2 most important
features exactly and answers every other one with its mean.
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


@dataclass(frozen=True)
class Cell:
    """One (profile, m, p): the three seeds' models."""

    profile: str
    m: int
    p: float
    instance: int  # the lowest-loss seed's instance in its weight file (the one shown)
    seed: int
    computed: tuple[int, ...]  # features computed on both sides, per seed (SEEDS order)
    # sum over features of the variance explained (overall), per seed: how many features'
    # worth of |x| the outputs carry, partial ones included (the monosemantic solution: m/2)
    explained: tuple[float, ...]
    loss_ratio: tuple[float, ...]  # loss over the monosemantic solution's, per seed
    fve: Tensor = field(repr=False)  # [n] explained variance per feature, lowest-loss seed

    @property
    def best(self) -> int:
        """Features computed by the lowest-loss seed."""
        return self.computed[SEEDS.index(self.seed)]

    @property
    def per_neuron(self) -> float:
        return self.best / self.m

    @property
    def best_explained(self) -> float:
        return self.explained[SEEDS.index(self.seed)]

    @property
    def best_loss_ratio(self) -> float:
        return self.loss_ratio[SEEDS.index(self.seed)]

    @property
    def beats(self) -> bool:
        """The lowest-loss seed computes more than m/2 features."""
        return self.best > self.m // 2


@dataclass(frozen=True)
class CapacityFindings:
    n: int
    widths: dict[str, tuple[int, ...]]  # per profile
    probs: tuple[float, ...]
    seeds: tuple[int, ...]
    decay: float
    fve_computed: float
    cells: dict[tuple[str, int, float], Cell]

    def cell(self, profile: str, m: int, p: float) -> Cell:
        return self.cells[(profile, m, p)]

    def first_beating_p(self, profile: str, m: int) -> float | None:
        """The densest p at which the lowest-loss seed computes more than m/2 features."""
        return next((p for p in self.probs if self.cell(profile, m, p).beats), None)

    def peak(self, profile: str, m: int) -> Cell:
        """The sparsity at which the lowest-loss seed computes the most features (the
        densest such p on a tie)."""
        return max((self.cell(profile, m, p) for p in self.probs), key=lambda c: c.best)

    def best_loss_ratios(self, p: float) -> list[float]:
        """The lowest-loss seed's loss ratio at p, for every width and profile."""
        return [self.cell(profile, m, p).best_loss_ratio
                for profile in PROFILES for m in self.widths[profile]]  # fmt: skip

    def ran_out(self, profile: str, m: int) -> bool:
        """The peak is every feature there is: the count is a lower bound on the room."""
        return self.peak(profile, m).best == self.n

    def table_rows(self) -> list[list[str]]:
        """Features computed per neuron: lowest-loss seed (range over seeds), by p."""
        rows = []
        for profile in PROFILES:
            for m in self.widths[profile]:
                row = [f"{self.decay:g}^i" if profile == "decay" else "equal", str(m)]
                for p in self.probs:
                    c = self.cell(profile, m, p)
                    low, high = min(c.computed) / m, max(c.computed) / m
                    # word joiners keep a range on one line
                    spread = f" ({low:.2f}\u2060–\u2060{high:.2f})" if low != high else ""
                    row.append(f"{c.per_neuron:.2f}{spread}")
                rows.append(row)
        return rows


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
    """The lowest-loss one of `grid_instances` (the first on a tie): the model the chapter draws."""
    return min(grid_instances(w, p), key=w.final_loss.__getitem__)


def _cells(profile: str, m: int) -> list[Cell]:
    w = store.load(experiment_name(profile, m))
    e = w.experiment
    importance = torch.tensor(e.importance(), dtype=torch.float64)
    cells = []
    for p in e.feature_probs:
        ks = grid_instances(w, p)
        fve = analysis.explained_variance(w.W1[ks], w.W2[ks], w.b[ks], [p] * len(ks))
        computed = fve.computed().sum(-1)
        baseline = analysis.monosemantic_loss(importance, p, m // 2)
        best = ks.index(grid_best(w, p))
        cells.append(
            Cell(
                profile=profile, m=m, p=p, instance=ks[best], seed=w.seeds[ks[best]],
                computed=tuple(int(c) for c in computed),
                explained=tuple(float(v) for v in fve.overall.sum(-1)),
                loss_ratio=tuple(w.final_loss[k] / baseline for k in ks),
                fve=fve.overall[best].clone(),
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
        cells=cells,
    )
