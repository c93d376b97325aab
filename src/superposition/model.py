"""The absolute-value model of SPEC, vectorised over a leading axis of instances.

    h  = ReLU(W1 x)        W1: [instances, m, n]   (no hidden bias, as in the paper)
    y' = ReLU(W2 h + b)    W2: [instances, n, m],  b: [instances, n]

Each instance is an independent model; training all of them in one run is what makes a
sweep over sparsities and seeds cheap.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn


class AbsModel(nn.Module):
    def __init__(self, W1: Tensor, W2: Tensor, b: Tensor) -> None:
        super().__init__()
        instances, m, n = W1.shape
        if W2.shape != (instances, n, m) or b.shape != (instances, n):
            raise ValueError(
                f"shapes do not fit: W1 {tuple(W1.shape)}, W2 {tuple(W2.shape)}, b {tuple(b.shape)}"
            )
        self.W1 = nn.Parameter(W1)
        self.W2 = nn.Parameter(W2)
        self.b = nn.Parameter(b)

    @classmethod
    def initialise(
        cls, n_features: int, n_hidden: int, seeds: Sequence[int], device: torch.device
    ) -> AbsModel:
        """Xavier-normal weights and a zero bias; instance k is drawn from `seeds[k]` alone."""
        std = math.sqrt(2.0 / (n_features + n_hidden))
        W1, W2 = [], []
        for seed in seeds:
            g = torch.Generator("cpu").manual_seed(seed)
            W1.append(torch.randn(n_hidden, n_features, generator=g) * std)
            W2.append(torch.randn(n_features, n_hidden, generator=g) * std)
        b = torch.zeros(len(seeds), n_features)
        return cls(torch.stack(W1).to(device), torch.stack(W2).to(device), b.to(device))

    def hidden(self, x: Tensor) -> Tensor:  # [batch, instances, n] -> [batch, instances, m]
        return torch.relu(torch.einsum("bin,imn->bim", x, self.W1))

    def forward(self, x: Tensor) -> Tensor:  # [batch, instances, n] -> [batch, instances, n]
        h = self.hidden(x)
        return torch.relu(torch.einsum("bim,inm->bin", h, self.W2) + self.b)


def weighted_loss(y_pred: Tensor, x: Tensor, importance: Tensor) -> Tensor:
    """SPEC's loss per instance: sum_i I_i (|x_i| - y'_i)^2, averaged over the batch.

    y_pred, x: [batch, instances, n]; importance: [n]. Returns [instances].
    """
    return (importance * (x.abs() - y_pred) ** 2).sum(-1).mean(0)
