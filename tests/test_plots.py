"""The three views draw exactly the weights they are given, in consistent colours."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from matplotlib.collections import PatchCollection  # noqa: E402
from matplotlib.colors import to_rgba  # noqa: E402

from superposition import plots  # noqa: E402

W1 = np.array([[1.0, 0.0, -0.5], [0.0, -1.0, 0.05], [0.3, 0.2, 1.0], [0.0, 0.0, 0.0]])  # [m 4, n 3]
W2 = np.array([[1.0, 0.0, 0.2, 0.0], [0.0, 1.0, 0.0, 0.0], [-0.4, 0.0, 1.0, 0.0]])  # [n 3, m 4]


@pytest.fixture
def ax():
    fig, ax = plt.subplots()
    yield ax
    plt.close(fig)


def rectangles(ax):
    (collection,) = [c for c in ax.collections if isinstance(c, PatchCollection)]
    return collection


def test_stack_draws_one_rectangle_per_nonzero_weight_in_its_feature_colour(ax):
    colors = plots.feature_colors(3)
    assert plots.stack(ax, W1, colors=colors) is ax
    coll = rectangles(ax)
    assert len(coll.get_paths()) == np.count_nonzero(W1) == 7
    expected = [to_rgba(colors[i]) for j in range(4) for i in range(3) if W1[j, i] != 0]
    np.testing.assert_allclose(coll.get_facecolors(), expected)


def test_stack_heights_are_the_weights_and_negatives_go_below(ax):
    plots.stack(ax, W1)
    boxes = [p.get_extents() for p in rectangles(ax).get_paths()]
    heights = sorted(round(b.height, 6) for b in boxes)
    assert heights == sorted(round(abs(w), 6) for w in W1.flatten() if w != 0)
    below = [b for b in boxes if b.y1 <= 1e-9]
    assert sorted(round(b.height, 6) for b in below) == [0.5, 1.0]  # the two negative weights


def test_stack_absolute_mode_stacks_everything_up(ax):
    plots.stack(ax, W1, absolute=True)
    assert all(p.get_extents().y0 >= -1e-9 for p in rectangles(ax).get_paths())


def test_stack_min_weight_and_order(ax):
    plots.stack(ax, W1, min_weight=0.1, order=[2, 0, 1, 3])
    assert len(rectangles(ax).get_paths()) == 6  # the 0.05 weight is dropped
    first_column = [p.get_extents() for p in rectangles(ax).get_paths()][:3]
    assert all(b.x0 < 0.5 for b in first_column)  # neuron 2 is drawn first


def test_graph_has_one_edge_per_weight_above_threshold():
    G = plots.build_graph(W1, W2, threshold=0.1)
    expected = np.count_nonzero(np.abs(W1) > 0.1) + np.count_nonzero(np.abs(W2) > 0.1)
    assert G.number_of_edges() == expected == 6 + 5
    assert G.edges[("x", 2), ("h", 0)]["weight"] == -0.5
    assert G.edges[("h", 0), ("y", 2)]["weight"] == -0.4
    assert ("x", 2) in G and G.number_of_nodes() == 4 + 3 + 3


def test_graph_drawing_colours_edges_by_sign_and_nodes_by_feature(ax):
    colors = plots.feature_colors(3)
    plots.graph(ax, W1, W2, colors=colors, threshold=0.1)
    edges = ax.collections[0]
    assert len(edges.get_paths()) == 11
    edge_colors = {tuple(np.round(c, 3)) for c in edges.get_edgecolors()}
    assert edge_colors == {
        tuple(np.round(to_rgba(c, 0.8), 3)) for c in (plots.POSITIVE, plots.NEGATIVE)
    }
    nodes = ax.collections[1].get_facecolors()
    G = plots.build_graph(W1, W2, threshold=0.1)
    for v, color in zip(G.nodes, nodes, strict=True):
        if v[0] != "h":
            np.testing.assert_allclose(color, to_rgba(colors[v[1]]))


def test_matrix_is_centred_on_zero(ax):
    plots.matrix(ax, W1, vmax=2.0, colorbar=False)
    image = ax.images[0]
    assert image.norm.vmin == -2.0 and image.norm.vmax == 2.0 and image.norm.vcenter == 0.0
    np.testing.assert_array_equal(image.get_array(), W1)


def test_feature_colours_are_stable_and_neighbours_differ():
    assert plots.feature_colors(3) == plots.feature_colors(3)
    many = plots.feature_colors(100)
    assert len(set(many)) == 100
    assert all(a != b for a, b in zip(many, many[1:], strict=False))


def test_no_feature_is_coloured_like_a_weight_sign():
    """Red and blue mean negative and positive weights, in every figure of the book."""
    import colorsys

    from matplotlib.colors import to_rgb

    for colour in plots.FEATURE_PALETTE:
        hue, saturation, value = colorsys.rgb_to_hsv(*to_rgb(colour))
        degrees = hue * 360
        if saturation > 0.3 and value > 0.2:
            assert not (degrees < 15 or degrees > 345), f"{colour} is red"
            assert not 195 <= degrees <= 250, f"{colour} is blue"
    # Control: the sign colours themselves fail the same check.
    for colour in (plots.POSITIVE, plots.NEGATIVE):
        hue, _, _ = colorsys.rgb_to_hsv(*to_rgb(colour))
        assert hue * 360 < 15 or hue * 360 > 345 or 195 <= hue * 360 <= 250


def test_the_value_scale_separates_the_sparsest_models():
    """Superposition runs far past 1 at the sparsest settings; the log scale keeps values of
    1, 3 and 10 apart where a scale clipped at 1 gave them one colour."""
    norm = plots.value_norm([0.0, 1.0, 3.0, 10.0])
    colours = plots.value_colors([1.0, 3.0, 10.0], norm)
    assert len(set(colours)) == 3
    clipped = plots.value_colors([1.0, 3.0, 10.0])
    assert len(set(clipped)) == 1  # the old, saturated scale (control)
