"""Three views of a model's weights: matrix, stack plot and graph. Each draws on an `ax`.

Every function takes weights as plain tensors or arrays of one instance (W1: [m, n],
W2: [n, m]) and returns the `ax` it drew on. Nothing here reads files, trains, or edits
global matplotlib state; a chapter calls `use_style()` once.

Colours have one meaning each across the book: weight sign uses one diverging map
(`WEIGHT_CMAP`, red negative, blue positive, white at 0) in every view and nothing else is
red or blue; feature i has colour `feature_colors(n)[i]` (no red, no blue) in every view;
measured values per feature use `VALUE_CMAP`; grey shading marks polysemantic neurons.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib as mpl
import matplotlib.pyplot as plt
import networkx as nx
import numpy as np
from matplotlib.axes import Axes
from matplotlib.collections import PatchCollection
from matplotlib.colors import Colormap, LogNorm, Normalize, TwoSlopeNorm
from matplotlib.patches import Rectangle

WEIGHT_CMAP = "RdBu"
POSITIVE, NEGATIVE = "#2166ac", "#b2182b"  # the two ends of WEIGHT_CMAP
# Graph edges below this |weight| (after rescaling, so relative to each neuron's largest
# W1 weight of 1) are left out: they are invisible at any readable width anyway.
GRAPH_THRESHOLD = 0.1
SHADE = "0.55"  # the background of a polysemantic neuron in stack plots (darker: more features)

STYLE = {
    "figure.dpi": 100,
    "savefig.dpi": 110,
    "savefig.bbox": "tight",
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "svg.fonttype": "none",
}


def use_style() -> None:
    """The one explicit style call a chapter makes."""
    plt.style.use(STYLE)


def _np(a) -> np.ndarray:
    return a.detach().cpu().numpy() if hasattr(a, "detach") else np.asarray(a)


# Feature identity: features 0-9 (the most important) get ten colours with no red and no
# blue (which belong to weight sign alone) and no orange or brown (which belong to
# VALUE_CMAP); every later feature is grey, lighter for less important, so no two features
# that a figure can confuse share a colour.
FEATURE_PALETTE = ("#1b9e77", "#9467bd", "#e7298a", "#66a61e", "#b8e186",
                   "#000000", "#8dd3c7", "#bcbd22", "#c2a5cf", "#01665e")  # fmt: skip


def feature_colors(n: int) -> list:
    """One colour per feature, by index: `FEATURE_PALETTE` for features 0-9, then greys
    from dark (feature 10) to light (the last feature)."""
    first = list(FEATURE_PALETTE[: min(n, len(FEATURE_PALETTE))])
    rest = n - len(first)
    # square root: the greys spread most over the next most important features
    return first + [str(round(0.3 + 0.55 * (i / max(1, rest - 1)) ** 0.5, 3)) for i in range(rest)]


def feature_key(ax: Axes, features: Sequence[int], *, ncol: int | None = None, **legend) -> Axes:
    """A legend of feature colours for the listed features ("x0", "x1", ...); with more than
    ten features, one grey swatch stands for the rest."""
    features = list(features)
    colors = feature_colors(max(features) + 1)
    shown = [i for i in features if i < len(FEATURE_PALETTE)]
    handles = [Rectangle((0, 0), 1, 1, color=colors[i]) for i in shown]
    labels = [f"x{i}" for i in shown]
    if len(shown) < len(features):
        handles.append(Rectangle((0, 0), 1, 1, color="0.6"))
        labels.append(f"x{len(FEATURE_PALETTE)}+ (grey, lighter: less important)")
    ax.legend(handles, labels, ncol=ncol or min(11, len(handles)), frameon=False,
              handlelength=1.0, columnspacing=0.8, **legend)  # fmt: skip
    return ax


def matrix(
    ax: Axes,
    W,
    *,
    vmax: float | None = None,
    xlabel: str = "feature",
    ylabel: str = "neuron",
    colorbar: bool = True,
) -> Axes:
    """Heat map of a weight matrix (rows by columns), diverging colours centred on 0.

    Pass the same `vmax` to every panel of a figure for a shared colour scale.
    """
    W = _np(W)
    vmax = float(np.abs(W).max()) if vmax is None else vmax
    vmax = vmax if vmax > 0 else 1.0
    image = ax.imshow(
        W,
        cmap=WEIGHT_CMAP,
        norm=TwoSlopeNorm(0.0, -vmax, vmax),
        aspect="auto",
        interpolation="nearest",
    )
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    rows, cols = W.shape
    if cols <= 12:
        ax.set_xticks(range(cols))
    if rows <= 12:
        ax.set_yticks(range(rows))
    if colorbar:
        ax.figure.colorbar(image, ax=ax, fraction=0.05, pad=0.02)
    return ax


def stack(
    ax: Axes,
    W1,
    *,
    colors: Sequence | None = None,
    absolute: bool = False,
    order: Sequence[int] | None = None,
    shade: Sequence[float] | None = None,
    min_weight: float = 0.0,
) -> Axes:
    """Stack plot: one column per neuron, one rectangle per weight of height |w|.

    Each rectangle has its feature's colour; positive weights stack up from 0 and negative
    ones down (with `absolute`, all stack up). `order` lists the neurons left to right;
    `shade` (0..1 per neuron) greys the neuron's background; weights with |w| <=
    `min_weight` are not drawn (0 draws every non-zero weight).
    """
    W1 = _np(W1)
    m, n = W1.shape
    colors = list(colors) if colors is not None else feature_colors(n)
    order = list(order) if order is not None else list(range(m))
    rects, faces = [], []
    top, bottom = 1.0, 0.0 if absolute else -1.0  # at least the rescaled range
    for column, j in enumerate(order):
        up, down = 0.0, 0.0
        for i in range(n):
            w = float(W1[j, i])
            if w == 0 or abs(w) <= min_weight:
                continue
            height = abs(w)
            if w > 0 or absolute:
                rects.append(Rectangle((column - 0.4, up), 0.8, height))
                up += height
            else:
                down -= height
                rects.append(Rectangle((column - 0.4, down), 0.8, height))
            faces.append(colors[i])
        top, bottom = max(top, up), min(bottom, down)
        if shade is not None and shade[j] > 0:
            ax.axvspan(column - 0.5, column + 0.5, color=SHADE, alpha=0.12 + 0.5 * float(shade[j]),
                       lw=0, zorder=0)  # fmt: skip
    edge = 0.3 if len(rects) < 200 else 0.1  # thin separators where rectangles are many
    ax.add_collection(PatchCollection(rects, facecolors=faces, edgecolors="white", linewidths=edge))
    ax.axhline(0, color="0.2", lw=0.6)
    ax.set_xlim(-0.6, m - 0.4)
    ax.set_ylim(bottom * 1.05, top * 1.05)
    ax.set_xlabel("neuron")
    ax.set_ylabel("|W1| (stacked)" if absolute else "W1 (stacked)")
    if m <= 12:
        ax.set_xticks(range(m), [str(j) for j in order])
    return ax


def build_graph(W1, W2=None, *, threshold: float = GRAPH_THRESHOLD) -> nx.DiGraph:
    """Features -> neurons (W1) -> outputs (W2); one edge per weight with |w| > threshold.

    Nodes are ("x", i), ("h", j) and ("y", i) with a `layer` attribute (0, 1, 2); edges
    carry `weight`. Input and output nodes appear only for features that have an edge.
    """
    W1 = _np(W1)
    m, n = W1.shape
    G = nx.DiGraph()
    G.add_nodes_from((("h", j) for j in range(m)), layer=1)
    for j, i in zip(*np.nonzero(np.abs(W1) > threshold), strict=True):
        G.add_node(("x", int(i)), layer=0)
        G.add_edge(("x", int(i)), ("h", int(j)), weight=float(W1[j, i]))
    if W2 is not None:
        W2 = _np(W2)
        for i, j in zip(*np.nonzero(np.abs(W2) > threshold), strict=True):
            G.add_node(("y", int(i)), layer=2)
            G.add_edge(("h", int(j)), ("y", int(i)), weight=float(W2[i, j]))
    return G


def graph(
    ax: Axes,
    W1,
    W2=None,
    *,
    colors: Sequence | None = None,
    threshold: float = GRAPH_THRESHOLD,
    width_scale: float = 2.0,
    max_width: float = 4.0,
    labels: bool = True,
    order: Sequence[int] | None = None,
    node_colors: Sequence | None = None,
) -> Axes:
    """Draw `build_graph` left to right: features, neurons, outputs.

    Edge width is `width_scale` * |w| (at most `max_width`) and colour shows the sign
    (blue +, red -); input and output nodes have their feature's colour, hidden nodes grey
    (or `node_colors`, one per neuron). Neurons are stacked top to bottom in `order`
    (default: by index); features by index. The layout is deterministic.
    """
    W1 = _np(W1)
    n = W1.shape[1]
    colors = list(colors) if colors is not None else feature_colors(n)
    G = build_graph(W1, W2, threshold=threshold)
    m = W1.shape[0]
    rank_of = {j: r for r, j in enumerate(order if order is not None else range(m))}
    pos = {}
    for layer in (0, 1, 2):
        nodes = sorted(
            (v for v, d in G.nodes(data=True) if d["layer"] == layer),
            key=lambda v: rank_of[v[1]] if v[0] == "h" else v[1],
        )
        for rank, v in enumerate(nodes):
            pos[v] = (float(layer), -(rank - (len(nodes) - 1) / 2) / max(1, len(nodes) - 1))
    edges = list(G.edges(data="weight"))
    nx.draw_networkx_edges(
        G,
        pos,
        ax=ax,
        edgelist=[(u, v) for u, v, _ in edges],
        width=[min(max_width, width_scale * abs(w)) for _, _, w in edges],
        edge_color=[POSITIVE if w > 0 else NEGATIVE for _, _, w in edges],
        arrows=False,
        alpha=0.8,
    )
    hidden = list(node_colors) if node_colors is not None else ["0.85"] * m
    fill = [colors[v[1]] if v[0] != "h" else hidden[v[1]] for v in G.nodes]
    nx.draw_networkx_nodes(G, pos, ax=ax, node_color=fill, node_size=260 if labels else 160,
                           edgecolors="0.3", linewidths=0.5)  # fmt: skip
    if labels:
        names = {v: f"{v[0]}{v[1]}" for v in G.nodes}
        nx.draw_networkx_labels(G, pos, labels=names, ax=ax, font_size=9)
    ax.set_axis_off()
    return ax


# Measured values per feature (superposition) use this map, from pale yellow through orange
# to brown: no red and no blue, which belong to weight sign.
VALUE_CMAP = "YlOrBr"
# How well an output computes its feature (variance explained, 0 to 1): a green scale.
QUALITY_CMAP = "YlGn"
QUALITY_DARK, QUALITY_LIGHT = "#006837", "#78c679"  # computed on both sides / on one side
# The quality scale in steps, one at each threshold of analysis.FVE_THRESHOLDS, so that a
# heat map shows which features pass 0.8, 0.9 and 0.95 (a smooth scale paints them alike).
QUALITY_BOUNDS = (0.0, 0.25, 0.5, 0.8, 0.9, 0.95, 1.0)


def quality_scale() -> tuple[Colormap, mpl.colors.BoundaryNorm]:
    """QUALITY_CMAP in one colour per step of QUALITY_BOUNDS, and its norm (for imshow)."""
    steps = len(QUALITY_BOUNDS) - 1
    colours = mpl.colormaps[QUALITY_CMAP](np.linspace(0.0, 1.0, steps))
    return mpl.colors.ListedColormap(colours), mpl.colors.BoundaryNorm(QUALITY_BOUNDS, steps)


def value_norm(values, floor: float = 0.05) -> LogNorm:
    """A log scale from `floor` to the largest value: it separates features at every
    sparsity, where a linear scale clipped at 1 would colour the sparsest models alike."""
    top = max(float(np.max(_np(values))), floor * 10)
    return LogNorm(floor, top, clip=True)


def _value_map() -> Colormap:
    """VALUE_CMAP without its palest third, which vanishes on a white page."""
    return mpl.colors.ListedColormap(mpl.colormaps[VALUE_CMAP](np.linspace(0.3, 1.0, 256)))


def value_colors(values: Sequence[float], norm: Normalize | None = None) -> list:
    """Colours for per-feature values on `norm` (default: linear on [0, 1], clipped)."""
    norm = norm or Normalize(0.0, 1.0, clip=True)
    scale = _value_map()
    return [scale(float(norm(float(v)))) for v in _np(values)]


def value_colorbar(ax: Axes | Sequence[Axes], label: str, norm: Normalize | None = None,
                   **kwargs) -> None:  # fmt: skip
    """The colour bar that goes with `value_colors` (on the same `norm`), its ends labelled."""
    norm = norm or Normalize(0.0, 1.0)
    mappable = mpl.cm.ScalarMappable(norm, _value_map())
    axes = ax if isinstance(ax, Axes) else list(ax)
    figure = ax.figure if isinstance(ax, Axes) else axes[0].figure
    bar = figure.colorbar(
        mappable, ax=axes, label=label, **{"fraction": 0.05, "pad": 0.02, **kwargs}
    )
    if isinstance(norm, LogNorm):
        decades = [10.0**e for e in range(-3, 4) if norm.vmin < 10.0**e < norm.vmax * 0.7]
        bar.set_ticks([norm.vmin, *decades, norm.vmax])
    plain_numbers(bar.ax.yaxis)


def plain_numbers(axis) -> None:
    """Tick labels as plain numbers (0.01, 0.1, 1) rather than powers of ten, whose
    superscripts print at 70 % of the text size."""
    # two significant digits, never in exponent form (100, not 1e+02)
    axis.set_major_formatter(mpl.ticker.FuncFormatter(lambda v, _: f"{float(f'{v:.2g}'):g}"))
    axis.set_minor_formatter(mpl.ticker.NullFormatter())
