"""Every model the book uses, in one registry of frozen configs.

An experiment is one vectorised training run: every (feature probability, seed) pair
becomes one *instance*, an independent model trained side by side with the others.
Instance ``k`` has feature probability ``feature_probs[k // len(seeds)]`` and seed
``seeds[k % len(seeds)]``, so the same seed starts from the same weights at every
sparsity.

    python -m superposition list      # what is registered and what is cached
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import asdict, dataclass, fields

READOUTS = ("relu", "linear")


@dataclass(frozen=True)
class Experiment:
    """One trained family of absolute-value models (SPEC: experiments A and B)."""

    name: str  # also the weight file's stem
    label: str  # "A", "B", ... as the book calls it
    title: str
    n_features: int  # n
    n_hidden: int  # m
    feature_probs: tuple[float, ...]  # p = 1 - S, one per setting
    importance_decay: float  # I_i = importance_decay ** i; 1.0 means equal importance
    seeds: tuple[int, ...]  # initialisation seeds, repeated for every setting
    steps: int
    batch_size: int
    lr: float
    weight_decay: float
    optimizer: str = "adamw"
    init_scale: float = 1.0  # multiplies the Xavier-normal standard deviation of W1 and W2
    # The output bias starts at 0 ("zero") or at E|x_i| = p/2, the best constant output ("mean").
    bias_init: str = "zero"
    warmup_steps: int = 0  # linear warm-up from 0, then the schedule below
    lr_schedule: str = "constant"  # "constant" or "cosine" (decays to 0 at the last step)
    # Steps at which dead and duplicate neurons are recycled (see train.recycle); () = never.
    recycle_at: tuple[int, ...] = ()
    data_seed: int = 0  # seeds the training batches (one stream for all instances)
    eval_batch_size: int = 65_536
    eval_seed: int = 1_000_003  # seeds the fixed evaluation batch that gives `final_loss`
    # Where training starts: "random" (Xavier-normal, see init_scale) or "constructed"
    # (starts.py: seed 0 of each p starts at the monosemantic solution, seed 1 continues the
    # lowest-loss model of `parent` at the next denser p; init_scale sizes a perturbation).
    start: str = "random"
    parent: str = ""  # the experiment a constructed start refines ("" for a random start)
    # The output layer: "relu" (SPEC: y' = ReLU(W2 h + b)) or "linear" (y' = W2 h + b).
    readout: str = "relu"
    # Label mixing: the target is |x| + M x, with M a fixed random symmetric matrix, zero on
    # its diagonal, entries of standard deviation `mixing` drawn from `mixing_seed`
    # (data.mixing_matrix); 0 means the paper's target |x|.
    mixing: float = 0.0
    mixing_seed: int = 0

    def __post_init__(self) -> None:
        if self.n_features < 1 or self.n_hidden < 1:
            raise ValueError(f"{self.name}: n_features and n_hidden must be positive")
        if not self.feature_probs or not all(0 < p <= 1 for p in self.feature_probs):
            raise ValueError(f"{self.name}: feature probabilities must lie in (0, 1]")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"{self.name}: seeds must be distinct and non-empty")
        if self.optimizer not in ("adamw",):
            raise ValueError(f"{self.name}: unknown optimizer {self.optimizer!r}")
        if self.bias_init not in ("zero", "mean"):
            raise ValueError(f"{self.name}: unknown bias_init {self.bias_init!r}")
        if self.lr_schedule not in ("constant", "cosine"):
            raise ValueError(f"{self.name}: unknown lr_schedule {self.lr_schedule!r}")
        if not 0 <= self.warmup_steps < self.steps:
            raise ValueError(f"{self.name}: warmup_steps must lie in [0, steps)")
        if not all(0 < s < self.steps for s in self.recycle_at):
            raise ValueError(f"{self.name}: recycle_at steps must lie in (0, steps)")
        if self.start not in ("random", "constructed"):
            raise ValueError(f"{self.name}: unknown start {self.start!r}")
        if (self.start == "constructed") != bool(self.parent):
            raise ValueError(f"{self.name}: a constructed start needs a parent, and only it")
        if self.readout not in READOUTS:
            raise ValueError(f"{self.name}: unknown readout {self.readout!r}")
        if not (math.isfinite(self.mixing) and self.mixing >= 0):
            raise ValueError(f"{self.name}: mixing must be a finite standard deviation >= 0")
        if self.start == "constructed" and self.seeds != CONSTRUCTED_SEEDS:
            raise ValueError(f"{self.name}: constructed starts have seeds {CONSTRUCTED_SEEDS}")

    @property
    def n_instances(self) -> int:
        return len(self.feature_probs) * len(self.seeds)

    @property
    def instance_probs(self) -> list[float]:
        """Feature probability p = 1 - S of every instance, in instance order."""
        return [p for p in self.feature_probs for _ in self.seeds]

    @property
    def instance_seeds(self) -> list[int]:
        return [s for _ in self.feature_probs for s in self.seeds]

    def batch_stream(self) -> tuple:
        """What fixes every training batch of every instance, and the number of steps.
        Experiments with equal streams draw the same batches in lockstep, so
        `train.train_together` draws each batch once for all of them."""
        n, batch, data_seed = self.n_features, self.batch_size, self.data_seed
        return (n, batch, data_seed, self.feature_probs, self.seeds, self.steps)

    def model_kind(self) -> tuple:
        """What fixes the function a step computes beyond the weights: the readout and the
        labels. Experiments train in one run only when this and `batch_stream` agree."""
        return (self.readout, self.mixing, self.mixing_seed)

    def importance(self) -> list[float]:
        """I_i for i = 0 .. n-1 (feature 0 is the most important)."""
        return [self.importance_decay**i for i in range(self.n_features)]

    def to_json(self) -> str:
        """Canonical JSON: the same config always gives the same string."""
        return json.dumps(asdict(self), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> Experiment:
        raw = json.loads(text)
        known = {f.name for f in fields(cls)}
        if set(raw) != known:
            raise ValueError(f"config fields differ from Experiment: {sorted(set(raw) ^ known)}")
        for key in ("feature_probs", "seeds", "recycle_at"):
            raw[key] = tuple(raw[key])
        return cls(**raw)

    def config_hash(self) -> str:
        return hashlib.sha256(self.to_json().encode()).hexdigest()


# The paper states no hyper-parameters for this section; the official toy-models notebook
# trains with AdamW at lr 1e-3, batch 1024, 10,000 steps, from Xavier-normal weights and a
# zero bias. That recipe gets stuck in three ways here (the setup chapter measures each, on
# the `plain-recipe` experiment below): duplicate neurons at p = 1, tangled neurons at
# p = 0.1, and dead outputs at p = 0.001. Ours keeps AdamW and the batch and changes:
#   init_scale 0.1          small weights untangle (features are picked up one by one)
#   bias_init "mean"        each output starts at its best constant, E|x_i| = p/2, so no
#                           output starts (and stays) dead behind its ReLU
#   recycle_at              dead and duplicate neurons are freed every 500 steps to 14,000
#   lr 3e-3, warm-up 500, cosine decay, 20,000 steps (so recycled neurons settle)
RECIPE = dict(
    steps=20_000,
    batch_size=1024,
    lr=3e-3,
    weight_decay=1e-2,
    optimizer="adamw",
    init_scale=0.1,
    bias_init="mean",
    warmup_steps=500,
    lr_schedule="cosine",
    recycle_at=tuple(range(500, 14_001, 500)),
)
PLAIN_RECIPE = {
    **RECIPE,
    "steps": 10_000,
    "lr": 1e-3,
    "init_scale": 1.0,
    "bias_init": "zero",
    "warmup_steps": 0,
    "lr_schedule": "constant",
    "recycle_at": (),
}

NO_SUPERPOSITION = Experiment(
    name="no-superposition",
    label="A",
    title="Absolute value without superposition (n = 3, m = 6, dense inputs)",
    n_features=3,
    n_hidden=6,
    feature_probs=(1.0,),
    importance_decay=1.0,
    seeds=(0, 1, 2, 3),
    **RECIPE,
)

SPARSITY_SWEEP = Experiment(
    name="sparsity-sweep",
    label="B",
    title="Superposition versus sparsity (n = 100, m = 40, I_i = 0.8^i)",
    n_features=100,
    n_hidden=40,
    feature_probs=(1.0, 0.3, 0.1, 0.03, 0.01, 0.003, 0.001),
    importance_decay=0.8,
    seeds=tuple(range(8)),
    **RECIPE,
)

# Found by a search over small models (n and m from 6 to 10, I_i = 0.8^i, p = 0.3 and 0.1,
# sixteen seeds each) with the motif detector of analysis.find_motifs: with ten features
# and eight neurons (room for four features without superposition) at p = 0.3, the seeds
# that hold the motif are among those with the lowest loss. The motif chapter measures it.
ASYMMETRIC_MOTIF = Experiment(
    name="asymmetric-motif",
    label="C",
    title="The asymmetric superposition motif (n = 10, m = 8, I_i = 0.8^i, p = 0.3)",
    n_features=10,
    n_hidden=8,
    feature_probs=(0.3,),
    importance_decay=0.8,
    seeds=tuple(range(16)),
    **RECIPE,
)

# The motif chapter's test out of sample: 64 fresh seeds of setting C (seeds 16-79), never
# used to choose the setting, on which the motif-loss claim is tested.
MOTIF_HOLDOUT = dataclasses.replace(
    ASYMMETRIC_MOTIF,
    name="asymmetric-motif-holdout",
    label="C64",
    title="Setting C on 64 fresh seeds (n = 10, m = 8, I_i = 0.8^i, p = 0.3)",
    seeds=tuple(range(16, 80)),
)

PLAIN_RECIPE_SWEEP = Experiment(
    name="plain-recipe",
    label="B0",
    title="Experiment B at three sparsities, trained with the official notebook's recipe",
    n_features=100,
    n_hidden=40,
    feature_probs=(1.0, 0.1, 0.001),
    importance_decay=0.8,
    seeds=(0, 1, 2, 3),
    **PLAIN_RECIPE,
)


def _capacity(n_hidden: int, importance_decay: float) -> Experiment:
    profile = "decay" if importance_decay < 1 else "equal"
    return Experiment(
        name=f"capacity-m{n_hidden}-{profile}",
        label=f"{'D' if importance_decay < 1 else 'E'}{n_hidden}",
        title=(
            f"Capacity: n = 100, m = {n_hidden}, "
            + ("I_i = 0.8^i" if importance_decay < 1 else "equal importance")
        ),
        n_features=100,
        n_hidden=n_hidden,
        feature_probs=SPARSITY_SWEEP.feature_probs,
        importance_decay=importance_decay,
        seeds=(0, 1, 2),
        **RECIPE,
    )


# The capacity chapter ("How much can m neurons compute?"): three widths spanning 4x at
# n = 100, B's seven sparsities, three seeds, the book's recipe, under the paper's importance
# profile (D: m = 10, 20, 40, where D40 is experiment B itself, its seeds 0, 1, 2) and under
# equal importance (E: m = 5, 10, 20). Equal importance stops at 20 neurons: at n = 100,
# 40 of them computed all 100 features at p = 0.003 (an earlier version of this grid), a
# count of n rather than of the room, and a wider n would cost more than B's training time,
# the budget of these experiments.
CAPACITY_WIDTHS = {"decay": (10, 20, SPARSITY_SWEEP.n_hidden), "equal": (5, 10, 20)}
CAPACITY = tuple(
    [_capacity(m, SPARSITY_SWEEP.importance_decay) for m in CAPACITY_WIDTHS["decay"][:-1]]
    + [_capacity(m, 1.0) for m in CAPACITY_WIDTHS["equal"]]
)

# Constructed starts: every cell that the capacity chapter reports is the lowest loss over
# random starts *and* these, so that a count is not a fact about where the search began.
# Seed 0 starts at the monosemantic solution (the m/2 most important features as +-
# pairs, every other output at its mean p/2), seed 1 at the parent's lowest-loss model at
# the next denser p (at p = 1, a second monosemantic start); both carry a small
# perturbation (init_scale times the Xavier-normal scale) and are fine-tuned briefly.
CONSTRUCTED_SEEDS = (0, 1)
FINE_TUNE = dict(
    steps=5_000,
    batch_size=RECIPE["batch_size"],
    lr=1e-3,
    weight_decay=RECIPE["weight_decay"],
    optimizer="adamw",
    init_scale=0.1,
    bias_init="mean",  # unused: the construction sets the bias
    warmup_steps=100,
    lr_schedule="cosine",
    recycle_at=(),
)


def constructed(parent: Experiment) -> Experiment:
    """The constructed starts of `parent`'s cells, fine-tuned with FINE_TUNE."""
    return Experiment(
        name=f"{parent.name}-constructed",
        label=f"{parent.label}c",
        title=f"{parent.title}, from constructed starts",
        n_features=parent.n_features,
        n_hidden=parent.n_hidden,
        feature_probs=parent.feature_probs,
        importance_decay=parent.importance_decay,
        seeds=CONSTRUCTED_SEEDS,
        data_seed=parent.data_seed + 1,
        start="constructed",
        parent=parent.name,
        readout=parent.readout,
        mixing=parent.mixing,
        mixing_seed=parent.mixing_seed,
        **FINE_TUNE,
    )


# How the count scales with width (the scaling chapter): equal importance at n = 400, where
# features cannot run short (the summed presence measure of m = 20 at n = 100 was already
# 86 of 100 features' worth), widths spanning 8x, the two sparsest p of B, three seeds, the
# book's recipe, and constructed starts. The grid is what trains, with the readout
# experiments below, in B's time: a row that holds a feature costs about n m, and at
# n = 400 a third of the rows at p = 0.001 and 70 % at p = 0.003 hold one, and the work on
# the n outputs of a row is paid at every width, so wider grids (4-32) did not fit beside
# the readout experiments.
SCALING_N = 400
SCALING_WIDTHS = (2, 4, 8, 16)
SCALING = tuple(
    Experiment(
        name=f"scaling-m{m}",
        label=f"S{m}",
        title=f"Scaling: n = {SCALING_N}, m = {m}, equal importance",
        n_features=SCALING_N,
        n_hidden=m,
        feature_probs=SPARSITY_SWEEP.feature_probs[-2:],
        importance_decay=1.0,
        seeds=(0, 1, 2),
        **RECIPE,
    )
    for m in SCALING_WIDTHS
)

# Where the advantage over the monosemantic solution comes from (the scaling chapter): E10
# again, the same seeds and batches, with (b) a linear readout and (c) labels mixed as in
# Bhagat et al.'s audit of compressed computation, y = |x| + M x with sigma = 0.02. Variant
# (a) is E10 itself, and so is (d), mixing with sigma = 0: M = 0 leaves the target |x|.
# The variants train at E10's three sparsest p, where its advantage is (E10 itself gives
# the denser p): a cell costs in proportion to its rows that hold a feature, so E10's four
# denser p, whose rows all do, would have cost three times as much again.
READOUT_PARENT = next(e for e in CAPACITY if e.label == "E10")
READOUT_PROBS = READOUT_PARENT.feature_probs[-3:]
MIXING_SIGMA = 0.02
READOUT_VARIANTS = (
    dataclasses.replace(
        READOUT_PARENT,
        feature_probs=READOUT_PROBS,
        name="readout-linear-m10-equal",
        label="E10lin",
        title="E10 with a linear readout (n = 100, m = 10, equal importance)",
        readout="linear",
    ),
    dataclasses.replace(
        READOUT_PARENT,
        feature_probs=READOUT_PROBS,
        name="readout-mixing-m10-equal",
        label="E10mix",
        title=f"E10 with mixed labels |x| + Mx, sigma = {MIXING_SIGMA:g} (n = 100, m = 10)",
        mixing=MIXING_SIGMA,
        mixing_seed=1,
    ),
)

CONSTRUCTED = tuple(
    constructed(e) for e in (SPARSITY_SWEEP, *CAPACITY, *SCALING, *READOUT_VARIANTS)
)

REGISTRY: dict[str, Experiment] = {
    e.name: e
    for e in (
        NO_SUPERPOSITION, SPARSITY_SWEEP, ASYMMETRIC_MOTIF, MOTIF_HOLDOUT, PLAIN_RECIPE_SWEEP,
        *CAPACITY,        *SCALING,         *READOUT_VARIANTS, *CONSTRUCTED,
    )
}  # fmt: skip


def get(name: str) -> Experiment:
    try:
        return REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown experiment {name!r}; known: {', '.join(REGISTRY)}") from None
