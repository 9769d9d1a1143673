"""Figures: PNG and SVG side by side, labels that do not overlap, the tanglegram's legend."""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure
from matplotlib.text import Text

from evosim import plot
from evosim.phylo import Phylogeny


def _overlaps(boxes) -> int:  # noqa: ANN001
    return sum(
        boxes[i].overlaps(boxes[j]) for i in range(len(boxes)) for j in range(i + 1, len(boxes))
    )


def test_labels_of_crowded_points_do_not_overlap():
    g = np.random.default_rng(0)
    xy = np.concatenate([g.normal(0, 0.02, (20, 2)), g.normal(3, 1.0, (20, 2))])
    labels = [f"species_{i}" for i in range(len(xy))]
    fig = Figure(figsize=(7, 6))
    ax = fig.add_subplot()
    ax.scatter(xy[:, 0], xy[:, 1])
    ax.margins(0.1)
    fig.tight_layout()
    ax.set_xlim(ax.get_xlim())
    ax.set_ylim(ax.get_ylim())
    naive = [ax.text(x, y, s, fontsize=6) for (x, y), s in zip(xy, labels)]
    renderer = fig.canvas.get_renderer() if hasattr(fig.canvas, "get_renderer") else None
    if renderer is None:
        from matplotlib.backends.backend_agg import FigureCanvasAgg

        renderer = FigureCanvasAgg(fig).get_renderer()
    assert _overlaps([t.get_window_extent(renderer) for t in naive]) > 10  # a real crowd
    for t in naive:
        t.remove()
    placed = plot.place_labels(ax, xy, labels, fontsize=6)
    fig.canvas.draw()  # annotations take their places when drawn
    boxes = [Text.get_window_extent(a, renderer) for a in placed]  # the text, not the leader
    assert _overlaps(boxes) == 0
    # deterministic: the same input places every label at the same spot
    again = plot.place_labels(ax, xy, labels, fontsize=6)
    assert [a.xyann for a in again] == [a.xyann for a in placed]


def test_figures_are_written_as_png_and_svg_and_the_svg_is_stable(tmp_path):
    true = Phylogeny.from_newick("(((A:1,B:1):1,C:2):1,(D:1,E:1):2);")
    inferred = Phylogeny.from_newick("[&U] (A:1,C:1,(B:1,(D:1,E:1):1):1);")
    png = plot.plot_tanglegram(true, inferred, tmp_path / "t.png")
    svg = png.with_suffix(".svg")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = svg.read_text()
    assert "true clade missing from the inferred tree" in text  # the legend says what red is
    assert "true clade recovered" in text
    plot.plot_tanglegram(true, inferred, tmp_path / "u.png")
    assert (tmp_path / "u.svg").read_text() == text


def test_latent_space_labels_every_small_world(tmp_path):
    true = Phylogeny.from_newick("(((A:1,B:1):1,C:2):1,(D:1,E:1):2);")
    z = np.array([[0, 0], [0.001, 0], [0, 0.001], [5, 5], [5.001, 5]], dtype=float)
    png = plot.plot_latent_tree(z, ["A", "B", "C", "D", "E"], true, tmp_path / "z.png")
    text = png.with_suffix(".svg").read_text()
    for name in "ABCDE":
        assert f">{name}<" in text


def test_dense_point_sets_are_images_in_the_svg_and_small_ones_vectors(tmp_path):
    from evosim.plot import SVG_VECTOR_POINTS, save_figure

    rng = np.random.default_rng(0)
    sizes = {}
    for name, n in (("sparse", 50), ("dense", 4 * SVG_VECTOR_POINTS)):
        fig = Figure()
        ax = fig.add_subplot()
        ax.scatter(*rng.normal(size=(2, n)), s=4)
        ax.set_title("kept as text")
        png = save_figure(fig, tmp_path / f"{name}.png")
        svg = png.with_suffix(".svg").read_text()
        sizes[name] = len(svg)
        assert "kept as text" in svg
        assert ("<image" in svg) == (name == "dense")
    # the dense one is not 400 times the sparse one's markup: one image, not 20,000 paths
    assert sizes["dense"] < 20 * sizes["sparse"]
