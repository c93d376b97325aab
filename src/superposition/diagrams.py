"""Small diagrams of one mechanism, as the paper draws them; each draws on an `ax`.

    diagrams.motif(ax, R1[k], R2[k], f, b=b[k])   # the asymmetric superposition motif

`motif` draws the features, the two neurons and the outputs of one motif, with the model's
own (rescaled) weights written on the edges; `ablation_output` and `ablation_pre` draw what
the motif's weak output does with and without the inhibitor. Weight sign has the colours of
`plots` (blue +, red -) and nothing else does: nodes and curves are black, white or grey.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.lines import Line2D

from . import plots

# Nodes are neutral: features white, neurons the grey of `plots.graph`'s hidden nodes; a
# whole-model graph marks the motif's neurons with the darker `MOTIF_NEURON`.
NEURON_FILL = "0.85"
MOTIF_NEURON = "0.6"
NODE_FILL = "white"
# Where along an edge its weight is written: nearer the source for W1, nearer the target
# for W2, so that labels of edges that fan out or in, or cross, do not meet.
LABEL_AT = {1: 0.3, 2: 0.68}


def _np(a) -> np.ndarray:
    return a.detach().cpu().numpy() if hasattr(a, "detach") else np.asarray(a)


def sign_key(ax: Axes, **legend) -> Axes:
    """A legend for the edge colours: blue positive, red negative weights."""
    handles = [Line2D([], [], color=color, lw=2) for color in (plots.POSITIVE, plots.NEGATIVE)]
    options = dict(frameon=False, ncol=2, loc="upper center", bbox_to_anchor=(0.5, 0.0))
    ax.legend(handles, ["positive weight", "negative weight"], **{**options, **legend})
    return ax


def motif(
    ax: Axes,
    W1,
    W2,
    found,
    *,
    b=None,
    extra_features: Sequence[int] = (),
    threshold: float = 0.05,
    fontsize: float = 9,
) -> Axes:
    """One motif of one model, left to right: features, the carrier and the inhibitor,
    outputs. W1 [m, n] and W2 [n, m] are the instance's (rescaled) weights and `found` a
    motif with `carrier`, `inhibitor`, `strong` and `weak` (an `analysis.Motif` or
    `findings.motif.MotifFacts`). Every weight between the drawn nodes with |w| >=
    `threshold` is an edge, its width by |w| (capped), its colour by sign, its value
    written on it; `extra_features` (e.g. the inhibitor's main feature) are drawn below
    the two features, and `b` writes each output's bias beside it. Weights to or from
    nodes not drawn are left out.
    """
    W1, W2 = _np(W1), _np(W2)
    features = [found.strong, found.weak]
    features += [f for f in extra_features if f not in features]
    neurons = [found.carrier, found.inhibitor]
    rows = len(features)
    feature_y = {f: (rows - 1) / 2 - r for r, f in enumerate(features)}
    neuron_y = {found.carrier: 0.5, found.inhibitor: -0.5}  # centred, like the features
    pos = {("x", f): (0.0, y) for f, y in feature_y.items()}
    pos |= {("h", j): (1.0, y) for j, y in neuron_y.items()}
    pos |= {("y", f): (2.0, y) for f, y in feature_y.items()}

    low = min(min(feature_y.values()), min(neuron_y.values()))
    ax.set_xlim(-0.25, 2.75 if b is not None else 2.25)
    ax.set_ylim(low - 0.75, (rows - 1) / 2 + 0.8)
    ax.set_axis_off()

    edges = [(("x", f), ("h", j), float(W1[j, f]), 1) for f in features for j in neurons]
    edges += [(("h", j), ("y", f), float(W2[f, j]), 2) for j in neurons for f in features]
    edges = [e for e in edges if abs(e[2]) >= threshold]
    placed: list[tuple[float, float]] = []
    for u, v, w, layer in edges:
        (x0, y0), (x1, y1) = pos[u], pos[v]
        color = plots.POSITIVE if w > 0 else plots.NEGATIVE
        ax.plot([x0, x1], [y0, y1], color=color, lw=min(5.0, 0.6 + 1.6 * abs(w)),
                solid_capstyle="butt", zorder=1, alpha=0.85)  # fmt: skip
        t = _label_place(ax, (x0, y0), (x1, y1), LABEL_AT[layer], placed, list(pos.values()),
                         fontsize)  # fmt: skip
        placed.append((x0 + t * (x1 - x0), y0 + t * (y1 - y0)))
        ax.text(*placed[-1], f"{w:+.2f}".replace("-", "\u2212"), ha="center", va="center",
                fontsize=fontsize, color=color, zorder=3,
                bbox=dict(boxstyle="round,pad=0.15", fc="white", ec="none", alpha=0.9))  # fmt: skip

    for (kind, index), (x, y) in pos.items():
        fill = NEURON_FILL if kind == "h" else NODE_FILL
        ax.scatter([x], [y], s=520, color=fill, edgecolors="0.2", linewidths=0.8, zorder=4)
        ax.text(x, y, f"{kind}{index}", ha="center", va="center", fontsize=fontsize, zorder=5)
    ax.text(1.0, neuron_y[found.carrier] + 0.32, "carrier", ha="center", va="bottom",
            fontsize=fontsize)  # fmt: skip
    ax.text(1.0, neuron_y[found.inhibitor] - 0.32, "inhibitor", ha="center", va="top",
            fontsize=fontsize)  # fmt: skip
    for x, name in ((0.0, "input"), (2.0, "output")):
        ax.text(x, (rows - 1) / 2 + 0.45, name, ha="center", va="bottom", fontsize=fontsize)
    if b is not None:
        b = _np(b)
        for f, y in feature_y.items():
            ax.text(2.17, y, f"b = {float(b[f]):+.2f}".replace("-", "\u2212"), ha="left",
                    va="center", fontsize=fontsize)  # fmt: skip
    return ax


def _label_place(ax, start, end, preferred, placed, nodes, fontsize) -> float:
    """Where along the edge start -> end to write its weight: of the points from 0.2 to 0.8
    of the way, the one farthest (in label sizes) from the labels already placed and from
    the nodes, nearest `preferred` among equals. Sizes are estimated from the axes' current
    size, so call it once the limits are set."""
    box = ax.get_window_extent()
    (xa, xb), (ya, yb) = ax.get_xlim(), ax.get_ylim()
    px_x, px_y = box.width / (xb - xa), box.height / (yb - ya)  # pixels per data unit
    size = fontsize * ax.figure.dpi / 72
    half_w, half_h = 2.0 * size / px_x, 0.75 * size / px_y  # half a "+0.00" label, data units
    node = 0.75 * size / px_x, 0.75 * size / px_y  # roughly a node's radius

    def clearance(x, y):
        gaps = [max(abs(x - p) / (2 * half_w), abs(y - q) / (2 * half_h)) for p, q in placed]
        gaps += [max(abs(x - p) / (half_w + node[0]), abs(y - q) / (half_h + node[1]))
                 for p, q in nodes]  # fmt: skip
        return min(min(gaps, default=9.0), 1.0)  # beyond 1, nothing overlaps: all equal

    options = [0.2 + 0.05 * i for i in range(13)]
    scored = [
        (clearance(start[0] + t * (end[0] - start[0]), start[1] + t * (end[1] - start[1])),
         -abs(t - preferred), t)
        for t in options
    ]  # fmt: skip
    return max(scored)[2]


def ablation_output(ax: Axes, ablation, weak: int) -> Axes:
    """Output `weak` as x_strong sweeps [-1, 1] alone: the whole model (solid) and with the
    inhibitor's output weights set to 0 (dashed). `ablation` is a
    `findings.motif.Ablation`."""
    x = _np(ablation.x)
    ax.plot(x, _np(ablation.out_ablated), color="0.55", lw=2, ls="--", label="inhibitor ablated")
    ax.plot(x, _np(ablation.out_whole), color="0.1", lw=2, label="whole model")
    ax.axhline(0, color="0.2", lw=0.5)
    ax.set_ylabel(f"output {weak}")
    ax.legend(frameon=False, loc="upper center")
    return ax


def ablation_pre(ax: Axes, ablation, strong: int, weak: int) -> Axes:
    """Output `weak`'s pre-activation with the whole model, on its own y-range, with the
    region below 0 (where the output ReLU gives 0) shaded."""
    x, pre = _np(ablation.x), _np(ablation.pre_whole)
    span = max(float(pre.max()) - float(pre.min()), 1e-3)
    low, high = float(pre.min()) - 0.15 * span, max(float(pre.max()), 0.0) + 0.25 * span
    ax.axhspan(low, 0, color="0.92", lw=0, zorder=0)
    ax.axhline(0, color="0.2", lw=0.5)
    ax.plot(x, pre, color="0.1", lw=1.5)
    ax.set_ylim(low, high)
    ax.set_ylabel(f"pre-activation {weak}")
    ax.set_xlabel(f"x{strong} (every other feature 0)")
    return ax
