"""Facts of the setup chapter: the task's sizes, the sampler's measured sparsity, our training
recipe against the official notebook's, recycling's thresholds, and the three ways the plain
recipe fails, measured on the `plain-recipe` models (B0) beside ours (B).

    from superposition import findings
    f = findings.setup()
    f.outcome("plain", 1.0).duplicates    # duplicate neurons of B0's best dense model
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import torch

from .. import analysis, experiments, model, store, train
from ..data import sample
from .weights import CachedFile, weights

PLAIN, OURS = "plain-recipe", "sparsity-sweep"
# How many inputs per sparsity the chapter's measurement of the sampler draws, and its seed.
INPUT_SAMPLES = 50_000
INPUT_SEED = 1

# The settings of a training recipe (Experiment fields), as the chapter names them.
RECIPE_SETTINGS = (
    ("steps", "steps"),
    ("batch_size", "batch"),
    ("optimizer", "optimiser"),
    ("lr", "learning rate"),
    ("weight_decay", "weight decay"),
    ("warmup_steps", "warm-up"),
    ("lr_schedule", "schedule"),
    ("init_scale", "initial weights"),
    ("bias_init", "initial output bias"),
    ("recycle_at", "recycling"),
)
# What makes two experiments the same model on the same task.
MODEL_AND_TASK = ("n_features", "n_hidden", "importance_decay", "data_seed", "eval_batch_size",
                  "eval_seed")  # fmt: skip


@dataclass(frozen=True)
class RecipeRow:
    setting: str
    ours: str  # one value when A, B and C agree, else each experiment's
    plain: str


@dataclass(frozen=True)
class Outcome:
    """One row of the plain-versus-ours table: the lowest-loss model of one recipe at one p."""

    p: float
    recipe: str  # "plain" or "this book"
    instance: int
    loss: float
    loss_ratio: float  # loss / that of the monosemantic solution at the same p
    computed: int  # features computed (alone, both sides, within analysis.COMPUTED_TOLERANCE)
    duplicates: int
    polysemantic: int
    dead_outputs: int
    dead_top: int  # dead among the `capacity` most important outputs
    # The least important feature computed on at least one side (alone, within the
    # tolerance), and how many dead outputs are on features less important than it: features
    # the model drops anyway.
    last_computed: int
    dead_past_computed: int


@dataclass(frozen=True)
class SetupFindings:
    n: int
    m: int
    capacity: int  # m / 2: features computed without superposition
    decay: float  # I_i = decay ** i
    input_samples: int
    present_fraction: tuple[tuple[float, float], ...]  # (p, measured fraction present)
    eval_batch: int
    ours_labels: tuple[str, ...]  # the experiments trained with our recipe
    plain_label: str
    sweep_label: str
    recipe: tuple[RecipeRow, ...]
    recipe_changed: tuple[str, ...]  # settings where B0 differs from B
    recipe_kept: tuple[str, ...]  # settings they share
    same_model_and_task: bool  # B0 and B share n, m, importances, data and evaluation
    recycle_every: int
    recycle_until: int
    dead_fraction: float
    merge_cosine: float
    # A merge replaces the freed neuron's W1 row by its twin's direction: its pre-activation
    # moves by at most this fraction of |w| |x| (|u - v| for unit rows at this cosine).
    merge_bound: float
    init_scale: float
    plain_settings: tuple[float, ...]
    plain_seeds: int
    tolerance: float
    duplicate_cosine: float
    outcomes: tuple[Outcome, ...]
    loss_ratio_01: float  # plain / ours at p = 0.1
    ours_dense_seeds: int
    ours_dense_at_capacity: int  # of our dense seeds, how many compute >= capacity features
    ours_dense_missing_top: tuple[int, ...]  # top-capacity features our best dense model misses
    ours_dense_beyond_top: tuple[int, ...]  # features past the top capacity that it computes
    ours_dense_one_sided: int  # features it computes on one side only
    # Of our dense seeds, how many compute a feature past the top `capacity` while missing
    # one inside it (a recycled neuron took a less important feature).
    ours_dense_misplaced: int
    files: tuple[CachedFile, ...]  # the hardware and versions table

    def outcome(self, recipe: str, p: float) -> Outcome:
        return next(o for o in self.outcomes if o.recipe == recipe and o.p == p)


def _recipe_value(e: experiments.Experiment, key: str) -> str:
    if key == "steps":
        return f"{e.steps:,}"
    if key == "lr":
        return f"{e.lr:g}"
    if key == "weight_decay":
        return f"{e.weight_decay:g}"
    if key == "lr_schedule":
        return e.lr_schedule + (f", {e.warmup_steps} warm-up" if e.warmup_steps else "")
    if key == "init_scale":
        return f"Xavier × {e.init_scale:g}"
    if key == "bias_init":
        return "E|x| = p/2" if e.bias_init == "mean" else "0"
    if key == "recycle_at":
        if not e.recycle_at:
            return "never"
        return f"every {e.recycle_at[1] - e.recycle_at[0]} steps to {e.recycle_at[-1]:,}"
    if key == "seeds":
        return str(len(e.seeds))
    return str(getattr(e, key))


def _recipe_table(ours: list[experiments.Experiment], plain: experiments.Experiment):
    shown = [(k, label) for k, label in RECIPE_SETTINGS if k != "warmup_steps"]  # in schedule
    rows = []
    for key, label in [*shown, ("seeds", "seeds per setting")]:
        values = [_recipe_value(e, key) for e in ours]
        if len(set(values)) == 1:
            mine = values[0]
        else:
            mine = ", ".join(f"{e.label}: {v}" for e, v in zip(ours, values, strict=True))
        rows.append(RecipeRow(setting=label, ours=mine, plain=_recipe_value(plain, key)))
    return tuple(rows)


def _outcome(w: store.Weights, recipe: str, p: float, capacity: int) -> Outcome:
    k = w.best(p)
    W1, W2, b = w.W1[k : k + 1], w.W2[k : k + 1], w.b[k : k + 1]
    importance = torch.tensor(w.experiment.importance())
    dead = analysis.dead_outputs(W1, W2, b)[0]
    loss = w.final_loss[k]
    either = analysis.computed_sides(W1, W2, b)[0].any(-1)  # [n]
    last = int(either.nonzero().max()) if either.any() else -1
    return Outcome(
        p=p,
        recipe=recipe,
        instance=k,
        loss=loss,
        loss_ratio=loss / analysis.monosemantic_loss(importance, p, capacity),
        computed=int(analysis.features_computed(W1, W2, b)[0]),
        duplicates=int(analysis.duplicate_neurons(W1, W2)[0]),
        polysemantic=int(analysis.polysemantic_neurons(W1, W2)[0].sum()),
        dead_outputs=int(dead.sum()),
        dead_top=int(dead[:capacity].sum()),
        last_computed=last,
        dead_past_computed=int(dead[last + 1 :].sum()),
    )


@functools.cache
def setup() -> SetupFindings:
    plain, sweep = store.load(PLAIN), store.load(OURS)
    E, P = sweep.experiment, plain.experiment
    capacity = E.n_hidden // 2
    # the recipe trains every random start; constructed starts are fine-tuned (FINE_TUNE)
    ours = [e for e in experiments.REGISTRY.values() if e.name != PLAIN and e.start == "random"]

    probs = torch.tensor(E.feature_probs)
    x = sample(INPUT_SAMPLES, probs, E.n_features, torch.Generator().manual_seed(INPUT_SEED))
    present = (x != 0).double().mean(dim=(1, 2)).tolist()

    outcomes = tuple(
        _outcome(w, recipe, p, capacity)
        for p in P.feature_probs
        for recipe, w in (("plain", plain), ("this book", sweep))
    )

    dense = sweep.instances_at(1.0)
    both_dense = analysis.computed_sides(sweep.W1[dense], sweep.W2[dense], sweep.b[dense]).all(-1)
    computed_dense = both_dense.sum(-1)
    misplaced = (~both_dense[:, :capacity]).any(-1) & both_dense[:, capacity:].any(-1)
    best = sweep.best(1.0)
    sides = analysis.computed_sides(sweep.W1[best : best + 1], sweep.W2[best : best + 1],
                                    sweep.b[best : best + 1])[0]  # fmt: skip
    both, either = sides.all(-1), sides.any(-1)

    def loss_at(recipe: str, p: float) -> float:
        return next(o.loss for o in outcomes if o.recipe == recipe and o.p == p)

    return SetupFindings(
        n=E.n_features,
        m=E.n_hidden,
        capacity=capacity,
        decay=E.importance_decay,
        input_samples=INPUT_SAMPLES,
        present_fraction=tuple(zip(E.feature_probs, present, strict=True)),
        eval_batch=E.eval_batch_size,
        ours_labels=tuple(e.label for e in ours),
        plain_label=P.label,
        sweep_label=E.label,
        recipe=_recipe_table(ours, P),
        recipe_changed=tuple(
            label for key, label in RECIPE_SETTINGS if getattr(E, key) != getattr(P, key)
        ),
        recipe_kept=tuple(
            label for key, label in RECIPE_SETTINGS if getattr(E, key) == getattr(P, key)
        ),
        same_model_and_task=all(getattr(E, key) == getattr(P, key) for key in MODEL_AND_TASK),
        recycle_every=E.recycle_at[1] - E.recycle_at[0],
        recycle_until=E.recycle_at[-1],
        dead_fraction=model.DEAD_FRACTION,
        merge_cosine=train.MERGE_COSINE,
        merge_bound=math.sqrt(2 * (1 - train.MERGE_COSINE)),
        init_scale=E.init_scale,
        plain_settings=tuple(P.feature_probs),
        plain_seeds=len(P.seeds),
        tolerance=analysis.COMPUTED_TOLERANCE,
        duplicate_cosine=analysis.DUPLICATE_COSINE,
        outcomes=outcomes,
        loss_ratio_01=loss_at("plain", 0.1) / loss_at("this book", 0.1),
        ours_dense_seeds=len(dense),
        ours_dense_at_capacity=int((computed_dense >= capacity).sum()),
        ours_dense_missing_top=tuple((~both[:capacity]).nonzero().flatten().tolist()),
        ours_dense_beyond_top=tuple((both[capacity:].nonzero().flatten() + capacity).tolist()),
        ours_dense_one_sided=int((either & ~both).sum()),
        ours_dense_misplaced=int(misplaced.sum()),
        files=weights().files,
    )
