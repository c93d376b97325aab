"""Facts of the chapter on experiment A (n = 3, m = 6, dense, equal importance): which seeds
learn the textbook solution, how well the shown model computes |x|, what each of its neurons
computes, and that the footnote-15 rescaling leaves its function unchanged.

    from superposition import findings
    f = findings.no_superposition()
    f.textbook, f.seeds          # seeds with one neuron per side of each feature, of all
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch

from .. import analysis, store
from ..model import outputs

NAME = "no-superposition"
# Random dense inputs on which the errors are measured, and the seed that draws them.
ERROR_SAMPLES = 10_000
# Inputs far outside the training range, on which raw and rescaled models are compared.
RESCALE_SAMPLES = 100_000
RESCALE_RANGE = 10.0
SEED = 0
# The graph view leaves out edges below this |w| (the chapter draws with it; its caption
# says every other weight of a neuron is below it).
GRAPH_THRESHOLD = 0.1


@dataclass(frozen=True)
class Neuron:
    """One hidden neuron of the shown model, after rescaling."""

    index: int  # in the raw weights
    feature: int  # the feature it reads (its largest |W1| weight)
    sign: int  # +1: computes ReLU(x_feature); -1: ReLU(-x_feature)
    w1: float  # its W1 weight on that feature (+-1 after rescaling)
    w2: float  # its W2 weight to that feature's output
    largest_other_w1: float  # its largest |W1| weight on any other feature
    largest_other_w2: float  # its largest |W2| weight to any other output
    scale: float  # its largest raw |W1| weight, which the rescaling divides out


@dataclass(frozen=True)
class NoSuperpositionFindings:
    n: int
    m: int
    p: float  # the one feature probability (1: dense)
    equal_importance: bool
    seeds: int
    textbook: int  # seeds whose neurons are one per side of each feature
    polysemantic_per_seed: tuple[int, ...]
    instance: int  # the lowest-loss seed, which the chapter shows
    loss: float
    error_samples: int
    mean_error: float  # of the shown model, mean |y' - |x|| over random dense inputs
    mean_error_per_seed: tuple[float, ...]
    max_error: float  # over every seed and input
    max_bias: float  # largest |b_i| of the shown model
    single_feature_error: float  # largest |y'_i - |x_i|| with feature i alone on [-1, 1]
    neurons: tuple[Neuron, ...]  # in display order: by feature, positive side first
    order: tuple[int, ...]  # the raw indices of `neurons`
    graph_threshold: float  # edges below this |w| are not drawn
    largest_cross_weight: float  # largest |W1| or |W2| off a neuron's own feature, rescaled
    scale_min: float
    scale_max: float
    rescale_samples: int
    rescale_range: float
    rescale_difference: float  # largest |raw - rescaled| output, in double precision


@functools.cache
def no_superposition() -> NoSuperpositionFindings:
    w = store.load(NAME)
    e = w.experiment
    n, m, seeds = e.n_features, e.n_hidden, len(w.seeds)
    W1, W2, b = w.W1.double(), w.W2.double(), w.b.double()
    R1, R2 = analysis.rescale(W1, W2)
    feature, sign = analysis.primary_features(R1)
    textbook_sides = sorted((i, s) for i in range(n) for s in (-1, 1))
    textbook = [
        sorted(zip(feature[k].tolist(), sign[k].int().tolist(), strict=True)) == textbook_sides
        for k in range(seeds)
    ]
    poly = analysis.polysemantic_neurons(W1, W2).sum(-1)

    g = torch.Generator().manual_seed(SEED)
    x = (torch.rand(1, ERROR_SAMPLES, n, generator=g, dtype=torch.float64) * 2 - 1).expand(
        seeds, -1, -1
    )
    with torch.no_grad():
        errors = (outputs(W1, W2, b, x) - x.abs()).abs()  # [seeds, samples, n]
    k = w.best(e.feature_probs[0])

    grid = torch.linspace(-1, 1, 201, dtype=torch.float64)
    response = analysis.single_feature_response(W1[k : k + 1], W2[k : k + 1], b[k : k + 1], grid)

    f, s = feature[k].tolist(), sign[k].int().tolist()
    order = sorted(range(m), key=lambda j: (f[j], -s[j]))
    scales = W1[k].abs().amax(-1)
    neurons = []
    for j in order:
        others_in = [i for i in range(n) if i != f[j]]
        neurons.append(Neuron(
            index=j, feature=f[j], sign=s[j], w1=float(R1[k, j, f[j]]), w2=float(R2[k, f[j], j]),
            largest_other_w1=float(R1[k, j, others_in].abs().max()),
            largest_other_w2=float(R2[k, others_in, j].abs().max()),
            scale=float(scales[j]),
        ))  # fmt: skip

    x_big = torch.rand(1, RESCALE_SAMPLES, n, generator=g, dtype=torch.float64) * 2 - 1
    x_big = x_big * RESCALE_RANGE
    with torch.no_grad():
        raw = outputs(W1[k : k + 1], W2[k : k + 1], b[k : k + 1], x_big)
        rescaled = outputs(R1[k : k + 1], R2[k : k + 1], b[k : k + 1], x_big)

    return NoSuperpositionFindings(
        n=n,
        m=m,
        p=e.feature_probs[0],
        equal_importance=e.importance_decay == 1.0,
        seeds=seeds,
        textbook=sum(textbook),
        polysemantic_per_seed=tuple(int(c) for c in poly),
        instance=k,
        loss=w.final_loss[k],
        error_samples=ERROR_SAMPLES,
        mean_error=float(errors[k].mean()),
        mean_error_per_seed=tuple(errors.mean(dim=(1, 2)).tolist()),
        max_error=float(errors.amax()),
        max_bias=float(b[k].abs().max()),
        single_feature_error=float((response[0] - grid.abs()).abs().amax()),
        neurons=tuple(neurons),
        order=tuple(order),
        graph_threshold=GRAPH_THRESHOLD,
        largest_cross_weight=max(max(u.largest_other_w1, u.largest_other_w2) for u in neurons),
        scale_min=float(scales.min()),
        scale_max=float(scales.max()),
        rescale_samples=RESCALE_SAMPLES,
        rescale_range=RESCALE_RANGE,
        rescale_difference=float((raw - rescaled).abs().max()),
    )
