"""Constructed starting points for training (experiments with start = "constructed").

    W1, W2, b = starts.monosemantic(importance, m, p)       # one model, exact for m/2 features
    W1, W2, b = starts.initial(experiment, parent_weights)  # every instance of `experiment`

Training from random starts can end above a solution anyone can write down (on dense inputs,
the monosemantic one). A claim about what the task allows needs those solutions as starts
too: seed 0 of every p starts at the monosemantic solution, seed 1 continues the parent's
lowest-loss model at the next denser p (at the densest p, a second monosemantic start).
Each start gets a small perturbation (init_scale times the Xavier-normal scale, from the
instance's seed), so that neurons the construction leaves unused can be picked up.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from .data import mixing_matrix
from .experiments import Experiment


def monosemantic(
    importance: Sequence[float], m: int, p: float, mixing: Tensor | None = None
) -> tuple[Tensor, Tensor, Tensor]:
    """The monosemantic solution of one model (W1 [m, n], W2 [n, m], b [n]): the m // 2 most
    important features (the first on a tie) each get a neuron pair ReLU(x_i), ReLU(-x_i)
    summed into output i with bias 0, so y'_i = |x_i|; every other output is the constant
    p/2, its best. An odd m leaves one neuron at zero.

    With mixed labels |x| + M x (`mixing` = M), each pair also writes M_ki x_i =
    M_ki (ReLU(x_i) - ReLU(-x_i)) into every output k: the pair's feature is then
    computed whole in every label, and what is left of a label (the mixing of the other
    features) has mean 0, so the biases stay as they are."""
    n = len(importance)
    order = sorted(range(n), key=lambda i: (-importance[i], i))[: m // 2]
    W1, W2 = torch.zeros(m, n), torch.zeros(n, m)
    b = torch.full((n,), p / 2)
    for pair, i in enumerate(order):
        W1[2 * pair, i], W1[2 * pair + 1, i] = 1.0, -1.0
        W2[i, 2 * pair] = W2[i, 2 * pair + 1] = 1.0
        b[i] = 0.0
        if mixing is not None:
            W2[:, 2 * pair] += mixing[:, i]
            W2[:, 2 * pair + 1] -= mixing[:, i]
    return W1, W2, b


def initial(experiment: Experiment, parent) -> tuple[Tensor, Tensor, Tensor]:
    """The starting weights of every instance of a constructed experiment ([instances, ...]),
    given its parent's trained `store.Weights`."""
    if experiment.start != "constructed" or parent.experiment.name != experiment.parent:
        raise ValueError(f"{experiment.name} does not refine {parent.experiment.name}")
    n, m = experiment.n_features, experiment.n_hidden
    importance = experiment.importance()
    mixing = mixing_matrix(n, experiment.mixing, experiment.mixing_seed)
    std = experiment.init_scale * math.sqrt(2.0 / (n + m))
    probs = list(experiment.feature_probs)
    W1s, W2s, bs = [], [], []
    for p, seed in zip(experiment.instance_probs, experiment.instance_seeds, strict=True):
        denser = probs.index(p) - 1
        if seed == 1 and denser >= 0:
            k = parent.best(probs[denser])
            W1, W2, b = parent.W1[k].clone(), parent.W2[k].clone(), parent.b[k].clone()
        else:
            W1, W2, b = monosemantic(importance, m, p, mixing)
        g = torch.Generator().manual_seed(seed)
        W1s.append(W1 + torch.randn(m, n, generator=g) * std)
        W2s.append(W2 + torch.randn(n, m, generator=g) * std)
        bs.append(b)
    return torch.stack(W1s), torch.stack(W2s), torch.stack(bs)
