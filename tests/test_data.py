"""Both samplers draw SPEC's distribution: zero with probability 1 - p, else U[-1, 1].

Statistical checks use fixed seeds and tolerances of about five standard errors, so a
correct sampler passes and a sampler off by a few percent of p fails. Every check runs on
the reference sampler (torch.Generator) and on the counter-based one training uses.
"""

import math

import pytest
import torch

from superposition.data import (
    _hash32,
    counter_bits,
    counter_sample,
    sample,
    stream_keys,
)

PROBS = [1.0, 0.3, 0.03, 0.001]


@pytest.fixture(scope="module", params=["generator", "counter"])
def batch(request) -> torch.Tensor:  # [instances, batch, features]
    if request.param == "generator":
        return sample(20_000, torch.tensor(PROBS), 50, torch.Generator("cpu").manual_seed(1234))
    keys = stream_keys(1234, [0] * len(PROBS), PROBS)
    return counter_sample(20_000, torch.tensor(PROBS), 50, keys, step=torch.tensor(3))


def test_shape_and_dtype(batch):
    assert batch.shape == (len(PROBS), 20_000, 50)
    assert batch.dtype == torch.float32


@pytest.mark.parametrize("k,p", list(enumerate(PROBS)))
def test_fraction_present_matches_p(batch, k, p):
    present = (batch[k] != 0).double()
    n = present.numel()
    tolerance = 5 * math.sqrt(p * (1 - p) / n) + 1e-12
    assert abs(present.mean().item() - p) <= tolerance


def test_present_values_are_uniform_on_minus_one_one(batch):
    values = batch[batch != 0].double().sort().values
    assert values.min() >= -1 and values.max() <= 1
    n = values.numel()
    # Kolmogorov-Smirnov distance to U[-1, 1]; 1.95/sqrt(n) is the 0.1 % critical value.
    empirical = torch.arange(1, n + 1, dtype=torch.float64) / n
    distance = (empirical - (values + 1) / 2).abs().max().item()
    assert distance < 1.95 / math.sqrt(n)
    assert abs(values.mean().item()) < 5 * math.sqrt(1 / 3 / n)


def test_sparse_instance_values_are_uniform_too(batch):
    values = batch[3][batch[3] != 0].double()  # p = 0.001: about a thousand values
    n = values.numel()
    assert n > 500
    assert abs(values.abs().mean().item() - 0.5) < 5 * math.sqrt(1 / 12 / n)
    assert (values > 0).double().mean().item() == pytest.approx(0.5, abs=5 * 0.5 / math.sqrt(n))


def test_features_and_instances_are_independent(batch):
    present = (batch[1] != 0).double()  # p = 0.3
    corr = torch.corrcoef(present.T)  # [features, features]
    off_diagonal = corr[~torch.eye(50, dtype=torch.bool)]
    assert off_diagonal.abs().max().item() < 5 / math.sqrt(20_000)
    across = torch.corrcoef(torch.stack([batch[0, :, 0], batch[1, :, 0]]))[0, 1]
    assert abs(across.item()) < 5 / math.sqrt(20_000)


def test_same_seed_same_batch_other_seed_other_batch():
    probs = torch.tensor([0.5, 0.1])

    def draw(seed):
        return sample(64, probs, 10, torch.Generator("cpu").manual_seed(seed))

    assert torch.equal(draw(7), draw(7))
    assert not torch.equal(draw(7), draw(8))


@pytest.mark.parametrize("bad", [[0.0], [1.5], [-0.1]])
def test_bad_probabilities_are_refused(bad):
    with pytest.raises(ValueError, match="probabilit"):
        sample(4, torch.tensor(bad), 3, torch.Generator("cpu"))


def draw(seed, step, probs=(1.0, 0.3), instance_seeds=(0, 0), n=20):
    keys = stream_keys(seed, list(instance_seeds), list(probs))
    return counter_sample(4096, torch.tensor(probs), n, keys, torch.tensor(step))


def test_counter_batches_differ_between_steps_and_seeds():
    a = draw(0, 0)
    assert torch.equal(a, draw(0, 0))
    for other in (draw(0, 1), draw(1, 0), draw(0, 0, instance_seeds=(5, 5))):
        corr = torch.corrcoef(torch.stack([a[0].flatten(), other[0].flatten()]))[0, 1]
        assert abs(corr.item()) < 5 / math.sqrt(a[0].numel())
        assert (a[0] == other[0]).double().mean().item() < 1e-4


def test_an_instance_stream_does_not_depend_on_its_neighbours():
    alone = draw(0, 7, probs=(0.3,), instance_seeds=(2,))
    among = draw(0, 7, probs=(1.0, 0.3, 0.1), instance_seeds=(9, 2, 2))
    assert torch.equal(alone[0], among[1])
    # The same seed at another sparsity gets an independent stream, not the same numbers.
    corr = torch.corrcoef(torch.stack([(among[1] != 0).double().flatten(),
                                       (among[2] != 0).double().flatten()]))[0, 1]  # fmt: skip
    assert abs(corr.item()) < 5 / math.sqrt(among[1].numel())


def test_counter_bits_have_no_collisions_within_a_step():
    keys = stream_keys(7, [0, 1], [1.0, 1.0])
    z = counter_bits(keys, torch.tensor(123_456), (2, 1024, 512))
    assert z.dtype == torch.int32
    assert z[0].unique().numel() == z[0].numel()


def reference_bits(key, step, block):
    """The counter hash written plainly in int64: hash each element's 64-bit counter."""
    counter = torch.arange(block, dtype=torch.int64) + step * block
    high = _hash32((counter >> 32) ^ key)
    return _hash32((counter & 0xFFFFFFFF) ^ high)


@pytest.mark.parametrize("step", [0, 1, 1495, 1496, 10**9])  # 1496: the low half wraps
def test_counter_bits_equal_the_plain_64_bit_definition(step):
    keys = stream_keys(3, [0, 1], [0.5, 0.5])
    z = counter_bits(keys, torch.tensor(step), (2, 1000, 2870))
    for i in range(2):
        expected = reference_bits(int(keys[i]), step, 2_870_000)
        assert torch.equal(z[i].flatten().to(torch.int64) & 0xFFFFFFFF, expected)


def test_compiled_counter_sampler_matches_eager():
    probs = torch.tensor([1.0, 0.01])
    keys = stream_keys(5, [0, 0], [1.0, 0.01])

    def sampler(step):
        return counter_sample(512, probs, 30, keys, step)

    compiled = torch.compile(sampler, dynamic=False)
    eager = sampler(torch.tensor(9))
    torch.testing.assert_close(compiled(torch.tensor(9)), eager, rtol=0, atol=1e-6)
    assert torch.equal(compiled(torch.tensor(9)) != 0, eager != 0)
