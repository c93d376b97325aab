"""Train one experiment, every instance of it in one vectorised run, or several that draw
the same batches in one loop. No file I/O here.

    result = train(experiments.get("sparsity-sweep"))           # device picked for you
    result = train(experiment, device="cpu", progress=False)
    results = train_together(experiments.CAPACITY)               # one result per experiment

On the CPU a run is bitwise reproducible: the initial weights come from each instance's
seed, its batches from the experiment's `data_seed`, its own seed and its p (a
counter-based sampler: batch t is a pure function of those and t, whatever else trains
beside it), and nothing reads global random state. Each step is one compiled
function per group of instances (sampler, forward and hand-written backward; see `plan`
and model.py) followed by fused AdamW. Experiments trained together (`SharedStep`) draw
each batch once and come out bit for bit as when each is trained alone.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import Tensor
from tqdm import tqdm

from .compiling import CompiledOrEager, compile_wanted
from .data import counter_sample, mixing_matrix, stream_keys
from .devices import pick_device
from .experiments import Experiment
from .model import (
    DEAD_FRACTION,
    AbsModel,
    Head,
    compact_loss_and_grads,
    neuron_effect,
    nonempty_rows,
    outputs,
    rows_loss_and_grads,
    weighted_loss,
)
from .result import TrainResult


def lr_factor(step: int, experiment: Experiment) -> float:
    """Multiplier of the base learning rate at `step` (0-based)."""
    warm = experiment.warmup_steps
    if step < warm:
        return (step + 1) / warm
    if experiment.lr_schedule == "constant":
        return 1.0
    progress = (step - warm) / max(1, experiment.steps - warm)
    return 0.5 * (1.0 + math.cos(math.pi * progress))


# Recycling merges two neurons when their W1 rows point the same way to within this cosine
# (stricter than the analysis's count of duplicates, because a merge must keep the function).
MERGE_COSINE = 0.999


@torch.no_grad()
def recycle(
    model: AbsModel,
    optimiser: torch.optim.Optimizer,
    generator: torch.Generator,
    init_scale: float = 1.0,
) -> int:
    """Free dead and duplicate neurons and give them a fresh random W1 row. Returns how many.

    Two neurons whose W1 rows are parallel compute the same ReLU up to a positive scale,
    so the smaller one is merged into the larger exactly (its W2 column, rescaled, is added
    to the larger one's). The freed neuron gets a fresh W1 row and a zero W2 column, so the
    model's function is unchanged at the moment of recycling; gradient descent then decides
    whether the neuron is worth using. Without this, a duplicate pair is a flat valley that
    plain gradient descent never leaves (see the book's chapter on the setup).
    """
    W1, W2 = model.W1, model.W2  # [instances, m, n], [instances, n, m]
    instances, m, n = W1.shape
    norm = W1.norm(dim=-1)  # [instances, m]
    unit = W1 / norm.clamp_min(1e-30)[..., None]
    cosine = unit @ unit.transpose(1, 2)  # [instances, m, m]
    effect = neuron_effect(W1, W2)  # [instances, m]
    freed: list[tuple[int, int]] = []
    for i in range(instances):
        kept: list[int] = []
        for j in effect[i].argsort(descending=True).tolist():
            if effect[i, j] < DEAD_FRACTION * effect[i].max():
                freed.append((i, j))
                continue
            twin = next((k for k in kept if cosine[i, j, k] > MERGE_COSINE), None)
            if twin is None:
                kept.append(j)
                continue
            W2[i, :, twin] += W2[i, :, j] * (norm[i, j] / norm[i, twin])
            freed.append((i, j))
    std = math.sqrt(2.0 / (n + m)) * init_scale
    for i, j in freed:
        W1[i, j] = torch.randn(n, generator=generator, device=generator.device) * std
        W2[i, :, j] = 0
        # Forget the momentum of the old role; keep the second moment as a sane step scale.
        optimiser.state[model.W1]["exp_avg"][i, j] = 0
        optimiser.state[model.W2]["exp_avg"][i, :, j] = 0
    return len(freed)


_EVAL_CHUNK = 4096  # evaluation rows per chunk


@torch.no_grad()
def evaluate(model: AbsModel, experiment: Experiment, probs: Tensor) -> tuple[list[float], bool]:
    """Per-instance loss on the experiment's fixed evaluation batch, and whether it ran
    compiled.

    The batch is drawn by the counter-based sampler under `eval_seed`, in chunks (chunk c
    is "step" c of that stream), so it is the same on every device and never held whole.
    Each chunk is one compiled function, like a training step.
    """
    dev = model.W1.device
    importance = torch.tensor(experiment.importance(), device=dev)
    keys = _keys(experiment, experiment.eval_seed, dev)
    n = experiment.n_features
    readout, mixing = head(experiment, dev) or ("relu", None)

    def chunk_loss(W1: Tensor, W2: Tensor, b: Tensor, rows: int, chunk: Tensor) -> Tensor:
        x = counter_sample(rows, probs, n, keys, chunk)  # [instances, rows, n]
        y = outputs(W1, W2, b, x, readout)
        return weighted_loss(y, x, importance, mixing)  # [instances]

    chunk_loss = CompiledOrEager(chunk_loss, wanted=compile_wanted(dev))
    weights = (model.W1.detach(), model.W2.detach(), model.b.detach())
    total = torch.zeros(experiment.n_instances, dtype=torch.float64, device=dev)
    size, done, chunk = experiment.eval_batch_size, 0, 0
    while done < size:
        rows = min(_EVAL_CHUNK, size - done)
        loss = chunk_loss(*weights, rows, torch.tensor(chunk, dtype=torch.int64))
        total += loss.double() * rows
        done, chunk = done + rows, chunk + 1
    return (total / size).cpu().tolist(), chunk_loss.compiled


def head(experiment: Experiment, device: torch.device) -> Head:
    """The `model.Head` of `experiment` on `device`: None for SPEC's model, else its readout
    and its mixing matrix (None without mixing)."""
    if experiment.readout == "relu" and experiment.mixing == 0:
        return None
    M = mixing_matrix(experiment.n_features, experiment.mixing, experiment.mixing_seed)
    return experiment.readout, None if M is None else M.to(device)


def _keys(experiment: Experiment, base_seed: int, device: torch.device) -> Tensor:
    keys = stream_keys(base_seed, experiment.instance_seeds, experiment.instance_probs)
    return keys.to(device)


# How a CPU step is split: one batched product over all 56 instances of experiment B works
# on about 100 MB per step, past the caches of a 2-core AMD EPYC, while groups of at most
# GROUP_SIZE consecutive instances that compute the same number of rows, each its own
# compiled call, stay in them. Measured side by side there, in paired rounds on trained
# weights, the time of a step relative to groups of 8: groups of 4 take 0.84-0.91 on B,
# 0.76 on E40, 0.84 on E20, 0.70-0.81 on D10; groups of 2, 3 and 6 lie in between, and one
# call for all of B took twice as long as groups of 8. (Early in training, from the small
# initial weights, 4 and 8 were within the machine's noise: 0.98-1.12 in short runs of
# train().) The grouping does not change the results: each instance's sums are the same
# (B's and the capacity models' weights bitwise equal with groups of 4 and 8). Instances
# of different p share a group when their row counts agree (3-9 % faster than a group per
# p on D10 and E20).
# A GPU wants the opposite: one group of every instance.
GROUP_SIZE = 4
# In a sparse group only the first `rows` rows of each instance (its non-empty rows first)
# go through the model; the rest are empty and added in closed form. `rows` is the expected
# count of non-empty rows plus CAPACITY_SIGMAS standard deviations; a batch with more falls
# back to the whole batch (exact either way; at 8 sigmas that is expected never to happen).
CAPACITY_SIGMAS = 8.0


@dataclass(frozen=True)
class Group:
    """Instances start .. stop-1 of an experiment, stepped by one compiled call that
    computes `rows` rows of each instance's batch in full (all of them when rows = batch)."""

    start: int
    stop: int
    rows: int


def row_capacity(p: float, n_features: int, batch: int) -> int:
    """Rows per instance that hold every non-empty row of a batch, but for odds below
    those of CAPACITY_SIGMAS standard deviations (a multiple of 16, at most `batch`)."""
    filled = 1.0 - (1.0 - p) ** n_features  # chance that a row has a feature present
    mean, sd = batch * filled, math.sqrt(batch * filled * (1.0 - filled))
    return min(batch, 16 * math.ceil((mean + CAPACITY_SIGMAS * sd + 1.0) / 16))


def plan(experiment: Experiment, device: torch.device) -> tuple[Group, ...]:
    """How `make_step` splits the instances of `experiment` on `device`."""
    batch, total = experiment.batch_size, experiment.n_instances
    if device.type != "cpu":
        return (Group(0, total, batch),)
    rows = [row_capacity(p, experiment.n_features, batch) for p in experiment.instance_probs]
    groups, start = [], 0
    while start < total:
        stop = start + 1
        while stop < total and stop - start < GROUP_SIZE and rows[stop] == rows[start]:
            stop += 1
        groups.append(Group(start, stop, rows[start]))
        start = stop
    return tuple(groups)


class Step:
    """One training step of every instance: `step(W1, W2, b, t)` -> (loss, dW1, dW2, db) on
    batch t of each instance's stream, group by group as `plan` splits them (`make_step`).

    `overflows` counts group-steps that had more non-empty rows than their capacity and
    were recomputed on the whole batch. The results are written into buffers that the next
    call overwrites.
    """

    def __init__(self, experiment: Experiment, device: torch.device, groups=None) -> None:
        self.groups = tuple(groups) if groups is not None else plan(experiment, device)
        self.batch, n = experiment.batch_size, experiment.n_features
        self.probs = torch.tensor(experiment.instance_probs, dtype=torch.float32, device=device)
        self.keys = _keys(experiment, experiment.data_seed, device)
        importance = torch.tensor(experiment.importance(), dtype=torch.float32, device=device)
        kind = head(experiment, device)
        self.compile = compile_wanted(device)
        self.overflows = 0
        self._functions: dict[tuple[int, int], Callable] = {}
        self._buffers: tuple[Tensor, ...] | None = None

        def group_step(rows: int) -> Callable:
            def step_fn(W1: Tensor, W2: Tensor, b: Tensor, probs: Tensor, keys: Tensor, t: Tensor):
                x = counter_sample(self.batch, probs, n, keys, t)  # [group, batch, n]
                return compact_loss_and_grads(W1, W2, b, x, importance, rows, kind)

            return step_fn

        self._group_step = group_step

    @property
    def compiled(self) -> bool:
        return self.compile and all(f.compiled for f in self._functions.values())

    def _function(self, size: int, rows: int) -> Callable:
        key = (size, rows)
        if key not in self._functions:
            fn = self._group_step(rows)
            self._functions[key] = CompiledOrEager(fn, wanted=self.compile)
        return self._functions[key]

    def __call__(self, W1: Tensor, W2: Tensor, b: Tensor, t: Tensor):
        if self._buffers is None:
            self._buffers = (W1.new_empty(W1.shape[0]), torch.empty_like(W1),
                             torch.empty_like(W2), torch.empty_like(b))  # fmt: skip
        for g in self.groups:
            part = slice(g.start, g.stop)
            args = (W1[part], W2[part], b[part], self.probs[part], self.keys[part], t)
            *results, overflow = self._function(g.stop - g.start, g.rows)(*args)
            if g.rows < self.batch and bool(overflow):
                self.overflows += 1
                *results, _ = self._function(g.stop - g.start, self.batch)(*args)
            if len(self.groups) == 1:
                return tuple(results)
            for buffer, result in zip(self._buffers, results, strict=True):
                buffer[part] = result
        return self._buffers


def make_step(experiment: Experiment, device: str | torch.device | None = None) -> Step:
    """The step `train()` takes, on its own (the benchmark's and the tests' seam)."""
    return Step(experiment, pick_device(device) if not isinstance(device, torch.device) else device)


class SharedStep:
    """One training step of several experiments with the same `Experiment.batch_stream()`:
    `step([(W1, W2, b), ...], t)` -> [(loss, dW1, dW2, db), ...], one per experiment, the
    numbers of each experiment's own `Step`, bit for bit (their instances draw the same
    batches). Each group's batch is drawn and its non-empty rows gathered once, in one
    compiled call; then every experiment's instances step on those rows, one compiled call
    each.

    On a 2-core AMD EPYC the five capacity experiments' steps took 0.64-0.76 of the time of
    their five `Step`s (paired rounds on trained weights), and their whole run 620-687 s,
    where one after the other they had taken 733-825 s (B: 569-634 s). For a single
    experiment the fused `Step` is faster (this split took 1.0-1.2 times as long on B and
    D10), so `train` keeps it. One compiled call for every experiment's model per group was
    slower again (1.2-1.4 times), and one model function compiled for symbolic shapes
    (twelve compilations fewer) rounds differently from this one on small models.
    """

    def __init__(
        self, experiments: Sequence[Experiment], device: torch.device, groups=None
    ) -> None:
        _check_shared(experiments)
        first = experiments[0]
        self.groups = tuple(groups) if groups is not None else plan(first, device)
        self.batch, self.n = first.batch_size, first.n_features
        self.probs = torch.tensor(first.instance_probs, dtype=torch.float32, device=device)
        self.keys = _keys(first, first.data_seed, device)
        self.importances = [
            torch.tensor(e.importance(), dtype=torch.float32, device=device) for e in experiments
        ]
        self.head = head(first, device)  # the same for all (`_check_shared`)
        self.compile = compile_wanted(device)
        self.overflows = 0
        self._functions: dict[tuple[str, int, int, int], Callable] = {}
        self._buffers: list[tuple[Tensor, ...]] | None = None

    @property
    def compiled(self) -> bool:
        return self.compile and all(f.compiled for f in self._functions.values())

    def _draw(self, rows: int) -> Callable:
        batch, n = self.batch, self.n

        def draw_fn(probs: Tensor, keys: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
            x = counter_sample(batch, probs, n, keys, t)  # [group, batch, n]
            if rows >= batch:
                return x, torch.zeros((), dtype=torch.bool)
            return nonempty_rows(x, rows)

        return draw_fn

    def _model(self, rows: int) -> Callable:
        batch, kind = self.batch, self.head

        def model_fn(W1: Tensor, W2: Tensor, b: Tensor, x: Tensor, importance: Tensor):
            return rows_loss_and_grads(W1, W2, b, x, importance, batch, batch - rows, kind)

        return model_fn

    def _function(self, kind: str, size: int, rows: int, m: int = 0) -> Callable:
        key = (kind, size, rows, m)
        if key not in self._functions:
            fn = self._draw(rows) if kind == "draw" else self._model(rows)
            self._functions[key] = CompiledOrEager(fn, wanted=self.compile)
        return self._functions[key]

    def __call__(self, weights: Sequence[tuple[Tensor, Tensor, Tensor]], t: Tensor):
        if self._buffers is None:
            self._buffers = [(W1.new_empty(W1.shape[0]), torch.empty_like(W1),
                              torch.empty_like(W2), torch.empty_like(b))
                             for W1, W2, b in weights]  # fmt: skip
        for g in self.groups:
            part, size, rows = slice(g.start, g.stop), g.stop - g.start, g.rows
            x, overflow = self._function("draw", size, rows)(self.probs[part], self.keys[part], t)
            if rows < self.batch and bool(overflow):
                self.overflows += 1
                rows = self.batch
                x, _ = self._function("draw", size, rows)(self.probs[part], self.keys[part], t)
            results = []
            for (W1, W2, b), importance, buffers in zip(
                weights, self.importances, self._buffers, strict=True
            ):
                model_fn = self._function("model", size, rows, W1.shape[1])
                results.append(model_fn(W1[part], W2[part], b[part], x, importance))
                if len(self.groups) > 1:
                    for buffer, result in zip(buffers, results[-1], strict=True):
                        buffer[part] = result
        return results if len(self.groups) == 1 else self._buffers


def _check_shared(experiments: Sequence[Experiment]) -> None:
    if not experiments:
        raise ValueError("no experiment to train")
    names = [e.name for e in experiments]
    if len(set(names)) != len(names):
        raise ValueError(f"an experiment is listed twice: {names}")
    first = experiments[0]
    for e in experiments[1:]:
        if e.batch_stream() != first.batch_stream():
            raise ValueError(
                f"{e.name} and {first.name} do not draw the same batches (n_features, "
                "batch_size, data_seed, feature_probs, seeds and steps must agree), so they "
                "cannot train together; train them one at a time"
            )
        if e.model_kind() != first.model_kind():
            raise ValueError(
                f"{e.name} and {first.name} differ in readout or labels, so they cannot "
                "train together; train them one at a time"
            )


def _optimiser(model: AbsModel, experiment: Experiment) -> torch.optim.Optimizer:
    params = list(model.parameters())
    kwargs = dict(lr=experiment.lr, weight_decay=experiment.weight_decay)
    try:
        return torch.optim.AdamW(params, fused=True, **kwargs)
    except RuntimeError:  # a device without a fused kernel
        return torch.optim.AdamW(params, foreach=True, **kwargs)


# Starting weights (W1, W2, b), each with a leading instance axis, for a constructed start.
Start = tuple[Tensor, Tensor, Tensor]


def train(
    experiment: Experiment,
    device: str | None = None,
    progress: bool = True,
    stop_check: Callable[[], None] | None = None,
    start: Start | None = None,
) -> TrainResult:
    """Train every instance of `experiment`. `stop_check` is called before every step and
    may raise to end the run (the command line's way to honour a signal for certain).
    `start` gives the starting weights of a constructed experiment (see starts.py)."""
    return train_together([experiment], device, progress, stop_check, [start])[0]


def train_together(
    experiments: Sequence[Experiment],
    device: str | None = None,
    progress: bool = True,
    stop_check: Callable[[], None] | None = None,
    starts: Sequence[Start | None] | None = None,
) -> list[TrainResult]:
    """Train several experiments that draw the same batches (equal `batch_stream()`, like
    the five capacity experiments) in one loop that draws each batch once (`SharedStep`).
    Each result is bit for bit what `train` gives on that experiment alone; `seconds` and
    `phases` are those of the whole run. Experiments whose batches differ are refused."""
    experiments = list(experiments)
    _check_shared(experiments)
    starts = list(starts) if starts is not None else [None] * len(experiments)
    if len(starts) != len(experiments):
        raise ValueError("give one start (or None) per experiment")
    dev = pick_device(device)
    with _flush_denormals(dev), _room_to_compile():
        return _train(experiments, starts, dev, progress, stop_check or (lambda: None))


@contextmanager
def _room_to_compile():
    """Every group shape of every experiment trained in one process is one more compiled
    version of the same step function; torch stops compiling after 8 by default (and a
    step past that limit would run eagerly), so a run allows as many as it needs."""
    config = torch._dynamo.config
    before = config.recompile_limit
    config.recompile_limit = max(before, 1024)
    try:
        yield
    finally:
        config.recompile_limit = before


@contextmanager
def _flush_denormals(device: torch.device):
    """Treat subnormal floats as zero on the CPU while training. The recipe's small
    initialisation drives weights, gradients and Adam's moments into the subnormal range,
    where x86 arithmetic is many times slower; flushing them changes values below 1e-38."""
    if device.type != "cpu" or not torch.set_flush_denormal(True):
        yield
        return
    try:
        yield
    finally:
        torch.set_flush_denormal(False)


class _Run:
    """One experiment's model, optimiser and recycling generator in a training loop."""

    def __init__(self, experiment: Experiment, dev: torch.device, start: Start | None) -> None:
        self.experiment = experiment
        self.probs = torch.tensor(experiment.instance_probs, dtype=torch.float32, device=dev)
        if (start is not None) != (experiment.start == "constructed"):
            raise ValueError(
                f"{experiment.name}: a {experiment.start} start needs "
                + ("starting weights" if start is None else "no starting weights")
            )
        if start is not None:
            self.model = AbsModel(*(t.detach().float().clone().to(dev) for t in start))
        else:
            self.model = AbsModel.initialise(
                experiment.n_features,
                experiment.n_hidden,
                experiment.instance_seeds,
                dev,
                scale=experiment.init_scale,
            )
        if start is None and experiment.bias_init == "mean":
            with torch.no_grad():
                self.model.b.copy_((self.probs / 2)[:, None].expand_as(self.model.b))
        self.optimiser = _optimiser(self.model, experiment)
        self.generator = torch.Generator(dev).manual_seed(experiment.data_seed + 1)
        self.params = (self.model.W1, self.model.W2, self.model.b)
        # Detached views share storage with the parameters, so the optimiser's in-place
        # updates show through; passing them keeps autograd out of the compiled step.
        self.raw = tuple(p.detach() for p in self.params)

    def update(self, step: int, grads: Sequence[Tensor]) -> None:
        """AdamW at this step's learning rate, on the step's gradients."""
        for group in self.optimiser.param_groups:
            group["lr"] = self.experiment.lr * lr_factor(step, self.experiment)
        for param, grad in zip(self.params, grads, strict=True):
            param.grad = grad
        self.optimiser.step()

    def recycle(self) -> int:
        return recycle(self.model, self.optimiser, self.generator, self.experiment.init_scale)


def _train(
    experiments: list[Experiment],
    starts: list[Start | None],
    dev: torch.device,
    progress: bool,
    stop_check: Callable[[], None],
) -> list[TrainResult]:
    start = time.perf_counter()
    runs = [_Run(e, dev, start) for e, start in zip(experiments, starts, strict=True)]
    # One experiment takes the fused step; several draw each batch once for all of them.
    step_fn = Step(experiments[0], dev) if len(runs) == 1 else SharedStep(experiments, dev)

    def take_step(t: Tensor) -> list[tuple[Tensor, ...]]:
        if isinstance(step_fn, Step):
            return [step_fn(*runs[0].raw, t)]
        return step_fn([run.raw for run in runs], t)

    first = experiments[0]
    together = " + ".join(e.label for e in experiments)  # short: one line in a terminal
    bar = tqdm(
        range(first.steps),
        desc=f"{first.label} {first.name}" if len(runs) == 1 else together,
        unit="step",
        file=sys.stderr,
        disable=not progress,
        mininterval=0.5 if sys.stderr.isatty() else 10.0,
    )
    recycled = 0
    phases = dict.fromkeys(PHASES, 0.0)
    clock = _PhaseClock(dev, phases)
    clock.start("setup", since=start)
    for step in bar:
        stop_check()
        clock.start("first step (compiles)" if step == 0 else "steps")
        results = take_step(torch.tensor(step, dtype=torch.int64))
        for run, (_, *grads) in zip(runs, results, strict=True):
            run.update(step, grads)
        for run in runs:
            if step + 1 in run.experiment.recycle_at:
                clock.start("recycling")
                recycled += run.recycle()
        if progress and step % 200 == 0:
            # refresh=False: the bar redraws on its own clock, not on every update (CI logs)
            mean_loss = sum(loss.mean().item() for loss, *_ in results) / len(results)
            bar.set_postfix(dict(mean_loss=f"{mean_loss:.4g}", recycled=recycled), refresh=False)
    bar.close()

    clock.start("evaluation")
    evaluated = [evaluate(run.model, run.experiment, run.probs) for run in runs]
    clock.stop()
    compiled = step_fn.compiled and all(ok for _, ok in evaluated)
    seconds = time.perf_counter() - start
    return [
        TrainResult(
            *(p.detach().float().cpu().contiguous() for p in run.params),
            final_loss=final_loss,
            device=str(dev),
            seconds=seconds,
            mode="compiled" if compiled else "eager",
            phases=dict(phases),
        )
        for run, (final_loss, _) in zip(runs, evaluated, strict=True)
    ]


# Where a run's time goes, in `TrainResult.phases` (seconds); the benchmark prints them.
PHASES = ("setup", "first step (compiles)", "steps", "recycling", "evaluation")


class _PhaseClock:
    """Adds wall time to the phase that is running; on a GPU it waits for queued work at
    each switch, so a phase is charged for its own kernels (a few switches per run)."""

    def __init__(self, device: torch.device, phases: dict[str, float]) -> None:
        self.device, self.phases, self.phase, self.since = device, phases, None, 0.0

    def start(self, phase: str | None, since: float | None = None) -> None:
        if phase == self.phase:
            return
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        now = time.perf_counter()
        if self.phase is not None:
            self.phases[self.phase] += now - self.since
        self.phase, self.since = phase, now if since is None else since

    def stop(self) -> None:
        self.start(None)
