"""The input distribution of SPEC: sparse features, uniform on [-1, 1] when present.

Each feature x_i is independently 0 with probability S = 1 - p and otherwise drawn
uniformly from [-1, 1]; the target is |x|. Every instance has its own p. All randomness
comes from an explicit `torch.Generator`, so a run is reproducible from its seed alone.
"""

from __future__ import annotations

import torch
from torch import Tensor


def sample(
    batch_size: int,
    feature_probs: Tensor,  # [instances], p = 1 - S of each instance
    n_features: int,
    generator: torch.Generator,
) -> Tensor:  # [batch, instances, features]
    """Draw a batch of sparse inputs, on the generator's device."""
    if feature_probs.ndim != 1:
        raise ValueError("feature_probs must be a 1-D tensor with one entry per instance")
    if not bool(((feature_probs > 0) & (feature_probs <= 1)).all()):
        raise ValueError("feature probabilities must lie in (0, 1]")
    device = generator.device
    shape = (batch_size, feature_probs.shape[0], n_features)
    probs = feature_probs.to(device=device, dtype=torch.float32)[None, :, None]
    present = torch.rand(shape, generator=generator, device=device) < probs
    values = torch.rand(shape, generator=generator, device=device) * 2 - 1
    return torch.where(present, values, torch.zeros((), device=device))


def eval_batch(
    batch_size: int, feature_probs: Tensor, n_features: int, seed: int, device: torch.device
) -> Tensor:  # [batch, instances, features]
    """A fixed evaluation batch, drawn on the CPU so it is the same on every device."""
    generator = torch.Generator("cpu").manual_seed(seed)
    return sample(batch_size, feature_probs.cpu(), n_features, generator).to(device)
