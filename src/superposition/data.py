"""The input distribution of SPEC: sparse features, uniform on [-1, 1] when present.

Each feature x_i is independently 0 with probability S = 1 - p and otherwise uniform on
[-1, 1]; the target is |x|. Every instance has its own p. Batches are laid out
[instances, batch, features].

Two samplers draw this distribution, both from explicit seeds and never from global state:

* `sample` uses a `torch.Generator`; it is the reference, and draws the evaluation batches.
* `counter_sample` is what training uses: each element is a hash of (seed, step, index),
  so a batch costs no generator state and fuses into one compiled loop. One uniform number
  per element decides both presence and value: with u uniform on [0, 1), the element is
  present when u < p, and then u / p is again uniform on [0, 1), so 2u/p - 1 is uniform on
  [-1, 1). u has 32 random bits, so even at p = 0.001 a present value takes one of about
  4.3 million evenly spaced levels.
"""

from __future__ import annotations

import torch
from torch import Tensor

_MASK32 = 0xFFFFFFFF
_MULTIPLIER = 0x45D9F3B  # < 2**31, so a 32-bit value times it never overflows int64


def _check(feature_probs: Tensor) -> None:
    if feature_probs.ndim != 1:
        raise ValueError("feature_probs must be a 1-D tensor with one entry per instance")
    if not bool(((feature_probs > 0) & (feature_probs <= 1)).all()):
        raise ValueError("feature probabilities must lie in (0, 1]")


def sample(
    batch_size: int,
    feature_probs: Tensor,  # [instances], p = 1 - S of each instance
    n_features: int,
    generator: torch.Generator,
) -> Tensor:  # [instances, batch, features]
    """Reference sampler: presence and value from two draws of `generator`."""
    _check(feature_probs)
    device = generator.device
    shape = (feature_probs.shape[0], batch_size, n_features)
    probs = feature_probs.to(device=device, dtype=torch.float32)[:, None, None]
    present = torch.rand(shape, generator=generator, device=device) < probs
    values = torch.rand(shape, generator=generator, device=device) * 2 - 1
    return values * present


def eval_batch(
    batch_size: int, feature_probs: Tensor, n_features: int, seed: int, device: torch.device
) -> Tensor:  # [instances, batch, features]
    """A fixed evaluation batch, drawn on the CPU so it is the same on every device."""
    generator = torch.Generator("cpu").manual_seed(seed)
    return sample(batch_size, feature_probs.cpu(), n_features, generator).to(device)


def _hash32(z: Tensor) -> Tensor:
    """A bijective 32-bit integer mix (multiply-xorshift), on int64 holding 32-bit values."""
    z = ((z ^ (z >> 16)) * _MULTIPLIER) & _MASK32
    z = ((z ^ (z >> 16)) * _MULTIPLIER) & _MASK32
    return z ^ (z >> 16)


def _hash32_int(z: int) -> int:
    """`_hash32` on a Python int (for the seed, a constant of the compiled sampler)."""
    for _ in range(2):
        z = ((z ^ (z >> 16)) * _MULTIPLIER) & _MASK32
    return z ^ (z >> 16)


def counter_bits(seed: int, step: Tensor, shape: tuple[int, ...], device) -> Tensor:
    """Uniform 32-bit integers (in int64), a pure function of (seed, step, element index).

    `step` is a 0-d int64 tensor (a tensor, so a compiled caller is not rebuilt per step).
    The counter step * numel + index is hashed in two halves: the high half (mixed with
    the seed) keys a bijective hash of the low half, so within one step no two elements
    share a number and no counter is ever reused.
    """
    numel = 1
    for size in shape:
        numel *= size
    counter = torch.arange(numel, dtype=torch.int64, device=device).view(shape)
    counter = counter + step.to(device) * numel
    high = _hash32((counter >> 32) ^ _hash32_int(seed & _MASK32))
    return _hash32((counter & _MASK32) ^ high)


def sparse_from_bits(z: Tensor, feature_probs: Tensor) -> Tensor:
    """z: [instances, batch, features] uniform on [0, 2**32) -> sparse inputs, float32.

    With u = z / 2**32, the element is present when u < p, and 2u/p - 1 is its value. The
    comparison is done on the integers, so presence is exact; the value is z times a
    float32 scale, exact to about 1e-7.
    """
    p = feature_probs.double()[:, None, None]
    threshold = torch.ceil(p * 2.0**32).long()
    scale = (2.0 / (p * 2.0**32)).float()
    return (z.float() * scale - 1) * (z < threshold)


def counter_sample(
    batch_size: int, feature_probs: Tensor, n_features: int, seed: int, step: Tensor
) -> Tensor:  # [instances, batch, features]
    """The training sampler: batch number `step` of the stream named by `seed`."""
    shape = (feature_probs.shape[0], batch_size, n_features)
    z = counter_bits(seed, step, shape, feature_probs.device)
    return sparse_from_bits(z, feature_probs)
