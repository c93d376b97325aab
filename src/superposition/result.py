"""What a training run hands to the weight store: the weights and how they were made.

It lives below both `train` (which makes it) and `store` (which writes it), so the store
never imports the trainer.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import Tensor


@dataclass(frozen=True)
class TrainResult:
    W1: Tensor  # [instances, m, n], float32, on the CPU
    W2: Tensor  # [instances, n, m]
    b: Tensor  # [instances, n]
    final_loss: list[float]  # per instance, on the fixed evaluation batch
    device: str
    seconds: float
    # "compiled" (torch.compile) or "eager": the two round differently, so a bitwise
    # comparison holds only between runs of the same mode (and the same kind of CPU).
    mode: str = "compiled"
    phases: dict[str, float] = field(default_factory=dict)  # seconds by phase (train.PHASES)
