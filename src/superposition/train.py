"""Train one experiment: every instance of it in one vectorised run. No file I/O here.

    result = train(experiments.get("sparsity-sweep"))           # device picked for you
    result = train(experiment, device="cpu", progress=False)

On the CPU a run is bitwise reproducible: the initial weights come from each instance's
seed, the batches from the experiment's `data_seed`, and nothing reads global random state.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass

import torch
from torch import Tensor
from tqdm import tqdm

from .data import eval_batch, sample
from .experiments import Experiment
from .model import AbsModel, weighted_loss


@dataclass(frozen=True)
class TrainResult:
    W1: Tensor  # [instances, m, n], float32, on the CPU
    W2: Tensor  # [instances, n, m]
    b: Tensor  # [instances, n]
    final_loss: list[float]  # per instance, on the fixed evaluation batch
    device: str
    seconds: float


def pick_device(requested: str | None = None) -> torch.device:
    """CUDA, then MPS, then the CPU; or exactly `requested`, failing clearly if unavailable."""
    if requested in (None, "auto"):
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    available = {
        "cpu": True,
        "cuda": torch.cuda.is_available(),
        "mps": torch.backends.mps.is_available(),
    }
    kind = requested.split(":")[0]
    if kind not in available:
        raise ValueError(f"unknown device {requested!r}; use auto, cpu, cuda or mps")
    if not available[kind]:
        raise ValueError(f"device {requested!r} is not available on this machine")
    return torch.device(requested)


def lr_factor(step: int, experiment: Experiment) -> float:
    """Multiplier of the base learning rate at `step` (0-based)."""
    warm = experiment.warmup_steps
    if step < warm:
        return (step + 1) / warm
    if experiment.lr_schedule == "constant":
        return 1.0
    progress = (step - warm) / max(1, experiment.steps - warm)
    return 0.5 * (1.0 + math.cos(math.pi * progress))


@torch.no_grad()
def evaluate(model: AbsModel, experiment: Experiment, probs: Tensor) -> list[float]:
    """Per-instance loss on the experiment's fixed evaluation batch, in chunks."""
    device = model.W1.device
    x = eval_batch(
        experiment.eval_batch_size, probs, experiment.n_features, experiment.eval_seed, device
    )
    importance = torch.tensor(experiment.importance(), device=device)
    total = torch.zeros(experiment.n_instances, dtype=torch.float64, device=device)
    for chunk in x.split(8192):
        total += weighted_loss(model(chunk), chunk, importance).double() * chunk.shape[0]
    return (total / x.shape[0]).cpu().tolist()


def train(
    experiment: Experiment, device: str | None = None, progress: bool = True
) -> TrainResult:
    dev = pick_device(device)
    start = time.perf_counter()
    probs = torch.tensor(experiment.instance_probs, dtype=torch.float32, device=dev)
    importance = torch.tensor(experiment.importance(), dtype=torch.float32, device=dev)
    model = AbsModel.initialise(
        experiment.n_features, experiment.n_hidden, experiment.instance_seeds, dev
    )
    optimiser = torch.optim.AdamW(
        model.parameters(), lr=experiment.lr, weight_decay=experiment.weight_decay
    )
    generator = torch.Generator(dev).manual_seed(experiment.data_seed)

    bar = tqdm(
        range(experiment.steps),
        desc=f"{experiment.label} {experiment.name}",
        unit="step",
        file=sys.stderr,
        disable=not progress,
        mininterval=0.5 if sys.stderr.isatty() else 10.0,
    )
    for step in bar:
        for group in optimiser.param_groups:
            group["lr"] = experiment.lr * lr_factor(step, experiment)
        x = sample(experiment.batch_size, probs, experiment.n_features, generator)
        loss = weighted_loss(model(x), x, importance)  # [instances]
        optimiser.zero_grad(set_to_none=True)
        # Instances share no parameters, so the sum trains each one on its own loss.
        loss.sum().backward()
        optimiser.step()
        if progress and step % 200 == 0:
            bar.set_postfix(mean_loss=f"{loss.mean().item():.4g}")
    bar.close()

    final_loss = evaluate(model, experiment, probs)
    return TrainResult(
        W1=model.W1.detach().float().cpu().contiguous(),
        W2=model.W2.detach().float().cpu().contiguous(),
        b=model.b.detach().float().cpu().contiguous(),
        final_loss=final_loss,
        device=str(dev),
        seconds=time.perf_counter() - start,
    )
