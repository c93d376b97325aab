"""The absolute-value model of SPEC, vectorised over a leading axis of instances.

    h  = ReLU(W1 x)        W1: [instances, m, n]   (no hidden bias, as in the paper)
    y' = ReLU(W2 h + b)    W2: [instances, n, m],  b: [instances, n]

and two variants that the scaling chapter trains to see where the model's advantage comes
from: a linear readout y' = W2 h + b, and mixed labels |x| + M x in place of |x|.

Each instance is an independent model; training all of them in one run is what makes a
sweep over sparsities and seeds cheap. Batches are [instances, batch, n], so every layer
is one batched matrix product. `loss_and_grads` is the hand-written backward pass that
training uses; a test checks it against autograd.
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
        cls,
        n_features: int,
        n_hidden: int,
        seeds: Sequence[int],
        device: torch.device,
        scale: float = 1.0,
    ) -> AbsModel:
        """Xavier-normal weights (times `scale`) and a zero bias; instance k is drawn from
        `seeds[k]` alone."""
        std = scale * math.sqrt(2.0 / (n_features + n_hidden))
        W1, W2 = [], []
        for seed in seeds:
            g = torch.Generator("cpu").manual_seed(seed)
            W1.append(torch.randn(n_hidden, n_features, generator=g) * std)
            W2.append(torch.randn(n_features, n_hidden, generator=g) * std)
        b = torch.zeros(len(seeds), n_features)
        return cls(torch.stack(W1).to(device), torch.stack(W2).to(device), b.to(device))

    def forward(self, x: Tensor) -> Tensor:  # [instances, batch, n] -> [instances, batch, n]
        return outputs(self.W1, self.W2, self.b, x)


def outputs(W1: Tensor, W2: Tensor, b: Tensor, x: Tensor, readout: str = "relu") -> Tensor:
    """y' of the model with weights (W1, W2, b) on x: [instances, batch, n] -> the same.
    `readout` "linear" leaves out the output ReLU."""
    h = torch.relu(torch.bmm(x, W1.transpose(1, 2)))
    out = torch.bmm(h, W2.transpose(1, 2)) + b[:, None, :]
    return out if readout == "linear" else torch.relu(out)


def targets(x: Tensor, mixing: Tensor | None = None) -> Tensor:
    """The labels of inputs x [instances, batch, n]: |x|, or |x| + M x with the mixing
    matrix M [n, n] (data.mixing_matrix)."""
    return x.abs() if mixing is None else x.abs() + x @ mixing.T


# What a variant changes (see `rows_loss_and_grads`): its readout ("relu" or "linear") and
# its mixing matrix (None for the labels |x|). None for SPEC's model itself.
Head = tuple[str, Tensor | None] | None


# A neuron is dead when its largest possible effect on any output (`neuron_effect`) is below
# this fraction of the largest neuron's in the same model. Training recycles such neurons;
# the analysis reports them and counts them neither monosemantic nor polysemantic.
DEAD_FRACTION = 1e-3


def neuron_effect(W1: Tensor, W2: Tensor) -> Tensor:  # [instances, m]
    """max_k |W1[j, k]| * max_i |W2[i, j]|: the most neuron j can change any output.

    Inputs lie in [-1, 1], so this bounds the neuron's effect; it does not change under
    the rescaling, which multiplies one factor by what it divides the other by. Computed in
    the dtype of the weights.
    """
    return W1.abs().amax(-1) * W2.abs().amax(-2)


def weighted_loss(
    y_pred: Tensor, x: Tensor, importance: Tensor, mixing: Tensor | None = None
) -> Tensor:
    """SPEC's loss per instance: sum_i I_i (|x_i| - y'_i)^2, averaged over the batch (with
    `mixing`, the labels `targets(x, mixing)` in place of |x|).

    y_pred, x: [instances, batch, n]; importance: [n]. Returns [instances].
    """
    return (importance * (targets(x, mixing) - y_pred) ** 2).sum(-1).mean(1)


def loss_and_grads(
    W1: Tensor, W2: Tensor, b: Tensor, x: Tensor, importance: Tensor, head: Head = None
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """`weighted_loss` of the model on x, and its gradients, by hand (no autograd graph).

    Returns (loss [instances], dW1 [instances, m, n], dW2 [instances, n, m], db [instances, n]).
    The masks multiply rather than select, which is what lets a compiler fuse them.
    """
    return rows_loss_and_grads(W1, W2, b, x, importance, x.shape[1], empty=0, head=head)


def compact_loss_and_grads(
    W1: Tensor,
    W2: Tensor,
    b: Tensor,
    x: Tensor,
    importance: Tensor,
    rows: int,
    head: Head = None,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """`loss_and_grads` computed on `rows` rows per instance instead of the whole batch.

    An all-zero input row gives h = 0 and y' = ReLU(b): it adds I ReLU(b)^2 to the loss and
    only reaches the gradient through b, the same for every such row (its label is 0 with
    mixing too, and its output b under a linear readout). So each instance's
    non-empty rows are moved to the front (a stable sort), the first `rows` rows go through
    the model, and the rest, all empty, are added in closed form. Returns the four results
    of `loss_and_grads` (equal up to the order of the sums) and `overflow`, a 0-d bool that
    is true when some instance has more than `rows` non-empty rows: then the results are
    wrong and the caller must use `loss_and_grads` for this batch.
    """
    batch = x.shape[1]
    if rows >= batch:
        results = loss_and_grads(W1, W2, b, x, importance, head)
        return (*results, torch.zeros((), dtype=torch.bool))
    kept, overflow = nonempty_rows(x, rows)
    results = rows_loss_and_grads(W1, W2, b, kept, importance, batch, batch - rows, head)
    return (*results, overflow)


def nonempty_rows(x: Tensor, rows: int) -> tuple[Tensor, Tensor]:
    """The first `rows` rows of each instance's batch once its non-empty rows are moved to
    the front (a stable sort), and `overflow`: whether some instance has more non-empty rows
    than that. x: [instances, batch, n] -> ([instances, rows, n], 0-d bool)."""
    instances, _, n = x.shape
    filled = (x != 0).any(-1)  # [instances, batch]
    order = torch.argsort((~filled).to(torch.int8), dim=-1, stable=True)[:, :rows]
    kept = torch.gather(x, 1, order[..., None].expand(instances, rows, n))
    return kept, (filled.sum(-1) > rows).any()


def rows_loss_and_grads(
    W1: Tensor,
    W2: Tensor,
    b: Tensor,
    x: Tensor,
    importance: Tensor,
    batch: int,
    empty: int,
    head: Head = None,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The loss and gradients of a batch of `batch` rows, given as the rows `x` and a count
    of `empty` all-zero rows more (0 for the whole batch). `head` is None for SPEC's model,
    or (readout, mixing matrix or None) for a variant: labels `targets(x, mixing)` (an
    empty row's label is still 0) and, for a linear readout, no output ReLU to pass the
    gradient through. The branches are on Python values, so SPEC's model compiles to
    exactly the code it had before the variants existed."""
    readout, mixing = head if head is not None else ("relu", None)
    relu = readout == "relu"
    # Every product is laid out with the hidden axis first (h is held as h^T, [m, rows]):
    # the same sums, but the matrix library's fast path when m is small (measured on a
    # 2-core AMD EPYC: 0.07 ms per product for three m = 10 instances, 0.23-0.39 ms in the
    # row-major layout; no slower at m = 40).
    hT = torch.relu(torch.bmm(W1, x.transpose(1, 2)))  # [instances, m, rows]
    # bmm, then the bias in the fused pointwise code (faster than baddbmm on the CPU)
    out = torch.bmm(hT.transpose(1, 2), W2.transpose(1, 2)) + b[:, None, :]  # [.., rows, n]
    residual = (torch.relu(out) if relu else out) - targets(x, mixing)  # y' - y
    # d loss / d out = 2 I (y' - y) / batch where out > 0 (the output ReLU passes it)
    scale = 2 * importance / batch
    d_out = residual * (out > 0) * scale if relu else residual * scale
    if empty:  # each empty row: out = b, residual = ReLU(b) (b for a linear readout)
        bias_residual = torch.relu(b) if relu else b
        per_row = (importance * bias_residual * bias_residual).sum(-1)
        loss = ((importance * residual * residual).sum(-1).sum(1) + empty * per_row) / batch
        d_b = d_out.sum(1) + empty * (bias_residual * ((b > 0) if relu else 1.0) * scale)
    else:
        loss = (importance * residual * residual).sum(-1).mean(1)
        d_b = d_out.sum(1)
    d_W2 = torch.bmm(hT, d_out).transpose(1, 2).contiguous()  # [instances, n, m]
    d_preT = torch.bmm(W2.transpose(1, 2), d_out.transpose(1, 2)) * (hT > 0)  # [.., m, rows]
    d_W1 = torch.bmm(d_preT, x)
    return loss, d_W1, d_W2, d_b
