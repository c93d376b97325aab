"""The input distribution of SPEC: sparse features, uniform on [-1, 1] when present.

Each feature x_i is independently 0 with probability S = 1 - p and otherwise uniform on
[-1, 1]; the target is |x|. Every instance has its own p. Batches are laid out
[instances, batch, features].

Two samplers draw this distribution, both from explicit seeds and never from global state:

* `sample` uses a `torch.Generator`; it is the reference, which the tests hold the other
  sampler to, and which the book uses to show example inputs.
* `counter_sample` is what training and evaluation use: each element is a hash of (seed,
  step, index),
  so a batch costs no generator state and fuses into one compiled loop. One uniform number
  per element decides both presence and value: with u uniform on [0, 1), the element is
  present when u < p, and then u / p is again uniform on [0, 1), so 2u/p - 1 is uniform on
  [-1, 1). u has 32 random bits, so even at p = 0.001 a present value takes one of about
  4.3 million evenly spaced levels.
"""

from __future__ import annotations

import struct

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


def _hash32(z: Tensor) -> Tensor:
    """A bijective 32-bit integer mix (multiply-xorshift), on int64 holding 32-bit values."""
    z = ((z ^ (z >> 16)) * _MULTIPLIER) & _MASK32
    z = ((z ^ (z >> 16)) * _MULTIPLIER) & _MASK32
    return z ^ (z >> 16)


_SIGN = -(2**31)  # the int32 with only its sign bit set


def _mix32(z: Tensor) -> Tensor:
    """`_hash32` on int32 tensors: the same 32 bits in wrapping int32 arithmetic, which a
    compiler vectorises twice as wide as int64 (the shifts are masked to act unsigned)."""
    z = (z ^ ((z >> 16) & 0xFFFF)) * _MULTIPLIER
    z = (z ^ ((z >> 16) & 0xFFFF)) * _MULTIPLIER
    return z ^ ((z >> 16) & 0xFFFF)


def _as_int32(z: Tensor) -> Tensor:
    """int64 values in [0, 2**32) -> the int32 values with the same 32 bits."""
    return (z - ((z >> 31) << 32)).to(torch.int32)


def stream_keys(base_seed: int, seeds: list[int], feature_probs: list[float]) -> Tensor:
    """One 32-bit key per instance, from (base seed, instance seed, instance p) alone, so an
    instance's batches do not depend on which other instances train beside it."""
    if len(seeds) != len(feature_probs):
        raise ValueError("one seed per instance and one p per instance")
    p_bits = [struct.unpack("<I", struct.pack("<f", p))[0] for p in feature_probs]
    key = _hash32(torch.tensor(p_bits, dtype=torch.int64))
    key = _hash32((torch.tensor(seeds, dtype=torch.int64) & _MASK32) ^ key)
    return _hash32((base_seed & _MASK32) ^ key)


def counter_bits(keys: Tensor, step: Tensor, shape: tuple[int, int, int]) -> Tensor:
    """Uniform 32-bit numbers (int32 bit patterns) for a batch of shape [instances, ...],
    a pure function of (instance key, step, index within the instance's block).

    `keys` is `stream_keys(...)` on the batch's device; `step` a 0-d int64 tensor (a tensor,
    so a compiled caller is not rebuilt per step). Element j of instance i at step t has the
    64-bit counter c = t * block + j, never reused within the instance's stream. Its high
    half, mixed with the instance key, keys a bijective hash of its low half:
    z = hash(low(c) xor hash(high(c) xor key_i)), so within a step no two elements of an
    instance share a number. Within a step the high half takes at most two values, so the
    keys are hashed once per step and each element only does 32-bit work.
    """
    instances, *rest = shape
    block = 1
    for size in rest:
        block *= size
    if block >= 2**31:
        raise ValueError("a block of 2**31 or more elements needs a wider counter")
    base = step.to(device=keys.device, dtype=torch.int64) * block  # counter of element 0
    key0 = _as_int32(_hash32((base >> 32) ^ keys)).view(instances, *[1] * len(rest))
    key1 = _as_int32(_hash32(((base >> 32) + 1) ^ keys)).view_as(key0)  # after a wrap
    start = _as_int32(base & _MASK32)
    index = torch.arange(block, dtype=torch.int32, device=keys.device).view(1, *rest)
    low = start + index  # wraps modulo 2**32
    wrapped = (low ^ _SIGN) < (start ^ _SIGN)  # unsigned comparison: low passed 2**32
    return _mix32(low ^ torch.where(wrapped, key1, key0))


def sparse_from_bits(z: Tensor, feature_probs: Tensor) -> Tensor:
    """z: [instances, batch, features] 32-bit uniform numbers -> sparse inputs, float32.

    With u = z / 2**32 (z read unsigned), the element is present when u < p, and 2u/p - 1
    is its value. Presence is decided on the integers, so it is exact; the value is z times
    a float32 scale, exact to about 1e-7 of the value's range.
    """
    p = feature_probs.double()[:, None, None]
    # unsigned z < ceil(p 2**32)  <=>  signed (z xor sign bit) <= ceil(p 2**32) - 2**31 - 1
    limit = (torch.ceil(p * 2.0**32) - 2.0**31 - 1).to(torch.int32)
    scale = (2.0 / (p * 2.0**32)).float()
    shifted = z ^ _SIGN  # z - 2**31, as a signed number
    # z read unsigned, in float32: exact to 1e-7 relative, so small z (all a sparse
    # instance ever uses) keep their precision.
    unsigned = torch.where(z >= 0, z.float(), z.float() + 2.0**32)
    value = (unsigned * scale - 1).clamp(-1.0, 1.0)  # rounding must not leave [-1, 1]
    return value * (shifted <= limit)


def counter_sample(
    batch_size: int, feature_probs: Tensor, n_features: int, keys: Tensor, step: Tensor
) -> Tensor:  # [instances, batch, features]
    """The training sampler: batch number `step` of each instance's stream (`keys`)."""
    shape = (feature_probs.shape[0], batch_size, n_features)
    return sparse_from_bits(counter_bits(keys, step, shape), feature_probs)


def mixing_matrix(n_features: int, sigma: float, seed: int) -> Tensor | None:
    """The label-mixing matrix M of an experiment ([n, n], float32), or None when sigma = 0.

    Symmetric, zero on the diagonal, every other entry normal with standard deviation sigma,
    drawn from `seed` alone: the shape of the overlaps W_E W_E^T - I of a random embedding,
    which is where mixed labels come from in the residual-stream toy model that Bhagat et
    al. audited. The target becomes |x| + M x (`model.targets`).
    """
    if sigma == 0:
        return None
    g = torch.Generator("cpu").manual_seed(seed)
    upper = torch.randn(n_features, n_features, generator=g, dtype=torch.float64).triu(1)
    return ((upper + upper.T) * sigma).float()
