"""The site's model explorer: every published model as a matrix, a stack plot and a graph,
drawn with Bokeh in the reader's browser, linked and readable on hover.

Two halves, both run when the book is built:

- `write_site(dest)` (book/build.py calls it) writes `dest/explorer/`: one data script per
  experiment, made from the cached weight files (rescaled W1 and W2, the rescaling factors,
  the biases, the neuron order and the measured polysemanticity, superposition and explained
  variance of every model), the explorer's own script, and BokehJS copied from the installed
  package, so the page asks no other host for anything.
- `page_html()` (the "Explore the models" chapter shows it) is the Bokeh document: the
  controls and the views, with empty data sources that `explorer.js` fills from the data
  scripts for the model the address asks for (`link()` makes such an address).

Weights travel as 16-bit integers: rescaled W1 in steps of 1/32767, W2 as the file holds it
in steps of the model's largest |W2| / 32767 (rescaled in the browser: times the neuron's
factor), so every weight is shown to about four significant digits of the model's largest.
Each feature's explained variance (`analysis.explained_variance`: both sides and presence)
travels as float32, each side's score nudged by one float32 step where rounding would carry
it across one of `analysis.FVE_THRESHOLDS`, so that the page counts what the book counts.
"""

from __future__ import annotations

import base64
import json
import re
import shutil
from pathlib import Path
from urllib.parse import urlencode

import numpy as np
import torch

from . import analysis, experiments, store

FOLDER = "explorer"  # at the site's root, beside weights/ and figures/
PAGE = "explore"  # the chapter, book/explore.md
STEPS = 32767  # int16 steps for the largest weight
MIN_BLOCK = 0.01  # smaller |W1| are left out of the stack plot, as in the sparsity chapter
BOKEH_FILES = ("bokeh", "bokeh-widgets")  # BokehJS core and its widgets (the controls)
DEFAULT = ("sparsity-sweep", 0.03)  # the sparsity chapter's intermediate model, best seed
VALUE_FLOOR = 0.05  # the bottom of the superposition colour scale (plots.value_norm's)
# The measure view's floor: a side that explains nothing (0: no better than the side's own
# constant 1/2) or less is drawn at 0; its hover gives the exact score.
FVE_FLOOR = 0.0


def _b64(array: np.ndarray, dtype: str) -> str:
    return base64.b64encode(np.ascontiguousarray(array, dtype=dtype).tobytes()).decode()


def _scores(values: torch.Tensor) -> np.ndarray:
    """Scores as float32 on the same side of every threshold as the float64 they round."""
    exact = values.double().numpy()
    rounded = exact.astype(np.float32)
    for t in analysis.FVE_THRESHOLDS:
        # one float32 step is enough: rounding moved the value by at most half of one
        up = (exact >= t) & (rounded.astype(np.float64) < t)
        rounded[up] = np.nextafter(rounded[up], np.float32(np.inf))
        down = (exact < t) & (rounded.astype(np.float64) >= t)
        rounded[down] = np.nextafter(rounded[down], np.float32(-np.inf))
    return rounded


def _hex(color) -> str:
    from matplotlib.colors import to_hex

    return to_hex(color)


def experiment_data(w: store.Weights) -> dict:
    """Everything the explorer draws for one experiment's models, ready for JSON."""
    from . import plots

    E = w.experiment
    W1, W2 = w.W1.double(), w.W2.double()
    R1, R2 = analysis.rescale(W1, W2)
    scale = W1.abs().amax(-1)  # [instances, m]: raw W1 = rescaled * scale
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    w2_max = W2.abs().flatten(1).amax(-1).clamp_min(1e-12)  # [instances]
    eff = analysis.effective_features(R1)
    dead = analysis.dead_neurons(W1, W2)
    poly = analysis.polysemantic_neurons(W1, W2)
    sup = analysis.superposition(R1)
    fve = analysis.explained_variance(w.W1, w.W2, w.b, w.feature_probs)
    order = [analysis.neuron_order(R1[k], R2[k]) for k in range(E.n_instances)]
    best = {p: w.best(p) for p in E.feature_probs}
    # the grid's lowest-loss random start of seeds 0-2 (B, as D40, has more), and the model
    # the chapter reports, the lowest loss over every start of the cell (`reported_models`)
    from .findings.capacity import CONSTRUCTED_START
    from .findings.capacity import grid_best as lowest_of_grid

    grid = {c["name"] for c in capacity_family()}
    grid_best = {p: lowest_of_grid(w, p) for p in E.feature_probs} if E.name in grid else {}
    cell = E.parent if E.parent in grid else E.name if E.name in grid else None
    read = R1.abs().amax(1) > MIN_BLOCK  # [instances, n]: features some neuron reads
    return {
        **_summary(E),
        # the largest superposition of a feature a neuron reads (the colour scale's top)
        "sup_top": float(sup[read].max()) if bool(read.any()) else 0.0,
        "instances": [
            {"p": p, "seed": s, "loss": loss, "best": best[p] == k}
            | ({"grid_best": grid_best[p] == k} if grid_best else {})
            for k, (p, s, loss) in enumerate(
                zip(w.feature_probs, w.seeds, w.final_loss, strict=True)
            )
        ],
        "colors": [_hex(c) for c in plots.feature_colors(E.n_features)],
        "w2_step": (w2_max / STEPS).tolist(),
        "W1": _b64(torch.round(R1 * STEPS).numpy(), "<i2"),  # [instances, m, n]
        "W2": _b64(
            torch.round(W2 / w2_max[:, None, None] * STEPS).numpy(), "<i2"
        ),  # raw, [i, n, m]
        "scale": _b64(scale.numpy(), "<f4"),  # [instances, m]
        "b": _b64(w.b.numpy(), "<f4"),  # [instances, n]
        "order": _b64(np.array(order), "<i2"),  # [instances, m]: neurons, top row first
        "eff": _b64(eff.numpy(), "<f4"),  # [instances, m]
        "kind": _b64((poly.int() + 2 * dead.int()).numpy(), "u1"),  # 0 mono, 1 poly, 2 dead
        "sup": _b64(sup.numpy(), "<f4"),  # [instances, n]
        # per p, the model the capacity chapter reports for this experiment's cell
        **({"reported": reported_models(cell)} if cell else {}),
        # what each seed of a constructed experiment starts from
        **({"starts": {str(s): CONSTRUCTED_START[s] for s in E.seeds}} if E.parent else {}),
        # [instances, n] each: explained variance within each side of x_i, and overall
        "fve_negative": _b64(_scores(fve.negative), "<f4"),
        "fve_positive": _b64(_scores(fve.positive), "<f4"),
        "fve_presence": _b64(fve.presence.numpy(), "<f4"),
    }


def reported_models(name: str) -> list[dict]:
    """Per p, the model the capacity chapter reports for the grid cell of experiment `name`
    (`findings.capacity.reported_of` over the cell's random and constructed starts; its
    measures are not needed here, so this reads only the losses)."""
    from .findings.capacity import candidates_at, reported_of

    w = store.load(name)
    c = store.load(experiments.constructed(w.experiment))
    found = []
    for p in w.experiment.feature_probs:
        best = reported_of(candidates_at(w, c, p))
        found.append({"p": p, "experiment": best.experiment, "seed": best.seed,
                      "start": best.start, "loss": best.loss})  # fmt: skip
    return found


def _summary(E: experiments.Experiment) -> dict:
    """What the controls need to know of an experiment."""
    return {
        "name": E.name,
        "label": E.label,
        "title": E.title,
        "n": E.n_features,
        "m": E.n_hidden,
        "decay": E.importance_decay,
        "probs": list(E.feature_probs),
        "seeds": list(E.seeds),
    }


def catalogue() -> list[dict]:
    """The experiments a reader can pick, in the book's order."""
    return [_summary(E) for E in experiments.REGISTRY.values()]


def write_site(dest: Path) -> Path:
    """Write the explorer's scripts into `dest/explorer/` (replacing what was there)."""
    import bokeh

    from .findings.capacity import SEEDS

    folder = dest / FOLDER
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    from . import plots

    top = 0.0  # the superposition scale's top, shared by every model
    for E in experiments.REGISTRY.values():
        data = experiment_data(store.load(E))
        (folder / f"{E.name}.js").write_text(
            f"SuperpositionExplorer.register({json.dumps(data, separators=(',', ':'))});\n"
        )
        top = max(top, data["sup_top"])
    shutil.copy(Path(__file__).with_name("explorer.js"), folder / "explorer.js")
    static = Path(bokeh.__file__).parent / "server" / "static" / "js"
    for name in BOKEH_FILES:
        shutil.copy(static / f"{name}.min.js", folder / f"{name}-{bokeh.__version__}.min.js")
    (folder / "settings.js").write_text(
        "SuperpositionExplorer.settings("
        + json.dumps(
            {
                "catalogue": catalogue(),
                "capacity": capacity_family(),
                "capacitySeeds": list(SEEDS),
                "supTop": top,
                "constants": {
                    "steps": STEPS,
                    "edge": plots.GRAPH_THRESHOLD,
                    "minBlock": MIN_BLOCK,
                    "positive": plots.POSITIVE,
                    "negative": plots.NEGATIVE,
                    "kindFill": ["#d9d9d9", _hex(plots.SHADE), "#ffffff"],  # mono, poly, dead
                    "computedColor": plots.QUALITY_DARK,
                },
                "fve": {
                    "thresholds": list(analysis.FVE_THRESHOLDS),
                    "computed": analysis.FVE_COMPUTED,  # the threshold shown first
                    "floor": FVE_FLOOR,
                },
                "default": DEFAULT,
                "standalone": [
                    n
                    for n in experiments.REGISTRY
                    if n not in {E.name for E in experiments.CAPACITY}
                ],
            }
        )  # fmt: skip
        + ");\n"
    )
    return folder


def link(experiment: str, p: float, seed: int) -> str:
    """The explorer's address (relative to a chapter) for one model."""
    return f"{PAGE}.html?" + urlencode({"experiment": experiment, "p": p, "seed": seed})


def _palette(name: str, lo: float = 0.0, hi: float = 1.0) -> list[str]:
    import matplotlib as mpl

    return [_hex(c) for c in mpl.colormaps[name](np.linspace(lo, hi, 256))]


def capacity_family() -> list[dict]:
    """The capacity chapter's grid: (width, importance) -> experiment (D40 is B itself)."""
    from .findings.capacity import PROFILES, experiment_name

    return [
        {"m": m, "profile": profile, "name": experiment_name(profile, m)}
        for profile in PROFILES
        for m in experiments.CAPACITY_WIDTHS[profile]
    ]


def _call(expression: str) -> str:
    """A CustomJS body (an ES module) that hands its models to explorer.js."""
    return f"export default (args) => window.SuperpositionExplorer.{expression}"


def document():
    """The explorer as a Bokeh layout: controls, then the three views and the three measures.
    Its data sources start empty; explorer.js fills them (see `page_html`)."""
    from bokeh.document import Document
    from bokeh.events import DocumentReady
    from bokeh.layouts import column, row
    from bokeh.models import (
        ColorBar,
        ColumnDataSource,
        CustomJS,
        Div,
        HoverTool,
        LinearColorMapper,
        LogColorMapper,
        Range1d,
        Select,
        Span,
        TapTool,
    )
    from bokeh.plotting import figure

    from . import plots

    def source(name: str, *columns: str) -> ColumnDataSource:
        return ColumnDataSource({c: [] for c in columns}, name=name)

    cells = source("cells", "x", "y", "w", "raw", "w2", "raw2", "neuron", "feature")
    sup = source("superposition-bars", "x", "top", "feature", "importance", "note")
    segments = source("segments", "x", "bottom", "top", "color", "neuron", "feature", "w", "raw")
    poly = source("polysemanticity-bars", "x", "top", "neuron", "kind", "color")
    edges = source("edges", "x0", "y0", "x1", "y1", "color", "width", "neuron", "feature", "w",
                   "raw", "matrix")  # fmt: skip
    nodes = source("nodes", "x", "y", "color", "label", "feature", "what")
    neurons = source("neurons", "rank", "neuron", "mx", "mw", "sy", "sh", "gy", "fill", "eff",
                     "kind", "py", "ph")  # fmt: skip
    scores = source("measure-points", "x", "y", "marker", "fill")
    per_feature = source("measure-features", "x", "feature", "negative", "positive", "presence",
                         "what")  # fmt: skip

    def fig(name: str, title: str, height: int, **kw):
        f = figure(name=name, title=title, height=height, sizing_mode="stretch_width",
                   tools="", toolbar_location=None, **kw)  # fmt: skip
        f.title.text_font_size = "12px"
        f.xaxis.axis_label_text_font_size = f.yaxis.axis_label_text_font_size = "11px"
        f.xaxis.major_label_text_font_size = f.yaxis.major_label_text_font_size = "10px"
        f.xgrid.visible = f.ygrid.visible = False
        for axis in f.xaxis:  # features and neurons are whole numbers
            axis.ticker.min_interval = 1
        return f

    def selectable(f, renderer, **glyph) -> None:
        """Tapping `renderer` (drawn from the shared neuron source) selects its neuron in
        every view, since all of them draw from that one source."""
        f.add_tools(TapTool(renderers=[renderer]))
        renderer.selection_glyph = renderer.glyph.clone(**glyph)
        renderer.nonselection_glyph = renderer.glyph.clone()

    outline = dict(line_color="#222222", line_alpha=1.0, line_width=2.5)
    weight = LinearColorMapper(palette=_palette(plots.WEIGHT_CMAP), low=-1, high=1)

    # Every range is set by explorer.js for the model it draws.
    x_features, y_ranks, x_ranks = Range1d(-0.5, 0.5), Range1d(0.5, -0.5), Range1d(-0.5, 0.5)
    y_sup, y_stack, y_poly = Range1d(0, 1), Range1d(-1, 1), Range1d(0, 1)
    matrix = fig("matrix", "Matrix: rescaled W1, a row per neuron", 380,
                 x_range=x_features, y_range=y_ranks)  # fmt: skip
    matrix.yaxis.ticker.min_interval = 1
    matrix.xaxis.axis_label, matrix.yaxis.axis_label = "feature", "row (stack order)"
    band = matrix.rect("mx", "rank", width="mw", height=1, source=neurons, fill_alpha=0,
                       line_alpha=0)  # fmt: skip
    selectable(matrix, band, **outline)
    grid = matrix.rect("x", "y", width=1, height=1, source=cells, line_color=None,
                       fill_color={"field": "w", "transform": weight})  # fmt: skip
    band.level = "overlay"
    matrix.add_tools(HoverTool(renderers=[grid], tooltips=[
        ("neuron", "h@neuron"), ("feature", "x@feature"),
        ("W1 rescaled", "@w{0.0000}"), ("W1 in the file", "@raw{0.000000}"),
        ("W2 (its output weight) rescaled", "@w2{0.0000}"),
        ("W2 in the file", "@raw2{0.000000}"),
    ]))  # fmt: skip
    matrix.add_layout(ColorBar(color_mapper=weight, title="W1: red −, blue +",
                               title_text_font_size="11px", major_label_text_font_size="10px",
                               width=10), "right")  # fmt: skip

    value = LogColorMapper(palette=_palette(plots.VALUE_CMAP, 0.3, 1.0), low=VALUE_FLOOR, high=1)
    sup_plot = fig("superposition", "Superposition per feature", 170, x_range=x_features,
                   y_range=y_sup)  # fmt: skip
    sup_plot.xaxis.axis_label, sup_plot.yaxis.axis_label = "feature", "superposition"
    bars = sup_plot.vbar("x", top="top", width=0.8, source=sup, line_color=None,
                         fill_color={"field": "top", "transform": value})  # fmt: skip
    sup_plot.add_tools(HoverTool(renderers=[bars], formatters={"@importance": "printf"}, tooltips=[
        ("feature", "x@feature"), ("importance", "@importance{%.3g}"),
        ("superposition", "@top{0.0000} @note"),  # a note only for a feature no neuron reads
    ]))  # fmt: skip
    sup_plot.add_layout(ColorBar(color_mapper=value, title="superposition (log)",
                                 title_text_font_size="11px", major_label_text_font_size="10px",
                                 width=10), "right")  # fmt: skip

    stack = fig("stack", "Stack plot of W1: a column per neuron", 360,
                x_range=x_ranks, y_range=y_stack)  # fmt: skip
    stack.xaxis.axis_label, stack.yaxis.axis_label = (
        "column: neurons by primary feature",
        "W1 (stacked)",
    )
    column_band = stack.rect("rank", "sy", width=1, height="sh", source=neurons, fill_alpha=0,
                             line_alpha=0)  # fmt: skip
    selectable(stack, column_band, **outline)
    blocks = stack.vbar("x", bottom="bottom", top="top", width=0.8, source=segments,
                        fill_color="color", line_color="white", line_width=0.3)  # fmt: skip
    column_band.level = "overlay"
    stack.add_tools(HoverTool(renderers=[blocks], tooltips=[
        ("neuron", "h@neuron"), ("feature", "x@feature"),
        ("W1 rescaled", "@w{0.0000}"), ("W1 in the file", "@raw{0.000000}"),
    ]))  # fmt: skip
    key = Div(name="feature-key", sizing_mode="stretch_width",
              styles={"font-size": "12px"})  # fmt: skip

    # Each side's score, ▼ for x_i < 0 and ▲ for x_i > 0, filled where it reaches the chosen
    # threshold (the dashed line); scores at or below FVE_FLOOR are drawn on it. A feature's
    # hover is its whole column, one tooltip however close its neighbours' markers sit.
    low, high = FVE_FLOOR - 0.05, 1.05
    measure = fig("measure", "Variance of |xᵢ| explained within each side of xᵢ", 210,
                  x_range=x_features, y_range=Range1d(low, high))  # fmt: skip
    columns = measure.rect("x", (low + high) / 2, width=0.95, height=high - low,
                           source=per_feature, fill_alpha=0, line_alpha=0)  # fmt: skip
    measure.xaxis.axis_label, measure.yaxis.axis_label = "feature", "variance explained"
    threshold_line = Span(location=analysis.FVE_COMPUTED, dimension="width",
                          line_color="#444444", line_dash="dashed", line_width=1)  # fmt: skip
    measure.add_layout(threshold_line)
    measure.scatter("x", "y", source=scores, marker="marker", size=7, fill_color="fill",
                    line_color=plots.QUALITY_DARK, line_width=1.2)  # fmt: skip
    measure.add_tools(HoverTool(renderers=[columns], tooltips=[
        ("feature", "x@feature"), ("negative side", "@negative{0.000}"),
        ("positive side", "@positive{0.000}"), ("presence", "@presence{0.000}"), ("", "@what"),
    ]))  # fmt: skip
    measure_status = Div(name="measure-status", sizing_mode="stretch_width",
                         styles={"font-size": "12px"})  # fmt: skip

    poly_plot = fig("polysemanticity", "Polysemanticity: features read", 170,
                    x_range=x_ranks, y_range=y_poly)  # fmt: skip
    poly_plot.xaxis.axis_label = "neuron (same order)"
    poly_plot.yaxis.axis_label = "features read"
    poly_bars = poly_plot.vbar("x", top="top", width=0.8, source=poly, fill_color="color",
                               line_color="#555555", line_width=0.5)  # fmt: skip
    poly_band = poly_plot.rect("rank", "py", width=1, height="ph", source=neurons, fill_alpha=0,
                               line_alpha=0)  # fmt: skip
    selectable(poly_plot, poly_band, **outline)
    poly_band.level = "overlay"
    poly_plot.add_tools(HoverTool(renderers=[poly_bars], tooltips=[
        ("neuron", "h@neuron"), ("features read", "@top{0.00}"), ("", "@kind"),
    ]))  # fmt: skip

    graph = fig("graph", "Graph: inputs → neurons → outputs", 560,
                x_range=Range1d(-0.35, 2.35), y_range=Range1d(-0.56, 0.56))  # fmt: skip
    graph.axis.visible = False
    lines = graph.segment("x0", "y0", "x1", "y1", source=edges, line_color="color",
                          line_width="width", line_alpha=0.75)  # fmt: skip
    lines.selection_glyph = lines.glyph.clone(line_alpha=1.0)  # a tapped neuron's edges
    lines.nonselection_glyph = lines.glyph.clone(line_alpha=0.08)
    graph.add_tools(HoverTool(renderers=[lines], line_policy="interp", tooltips=[
        ("", "@matrix"), ("rescaled", "@w{0.0000}"), ("in the file", "@raw{0.000000}"),
    ]))  # fmt: skip
    ends = graph.scatter("x", "y", source=nodes, size=9, fill_color="color", line_color="#444444",
                         line_width=0.5)  # fmt: skip
    graph.add_tools(HoverTool(renderers=[ends], tooltips=[("node", "@label"), ("", "@what")]))
    hidden = graph.scatter(1.0, "gy", source=neurons, size=11, fill_color="fill",
                           line_color="#444444", line_width=0.5)  # fmt: skip
    selectable(graph, hidden, line_color="#222222", line_width=3, size=16)
    graph.add_tools(HoverTool(renderers=[hidden], tooltips=[
        ("neuron", "h@neuron"), ("features read", "@eff{0.00}"), ("", "@kind"),
    ]))  # fmt: skip

    def select(name: str, title: str) -> Select:
        width = {"experiment": 300, "seed": 220}.get(name, 130)  # "0 (lowest of 0–2, reported)"
        return Select(name=name, title=title, options=[], width=width,
                      styles={"font-size": "13px"})  # fmt: skip

    threshold = select("threshold", "Threshold")

    controls = {
        "experiment": select("experiment", "Experiment"),
        "profile": select("profile", "Importance"),  # first: the widths depend on it
        "width": select("width", "Width m"),
        "p": select("p", "Feature probability p"),
        "seed": select("seed", "Seed"),
    }
    status = Div(name="status", sizing_mode="stretch_width", styles={"font-size": "13px"})
    models = {
        "cells": cells, "superposition": sup, "segments": segments, "polysemanticity": poly,
        "edges": edges, "nodes": nodes, "neurons": neurons, "status": status, "key": key,
        "x_features": x_features, "y_ranks": y_ranks, "x_ranks": x_ranks, "y_sup": y_sup,
        "y_stack": y_stack, "y_poly": y_poly,
        "value": value, "measure": scores, "measure_features": per_feature,
        "measure_status": measure_status,
        "threshold_line": threshold_line, "threshold": threshold, **controls,
    }  # fmt: skip
    neurons.selected.js_on_change("indices", CustomJS(args=models, code=_call("selected(args)")))
    for name, widget in {**controls, "threshold": threshold}.items():
        widget.js_on_change("value", CustomJS(args=models, code=_call(f"changed(args, {name!r})")))
    layout = column(
        row(*controls.values(), sizing_mode="stretch_width", styles={"flex-wrap": "wrap"}),
        status, matrix, sup_plot,
        row(threshold, measure_status, sizing_mode="stretch_width", styles={"flex-wrap": "wrap"}),
        measure, key, stack, poly_plot, graph,
        sizing_mode="stretch_width", name="explorer",
    )  # fmt: skip
    doc = Document()
    doc.add_root(layout)
    doc.js_on_event(DocumentReady, CustomJS(args=models, code=_call("start(args)")))
    return layout


START_WAIT_S = 30  # seconds the page waits for the explorer to draw before it says so

# What the page says until the explorer has drawn, and what it says if it cannot start: a
# notice of its own, outside Bokeh (which may be what failed). Each of the page's scripts
# reports a failure to load (its `onerror`) or to run (an error thrown from it) by its name.
NOTICE = (
    "<noscript><p>The explorer needs JavaScript, which is off in this browser.</p></noscript>"
    '<div class="superposition-explorer-notice" data-state="loading" role="status" '
    'style="margin:0.5em 0;padding:0.5em 0.75em;border:1px solid #bbbbbb;font-size:14px">'
    "Loading the explorer…</div>"
)
START = """<script>
(function () {
  "use strict";
  var notice = document.querySelector(".superposition-explorer-notice");
  var files = {}, failures = [], settled = false;
  __SCRIPTS__.forEach(function (name) {
    files[new URL(__BASE__ + name, document.baseURI).href] = name;
  });
  function say(state, text) {
    notice.dataset.state = state;
    notice.hidden = false;
    notice.textContent = text;
    if (state === "failed") notice.style.borderColor = notice.style.color = "#b00020";
  }
  function failed(file, why) {
    if (failures.some(function (f) { return f.indexOf(file + " ") === 0; })) return;
    failures.push(file + " " + why);
    say("failed", "The explorer could not start: its file " + failures.join("; its file ") +
      ". Reload the page to try again; if this persists, the site's copy is broken.");
  }
  window.SuperpositionExplorerStart = {
    // a script tag's onerror: the file did not arrive
    missing: function (tag) {
      failed(files[tag.src] || tag.getAttribute("src"),
        "could not be loaded (it is missing from the site, or the connection failed)");
    },
    failed: failed,
    // explorer.js has drawn a model, or has put why not in its status line
    started: function () { settled = true; if (!failures.length) notice.hidden = true; },
  };
  window.addEventListener("error", function (event) {
    var file = files[event.filename];
    if (file && !settled) failed(file, "failed to run (" + event.message + ")");
  });
  window.setTimeout(function () {
    if (!settled && !failures.length) {
      say("slow", "The explorer has not started after " + __WAIT__ + " seconds: one of its " +
        "files may still be on its way, or may have failed. Reload the page to try again.");
    }
  }, __WAIT__ * 1000);
})();
</script>"""


def page_html() -> str:
    """What the explorer chapter shows: BokehJS, the explorer's scripts and the document,
    all from the site itself (relative to the chapter, in book/), under a notice that says
    the explorer is loading until it has drawn, and which file failed if one does."""
    import bokeh
    from bokeh.embed import components

    base = f"../{FOLDER}/"
    # The explorer's own scripts first: settings.js asks for the model's data at once, so it
    # arrives while BokehJS loads.
    scripts = ["explorer.js", "settings.js"]
    scripts += [f"{name}-{bokeh.__version__}.min.js" for name in BOKEH_FILES]
    script, div = components(document())
    start = (
        START.replace("__WAIT__", str(START_WAIT_S))
        .replace("__BASE__", json.dumps(base))
        .replace("__SCRIPTS__", json.dumps(scripts))
    )
    tags = "".join(
        f'<script src="{base}{name}" onerror="SuperpositionExplorerStart.missing(this)"></script>'
        for name in scripts
    )
    return _fixed_ids(
        f'{NOTICE}{start}{tags}<div class="superposition-explorer">{div}</div>{script}'
    )


def _fixed_ids(html: str) -> str:
    """Bokeh names the document and its element with random UUIDs and its models from a
    counter that runs on through the process; the same build must give the same page, so
    both become fixed names, numbered in order of appearance."""
    uuid = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
    for number, found in enumerate(dict.fromkeys(re.findall(uuid, html))):
        html = html.replace(found, f"superposition-explorer-{number}")
    ids = {
        found: f"p{n}"
        for n, found in enumerate(dict.fromkeys(re.findall(r'(?<=["\'])p\d+(?=["\'])', html)))
    }
    return re.sub(r'(?<=["\'])p\d+(?=["\'])', lambda match: ids[match.group()], html)


def model(w: store.Weights, k: int) -> tuple[str, float, int]:
    """Instance k of `w` as the explorer names it: (experiment, p, seed)."""
    return w.experiment.name, w.feature_probs[k], w.seeds[k]


def links(models: list[tuple[str, float, int]], labels: list[str] | None = None):
    """The line a chapter shows under a figure: one explorer link per model it draws,
    labelled by sparsity and seed unless `labels` says otherwise."""
    from html import escape

    from IPython.display import HTML

    labels = labels or [f"p = {p:g}, seed {seed}" for _, p, seed in models]
    anchors = [
        f'<a href="{escape(link(*m))}">{escape(label)}</a>'
        for m, label in zip(models, labels, strict=True)
    ]
    what = "this model" if len(anchors) == 1 else "these models"
    return HTML(f'<p class="explore-links">Explore {what} in the explorer (every weight on '
                "hover): " + " · ".join(anchors) + "</p>")  # fmt: skip
