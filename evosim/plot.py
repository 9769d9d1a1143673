"""Figures. Each function takes plain data and a path, and writes the figure atomically as
PNG with an SVG of the same name beside it; it returns the PNG's path.

Plotting is a leaf: these functions never read run directories or import the stages
that made their data (``evosim.pipeline`` reads the files and calls them).
Figures are built on :class:`matplotlib.figure.Figure` directly (no pyplot, so no global
state and no GUI backend: rendering is Agg whatever backend the session has selected).
Shared file: other stages add their figure functions at the end of this module.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import Collection, LineCollection
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from evosim import runio

__all__ = [
    "save_figure",
    "tree_layout",
    "trait_summary",
    "plot_tree",
    "plot_traits_through_time",
    "plot_instances",
    "plot_simulation",
    "plot_population",
    "plot_tanglegram",
    "plot_latent_tree",
    "plot_distance_scatter",
    "plot_ae_losses",
    "plot_mae_training",
    "place_labels",
    "plot_confusion",
    "plot_selected_features",
    "plot_identification_scores",
    "plot_generative",
    "plot_generative_figures",
    "plot_latent_line",
]

DPI = 120


#: Plotted sets of more points than this go into the SVG as an embedded image: at thousands
#: of species a scatter of every pair has millions of points, minutes to write as vectors.
SVG_VECTOR_POINTS = 5_000


def _points(artist: Any) -> int:
    if isinstance(artist, Collection):
        return max(len(artist.get_offsets()), len(artist.get_paths()))
    return len(artist.get_xdata())


def save_figure(fig: Figure, path: str | Path) -> Path:
    """Write ``fig`` as PNG to ``path`` and as SVG beside it, atomically; return the PNG path.

    The SVG keeps its text as text (searchable, editable), and carries no date and fixed
    element ids, so the same figure gives the same file. A plotted set of more than
    :data:`SVG_VECTOR_POINTS` points is embedded in it as an image (axes and text stay
    vectors).
    """
    png = Path(path).with_suffix(".png")
    runio.atomic_write(png, lambda h: fig.savefig(h, format="png", dpi=DPI))
    for ax in fig.axes:
        for artist in [*ax.collections, *ax.lines]:
            if _points(artist) > SVG_VECTOR_POINTS:
                artist.set_rasterized(True)
    with matplotlib.rc_context({"svg.hashsalt": "evosim", "svg.fonttype": "none"}):
        runio.atomic_write(
            png.with_suffix(".svg"),
            lambda h: fig.savefig(h, format="svg", dpi=DPI, metadata={"Date": None}),
        )
    return png


def place_labels(
    ax,  # noqa: ANN001 - matplotlib Axes
    xy: np.ndarray,
    labels: Sequence[str],
    *,
    fontsize: float = 6,
) -> list[Any]:
    """Label points without overlaps: each label takes the nearest free spot around its point.

    Greedy placement in display space: for each point (in order), candidate positions at
    growing distances in 8 directions are tried, and the first whose text box overlaps
    no placed label, no other point and stays inside the axes is taken; a label moved
    away from its point gets a thin leader line. Deterministic. Call after the figure's
    layout is final (e.g. after ``tight_layout``).

    Returns
    -------
    list
        The annotation artists.
    """
    fig = ax.figure
    if fig.canvas is None or not hasattr(fig.canvas, "get_renderer"):
        FigureCanvasAgg(fig)
    renderer = fig.canvas.get_renderer()
    pts = ax.transData.transform(np.asarray(xy, dtype=np.float64))
    frame = ax.get_window_extent(renderer)
    sizes = []
    for label in labels:
        t = ax.text(0, 0, label, fontsize=fontsize)
        box = t.get_window_extent(renderer)
        sizes.append((box.width + 2, box.height + 2))
        t.remove()
    radius = 3.0 * fig.dpi / 72  # a marker's half-size in pixels
    placed: list[tuple[float, float, float, float]] = []
    px_to_pt = 72.0 / fig.dpi
    artists = []
    # 16 directions, up-right first; the box's side nearest the point faces it.
    angles = np.deg2rad([45, -45, 135, -135, 0, 180, 90, -90, 22.5, -22.5, 157.5, -157.5])
    angles = np.concatenate([angles, np.deg2rad([67.5, -67.5, 112.5, -112.5])])
    directions = [(float(np.cos(a)), float(np.sin(a))) for a in angles]

    def free(x0: float, y0: float, w: float, h: float, own: int) -> int:
        x1, y1 = x0 + w, y0 + h
        hits = 0
        if x0 < frame.x0 or x1 > frame.x1 or y0 < frame.y0 or y1 > frame.y1:
            hits += 1
        for a0, b0, a1, b1 in placed:
            if x0 < a1 and a0 < x1 and y0 < b1 and b0 < y1:
                hits += 1
        near = (np.abs(pts[:, 0] - np.clip(pts[:, 0], x0, x1)) < radius) & (
            np.abs(pts[:, 1] - np.clip(pts[:, 1], y0, y1)) < radius
        )
        near[own] = False
        return hits + int(near.sum())

    for i, label in enumerate(labels):
        w, h = sizes[i]
        best = None
        for r in (3.0, 8.0, 14.0, 22.0, 32.0, 45.0, 60.0, 80.0, 100.0, 125.0):
            for dx, dy in directions:
                ox = r * dx - w * (1 - dx) / 2
                oy = r * dy - h * (1 - dy) / 2
                cost = free(pts[i, 0] + ox, pts[i, 1] + oy, w, h, i)
                if best is None or cost < best[0]:
                    best = (cost, ox, oy, r)
                if cost == 0:
                    break
            if best is not None and best[0] == 0:
                break
        assert best is not None
        _, ox, oy, r = best
        placed.append((pts[i, 0] + ox, pts[i, 1] + oy, pts[i, 0] + ox + w, pts[i, 1] + oy + h))
        artists.append(
            ax.annotate(
                label,
                xy[i],
                xytext=((ox + 1) * px_to_pt, (oy + 1) * px_to_pt),
                textcoords="offset points",
                ha="left",
                va="bottom",
                fontsize=fontsize,
                arrowprops=dict(arrowstyle="-", color="0.6", lw=0.4, shrinkA=0, shrinkB=2)
                if r > 8.0
                else None,
            )
        )
    return artists


def tree_layout(tree) -> tuple[dict[str, float], dict[str, float]]:  # noqa: ANN001
    """Rectangular layout: x = node time, y = leaf rank (leaves) or mean of children (internal).

    Returns
    -------
    (x, y)
        Node name -> coordinate.
    """
    x = {n: float(tree.time(n)) for n in tree.preorder()}
    y: dict[str, float] = {}
    for rank, leaf in enumerate(tree.leaves):
        y[leaf] = float(rank)
    for node in reversed(tree.preorder()):
        if node not in y:
            y[node] = float(np.mean([y[c] for c in tree.children(node)]))
    return x, y


def trait_summary(values: np.ndarray) -> tuple[np.ndarray, str]:
    """One number per row of ``values [n, k]``: the first principal component (or the trait).

    Returns
    -------
    (summary [n], label)
    """
    values = np.asarray(values, dtype=np.float64)
    if values.shape[1] == 1 or len(values) < 3:
        return values[:, 0], "trait 1"
    centred = values - values.mean(axis=0)
    _, s, vt = np.linalg.svd(centred, full_matrices=False)
    axis = vt[0] * np.sign(vt[0][np.argmax(np.abs(vt[0]))])  # a deterministic sign
    share = s[0] ** 2 / max(float(np.sum(s**2)), 1e-300)
    return centred @ axis, f"trait PC1 ({100 * share:.0f}% of variance)"


def plot_tree(
    tree,  # noqa: ANN001 - Phylogeny
    values: Mapping[str, float],
    path: str | Path,
    *,
    label: str = "trait summary",
    title: str = "true tree",
) -> Path:
    """The tree (time on x), each leaf with a value coloured by it; leaves without one in grey.

    Parameters
    ----------
    tree
        A rooted Phylogeny (node times from the root).
    values
        Leaf name -> value (e.g. a trait summary of the extant species).
    path
        Output PNG.
    label
        Colour-bar label.
    title
        Figure title.
    """
    x, y = tree_layout(tree)
    leaves = tree.leaves
    n = len(leaves)
    fig = Figure(figsize=(8, max(3.0, min(0.18 * n + 1, 30.0))))
    ax = fig.add_subplot()
    segments = []
    for node in tree.preorder():
        kids = tree.children(node)
        for c in kids:
            segments.append([(x[node], y[c]), (x[c], y[c])])
        if kids:
            ys = [y[c] for c in kids]
            segments.append([(x[node], min(ys)), (x[node], max(ys))])
    ax.add_collection(LineCollection(segments, colors="0.3", linewidths=0.8))
    coloured = [leaf for leaf in leaves if leaf in values]
    grey = [leaf for leaf in leaves if leaf not in values]
    if grey:
        ax.scatter(
            [x[g] for g in grey],
            [y[g] for g in grey],
            c="0.7",
            marker="x",
            s=12,
            label="extinct",
            zorder=3,
        )
        ax.legend(loc="lower left", fontsize=8, frameon=False)
    if coloured:
        points = ax.scatter(
            [x[c] for c in coloured],
            [y[c] for c in coloured],
            c=[values[c] for c in coloured],
            cmap="viridis",
            s=28,
            zorder=4,
            edgecolors="k",
            linewidths=0.3,
        )
        fig.colorbar(points, ax=ax, label=label, shrink=0.6)
    if n <= 80:
        for leaf in leaves:
            ax.annotate(
                leaf,
                (x[leaf], y[leaf]),
                xytext=(4, 0),
                textcoords="offset points",
                va="center",
                fontsize=7,
            )
    ax.set_xlabel("time since root")
    ax.set_yticks([])
    ax.set_title(title)
    ax.autoscale()
    ax.margins(x=0.08)
    for side in ("left", "right", "top"):
        ax.spines[side].set_visible(False)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_traits_through_time(
    tree,  # noqa: ANN001 - Phylogeny
    traits: Mapping[str, np.ndarray],
    path: str | Path,
    *,
    max_traits: int = 4,
    extinct: Sequence[str] = (),
) -> Path:
    """Traits of every node against node time, with a line along each branch (a traitgram).

    Parameters
    ----------
    tree
        A rooted Phylogeny.
    traits
        Node name -> ``[k]`` trait vector for every node.
    path
        Output PNG.
    max_traits
        At most this many traits are drawn, one panel each.
    extinct
        Leaves whose lineages are drawn in grey.
    """
    k = len(next(iter(traits.values())))
    shown = min(k, max_traits)
    cols = min(shown, 2)
    rows = int(np.ceil(shown / cols))
    fig = Figure(figsize=(5.5 * cols, 3.2 * rows))
    order = tree.preorder()
    dead = set(extinct)
    # A branch is grey when every leaf below it is extinct.
    all_dead: dict[str, bool] = {}
    for node in reversed(order):
        kids = tree.children(node)
        all_dead[node] = all(all_dead[c] for c in kids) if kids else node in dead
    edges = [(tree.parent(n), n) for n in order if tree.parent(n) is not None]
    t = {n: float(tree.time(n)) for n in order}
    for j in range(shown):
        ax = fig.add_subplot(rows, cols, j + 1)
        live = [[(t[p], traits[p][j]), (t[c], traits[c][j])] for p, c in edges if not all_dead[c]]
        gone = [[(t[p], traits[p][j]), (t[c], traits[c][j])] for p, c in edges if all_dead[c]]
        if gone:
            ax.add_collection(LineCollection(gone, colors="0.75", linewidths=0.6))
        ax.add_collection(LineCollection(live, colors="C0", linewidths=0.8))
        tips = [n for n in tree.leaves if n not in dead]
        ax.scatter([t[n] for n in tips], [traits[n][j] for n in tips], s=6, c="C1", zorder=3)
        ax.autoscale()
        ax.set_xlabel("time since root")
        ax.set_ylabel(f"trait {j + 1}")
    fig.suptitle(f"traits through time ({shown} of {k} traits)")
    fig.tight_layout()
    return save_figure(fig, path)


def _pick(n: int, at_most: int) -> np.ndarray:
    return np.unique(np.linspace(0, n - 1, min(n, at_most)).round().astype(int))


def plot_instances(
    instances: np.ndarray,
    species: Sequence[str],
    path: str | Path,
    *,
    family: str = "development",
    max_species: int = 16,
    max_shapes: int = 8,
) -> Path:
    """A grid of sample instances, one panel per species.

    ``circles``: the instances as points in the plane; ``outline``: a few individuals'
    outlines (instance vectors read as ``(x_1, y_1, x_2, y_2, ...)``) and their mean in
    black; other families: the instances projected on the first two principal components
    of all shown instances pooled (the same axes in every panel).

    Parameters
    ----------
    instances
        ``[S, N, D]`` instances.
    species
        ``[S]`` names.
    path
        Output PNG.
    family
        ``species.family`` of the world.
    max_species
        At most this many species (evenly spaced through ``species``) are shown.
    max_shapes
        Outlines drawn per species (``outline`` only).
    """
    instances = np.asarray(instances)
    chosen = _pick(len(species), max_species)
    cols = int(np.ceil(np.sqrt(len(chosen))))
    rows = int(np.ceil(len(chosen) / cols))
    fig = Figure(figsize=(2.4 * cols, 2.4 * rows))
    if family == "circles":
        points = instances[chosen][..., :2]
    elif family == "outline":
        points = instances[chosen].reshape(len(chosen), instances.shape[1], -1, 2)
    else:
        pooled = instances[chosen].reshape(-1, instances.shape[2]).astype(np.float64)
        mean = pooled.mean(axis=0)
        _, _, vt = np.linalg.svd(pooled - mean, full_matrices=False)
        basis = vt[:2].T if vt.shape[0] >= 2 else np.eye(instances.shape[2], 2)
        points = (instances[chosen] - mean) @ basis
    flat = points.reshape(-1, 2)
    lo, hi = np.nanmin(flat, axis=0), np.nanmax(flat, axis=0)
    if family in ("circles", "outline"):
        # Shapes: one square window for every panel, so they compare at equal aspect.
        centre, half = (lo + hi) / 2, np.max(hi - lo) / 2
        lo, hi = centre - half, centre + half
    pad = 0.05 * np.maximum(hi - lo, 1e-9)
    for panel, i in enumerate(chosen):
        ax = fig.add_subplot(rows, cols, panel + 1)
        p = points[panel]
        if family == "outline":
            for shape in p[:max_shapes]:
                closed = np.vstack([shape, shape[:1]])
                ax.plot(closed[:, 0], closed[:, 1], lw=0.6, alpha=0.6)
            mean_shape = p.mean(axis=0)
            closed = np.vstack([mean_shape, mean_shape[:1]])
            ax.plot(closed[:, 0], closed[:, 1], lw=1.4, c="k")
        else:
            ax.scatter(p[:, 0], p[:, 1], s=2, alpha=0.5)
        ax.set_xlim(lo[0] - pad[0], hi[0] + pad[0])
        ax.set_ylim(lo[1] - pad[1], hi[1] + pad[1])
        if family in ("circles", "outline"):
            ax.set_aspect("equal", adjustable="box")
        ax.set_title(str(species[i]), fontsize=8)
        ax.tick_params(labelsize=6)
    how = {"circles": "points", "outline": "outlines"}.get(family, "PC1 vs PC2 of pooled instances")
    fig.suptitle(f"sample instances per species ({family}: {how})", fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_simulation(sim: Any, out_dir: str | Path) -> list[Path]:
    """Draw a simulated world's figures into ``out_dir``.

    Writes ``true_tree.png`` (the full tree, extant leaves coloured by the first principal
    component of their traits, extinct leaves grey), ``traits_through_time.png``,
    ``instances.png`` and, for the population engine, ``population.png`` (each with SVG).

    Parameters
    ----------
    sim
        A :class:`~evosim.simulation.Simulation` (its tree, traits, species, instances,
        scenario and population log are read).
    out_dir
        Where the figures go (created if missing).

    Returns
    -------
    list[Path]
        The PNGs written.
    """
    out = Path(out_dir)
    summary, label = trait_summary(sim.trait_matrix())
    extinct = [leaf for leaf in sim.tree.leaves if leaf not in set(sim.species)]
    paths = [
        plot_tree(
            sim.tree,
            dict(zip(sim.species, summary)),
            out / "true_tree.png",
            label=label,
            title=f"true tree: {sim.scenario.name}",
        ),
        plot_traits_through_time(
            sim.tree, sim.traits, out / "traits_through_time.png", extinct=extinct
        ),
        plot_instances(
            sim.instances, sim.species, out / "instances.png", family=sim.scenario.species.family
        ),
    ]
    if sim.population_log:
        paths.append(
            plot_population(sim.population_log, sim.tree, out / "population.png", extinct=extinct)
        )
    return paths


# ---------------------------------------------------------------------------- analysis figures
# (appended by the meta/analysis stage: tanglegram, latent space, distances, losses)


def _ordered_layout(tree, rank=None):  # noqa: ANN001, ANN202 - Phylogeny
    """Rectangular layout, x = path length from the root; children ordered by ``rank``.

    ``rank`` maps leaf name -> number; each node's children are sorted by the mean rank
    of their leaves (which untangles a tanglegram). Returns (x, y, leaf order).
    """
    x: dict[str, float] = {}
    for node in tree.preorder():
        parent = tree.parent(node)
        x[node] = 0.0 if parent is None else x[parent] + max(float(tree.length(node)), 0.0)
    below: dict[str, list[str]] = {}
    for node in tree.postorder():
        kids = tree.children(node)
        below[node] = [node] if not kids else [leaf for c in kids for leaf in below[c]]

    def key(node: str) -> float:
        if rank is None:
            return 0.0
        return float(np.mean([rank.get(leaf, 0.0) for leaf in below[node]]))

    order: list[str] = []
    stack = [tree.root]
    while stack:
        node = stack.pop()
        kids = tree.children(node)
        if not kids:
            order.append(node)
        stack.extend(sorted(kids, key=key, reverse=True))
    y = {leaf: float(i) for i, leaf in enumerate(order)}
    for node in tree.postorder():
        if node not in y:
            y[node] = float(np.mean([y[c] for c in tree.children(node)]))
    return x, y, order


def _tree_segments(tree, x, y, flip: float | None = None):  # noqa: ANN001, ANN202
    def fx(v: float) -> float:
        return v if flip is None else flip - v

    segs = []
    for node in tree.preorder():
        kids = tree.children(node)
        for c in kids:
            segs.append([(fx(x[node]), y[c]), (fx(x[c]), y[c])])
        if kids:
            ys = [y[c] for c in kids]
            segs.append([(fx(x[node]), min(ys)), (fx(x[node]), max(ys))])
    return segs


def _misplaced(true_tree, inferred_tree, leaves: Sequence[str]) -> list[bool]:  # noqa: ANN001
    """Per leaf: is its smallest true clade missing from the inferred tree's splits?"""
    from evosim.phylo import shared_splits

    found = shared_splits(true_tree, inferred_tree)
    return [
        not found[true_tree.parent(leaf)] if true_tree.parent(leaf) else False for leaf in leaves
    ]


def plot_tanglegram(
    true_tree,
    inferred_tree,
    path: str | Path,
    *,  # noqa: ANN001
    title: str = "true (left) vs inferred (right)",
) -> Path:
    """True and inferred trees face to face, matching leaves joined by lines.

    Both trees are scaled to the same width; the inferred tree's children are ordered by
    the mean position of their leaves in the true tree, which removes most crossings that
    are not real disagreements. A link is red when the leaf's smallest true clade (its
    parent's leaves) is not a clade (split) of the inferred tree, grey otherwise (the
    legend says so).
    """
    xt, yt, order_t = _ordered_layout(true_tree)
    rank = {leaf: i for i, leaf in enumerate(order_t)}
    xi, yi, _ = _ordered_layout(inferred_tree, rank)
    leaves = [leaf for leaf in order_t if leaf in yi]
    n = len(order_t)
    wt = max(max(xt.values()), 1e-12)
    wi = max(max(xi.values()), 1e-12)
    xt = {k: v / wt for k, v in xt.items()}
    xi = {k: v / wi for k, v in xi.items()}
    gap = 0.6
    fig = Figure(figsize=(9, max(3.0, min(0.2 * n + 1, 30.0))))
    ax = fig.add_subplot()
    ax.add_collection(
        LineCollection(_tree_segments(true_tree, xt, yt), colors="0.2", linewidths=0.9)
    )
    ax.add_collection(
        LineCollection(
            _tree_segments(inferred_tree, xi, yi, flip=2.0 + gap), colors="tab:blue", linewidths=0.9
        )
    )
    # Dotted guides from tips that end short of the label column (non-ultrametric trees).
    guides = [[(xt[leaf], yt[leaf]), (1.0, yt[leaf])] for leaf in leaves if xt[leaf] < 1.0]
    guides += [
        [(2.0 + gap - xi[leaf], yi[leaf]), (1.0 + gap, yi[leaf])]
        for leaf in leaves
        if xi[leaf] < 1.0
    ]
    ax.add_collection(LineCollection(guides, colors="0.8", linewidths=0.6, linestyles=":"))
    links = [[(1.0 + 0.02, yt[leaf]), (1.0 + gap - 0.02, yi[leaf])] for leaf in leaves]
    moved = _misplaced(true_tree, inferred_tree, leaves)
    ax.add_collection(
        LineCollection(links, colors=["tab:red" if m else "0.75" for m in moved], linewidths=0.7)
    )
    if n <= 80:
        for leaf in leaves:
            ax.annotate(
                leaf,
                (1.0, yt[leaf]),
                xytext=(2, 0),
                textcoords="offset points",
                va="center",
                fontsize=6,
            )
            ax.annotate(
                leaf,
                (1.0 + gap, yi[leaf]),
                xytext=(-2, 0),
                textcoords="offset points",
                va="center",
                ha="right",
                fontsize=6,
            )
    ax.set_xlim(-0.05, 2.0 + gap + 0.05)
    ax.set_ylim(-1, n)
    ax.set_axis_off()
    ax.set_title(title)
    n_moved = int(sum(moved))
    ax.legend(
        handles=[
            Line2D([], [], color="tab:red", lw=1.2),
            Line2D([], [], color="0.75", lw=1.2),
        ],
        labels=[
            f"leaf's true clade missing from the inferred tree ({n_moved})",
            f"leaf's true clade recovered ({len(leaves) - n_moved})",
        ],
        loc="upper center",
        bbox_to_anchor=(0.5, 0.0),
        ncol=2,
        fontsize=7,
        frameon=False,
    )
    fig.tight_layout()
    return save_figure(fig, path)


def _pca2(points: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """(2-D coordinates, mean, axes [k, 2], axis labels) by PCA; pads with zeros if k < 2."""
    points = np.asarray(points, dtype=np.float64)
    mean = points.mean(axis=0)
    centred = points - mean
    _, s, vt = np.linalg.svd(centred, full_matrices=False)
    axes = vt[:2].T
    share = s**2 / max(float(np.sum(s**2)), 1e-300)
    labels = [f"PC{i + 1} ({100 * share[i]:.0f}%)" for i in range(min(2, len(s)))]
    if axes.shape[1] < 2:
        axes = np.concatenate([axes, np.zeros((axes.shape[0], 2 - axes.shape[1]))], axis=1)
        labels.append("(none)")
    return centred @ axes, mean, axes, labels


def plot_latent_tree(
    latents: np.ndarray,
    species: Sequence[str],
    true_tree,
    path: str | Path,
    *,
    title: str = "MAE latent space with the true tree",
) -> Path:  # noqa: ANN001
    """Species in the MAE's latent space (2-D PCA), the true tree drawn through them.

    Each internal node of the true tree sits at the mean latent position of its
    descendant leaves, so a tree that the latent space respects draws short, nested edges.
    Leaves are coloured by depth-first order in the true tree (close colours, close kin).
    """
    xy, _, _, labels = _pca2(latents)
    pos = {s: xy[i] for i, s in enumerate(species)}
    coords: dict[str, np.ndarray] = {}
    for node in true_tree.postorder():
        kids = true_tree.children(node)
        if not kids:
            if node in pos:
                coords[node] = pos[node]
        else:
            pts = [coords[c] for c in kids if c in coords]
            if pts:
                coords[node] = np.mean(pts, axis=0)
    segs = [
        [coords[true_tree.parent(n)], coords[n]]
        for n in true_tree.preorder()
        if true_tree.parent(n) is not None and n in coords and true_tree.parent(n) in coords
    ]
    fig = Figure(figsize=(7, 6))
    ax = fig.add_subplot()
    ax.add_collection(LineCollection(segs, colors="0.6", linewidths=0.8, zorder=1))
    _, _, order = _ordered_layout(true_tree)
    order = [s for s in order if s in pos]
    colour = {s: i / max(len(order) - 1, 1) for i, s in enumerate(order)}
    ax.scatter(
        [pos[s][0] for s in order],
        [pos[s][1] for s in order],
        c=[colour[s] for s in order],
        cmap="viridis",
        s=30,
        edgecolors="k",
        linewidths=0.3,
        zorder=3,
    )
    ax.set_xlabel(labels[0])
    ax.set_ylabel(labels[1])
    ax.set_title(title)
    ax.autoscale()
    ax.margins(0.08)
    fig.tight_layout()
    if len(order) <= 60:
        ax.set_xlim(ax.get_xlim())  # freeze the limits the labels are placed in
        ax.set_ylim(ax.get_ylim())
        place_labels(ax, np.asarray([pos[s] for s in order]), order, fontsize=6)
    return save_figure(fig, path)


#: Above this many species pairs the distance scatter is drawn as a density (hexbin).
SCATTER_MAX_PAIRS = 20_000


def plot_distance_scatter(
    latents: np.ndarray,
    species: Sequence[str],
    true_tree,  # noqa: ANN001
    path: str | Path,
    *,
    title: str = "latent vs patristic distance",
) -> Path:
    """Every species pair: Euclidean latent distance against true patristic distance.

    Up to :data:`SCATTER_MAX_PAIRS` pairs (about 200 species) each pair is a point.
    Beyond, the pairs are binned in hexagons coloured by the log of their count
    (``hexbin``, every pair counted, cells with one pair shown): at thousands of species
    millions of points overlap into a solid blot, take minutes to draw and hide where
    most pairs lie, while the density shows the shape and keeps single outlying pairs
    visible. Nothing is subsampled, so the figure is the same on every run. The Spearman
    correlation in the title is over all pairs either way.
    """
    from scipy.spatial.distance import pdist

    from evosim.stats import spearman

    _, d = true_tree.patristic_distances(list(species))
    iu = np.triu_indices(len(species), k=1)
    a = np.asarray(d, dtype=np.float64)[iu]
    b = pdist(np.asarray(latents, dtype=np.float64))  # the same pair order as iu
    fig = Figure(figsize=(6, 5))
    ax = fig.add_subplot()
    if len(a) > SCATTER_MAX_PAIRS:
        cells = ax.hexbin(a, b, gridsize=50, bins="log", mincnt=1, cmap="viridis", linewidths=0)
        fig.colorbar(cells, ax=ax, label="species pairs per cell")
    else:
        ax.scatter(a, b, s=6, alpha=0.5, edgecolors="none")
    rho = spearman(a, b) if len(a) > 2 else float("nan")
    ax.set_xlabel("true patristic distance")
    ax.set_ylabel("latent distance")
    ax.set_title(f"{title} (Spearman {rho:.2f})")
    fig.tight_layout()
    return save_figure(fig, path)


def plot_ae_losses(
    losses: Mapping[str, Any], path: str | Path, *, title: str = "final loss of each species' AE"
) -> Path:
    """Final train (and validation) reconstruction loss of every member, by species.

    Species are named on the x axis up to 80 of them, numbered from 0 beyond.
    ``losses``: ``species`` [M], ``replicate`` [M], ``train`` [M], ``val`` [M].
    """
    species = list(losses["species"])
    uniq = list(dict.fromkeys(species))
    xpos = {s: i for i, s in enumerate(uniq)}
    fig = Figure(figsize=(max(6.0, min(0.18 * len(uniq) + 2, 30.0)), 4))
    ax = fig.add_subplot()
    for key, marker in (("train", "o"), ("val", "x")):
        v = np.asarray(losses.get(key, []), dtype=np.float64)
        if len(v) and np.isfinite(v).any():
            ax.scatter([xpos[s] for s in species], v, marker=marker, s=14, label=key)
    ax.set_yscale("log")
    if len(uniq) <= 80:
        ax.set_xticks(range(len(uniq)))
        ax.set_xticklabels(uniq, rotation=90, fontsize=6)
    else:
        # a tick per species (thousands of unlabelled ticks) takes seconds to draw and
        # says nothing: number the species instead
        ax.set_xlabel("species (position in the species list)")
    ax.set_ylabel("reconstruction MSE")
    ax.set_title(title)
    ax.legend(fontsize=8, frameon=False)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_mae_training(
    losses: Mapping[str, Any], path: str | Path, *, title: str = "MAE training"
) -> Path:
    """The MAE's training loss against step (train; held-out if any).

    ``losses``: ``step``/``train`` and optionally ``val_step``/``val`` (the early-stopping
    run on held-out replicates).
    """
    fig = Figure(figsize=(6, 4))
    ax = fig.add_subplot()
    train = np.asarray(losses.get("train", []), dtype=np.float64)
    if len(train):
        steps = np.asarray(losses.get("step", np.arange(len(train))))
        ax.plot(steps, train, label="train (final fit)")
    val = np.asarray(losses.get("val", []), dtype=np.float64)
    if len(val):
        ax.plot(
            np.asarray(losses.get("val_step", np.arange(len(val)))),
            val,
            label="held-out replicates",
        )
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("behaviour loss (units of each AE's own error)")
    ax.set_title(title)
    ax.legend(fontsize=8, frameon=False)
    fig.tight_layout()
    return save_figure(fig, path)


# ---------------------------------------------------------------------------- population engine
# (appended by the population engine: mean +- sd of each lineage's population through time)


def plot_population(
    log: Sequence[Mapping[str, Any]] | str | Path,
    tree,  # noqa: ANN001 - Phylogeny
    path: str | Path,
    *,
    max_traits: int = 2,
    extinct: Sequence[str] = (),
) -> Path:
    """Population mean +- sd of each trait through time, along every branch of the tree.

    One panel per trait (at most ``max_traits``) plus one for mean fitness: each branch is a
    line (its population's mean, generation by generation) inside a band of +- one
    within-population sd. Lineages whose leaves are all extinct are grey.

    Parameters
    ----------
    log
        :func:`evosim.evolve.population.evolve_population`'s ``res.log`` rows, or the path
        of a ``population_log.csv`` holding them (``node``, ``generation``, ``time``,
        ``trait_mean_1..``, ``trait_sd_1..``, ``fitness_mean``, ``fitness_sd``).
    tree
        The Phylogeny the populations evolved on.
    path
        Output PNG.
    max_traits
        At most this many traits are drawn.
    extinct
        Extinct leaves (drawn grey with every branch that leads only to them).
    """
    import csv

    if isinstance(log, str | Path):
        with open(log, newline="", encoding="utf-8") as handle:
            log = list(csv.DictReader(handle))
    if not log:
        raise ValueError("plot_population: the population log is empty")
    by_node: dict[str, list[Mapping[str, Any]]] = {}
    for row in log:
        by_node.setdefault(str(row["node"]), []).append(row)
    k = sum(1 for c in log[0] if str(c).startswith("trait_mean_"))
    shown = min(k, max_traits)
    dead = set(extinct)
    all_dead: dict[str, bool] = {}
    for node in reversed(tree.preorder()):
        kids = tree.children(node)
        all_dead[node] = all(all_dead[c] for c in kids) if kids else node in dead
    fig = Figure(figsize=(7, 2.6 * (shown + 1)))
    panels = [(f"trait_mean_{j + 1}", f"trait_sd_{j + 1}", f"trait {j + 1}") for j in range(shown)]
    panels.append(("fitness_mean", "fitness_sd", "fitness"))
    for i, (mean_col, sd_col, label) in enumerate(panels):
        ax = fig.add_subplot(len(panels), 1, i + 1)
        live, gone = [], []
        for node, rows in by_node.items():
            t = np.array([float(r["time"]) for r in rows])
            m = np.array([float(r[mean_col]) for r in rows])
            sd = np.array([float(r[sd_col]) for r in rows])
            grey = all_dead.get(node, False)
            (gone if grey else live).append(np.column_stack([t, m]))
            if len(t) > 1:
                ax.fill_between(t, m - sd, m + sd, color="0.85" if grey else "C0", alpha=0.15, lw=0)
        if gone:
            ax.add_collection(LineCollection(gone, colors="0.6", linewidths=0.6))
        ax.add_collection(LineCollection(live, colors="C0", linewidths=0.8))
        ax.autoscale()
        ax.set_ylabel(f"{label}\n(mean +- sd)")
        if i == len(panels) - 1:
            ax.set_xlabel("time since root")
    fig.suptitle("populations through time (population engine)")
    fig.tight_layout()
    return save_figure(fig, path)


# ---------------------------------------------------------------------------- archetypes
# (appended by the archetypes work: species' archetype weights, archetypes vs true optima)

__all__ += [
    "plot_archetype_figures",
    "plot_archetype_instances",
    "plot_archetype_weights",
    "plot_archetypes",
]


def _ternary(weights: np.ndarray) -> np.ndarray:
    """Barycentric ``[n, 3]`` -> 2-D points in an equilateral triangle (corners 1, 2, 3)."""
    corners = np.array([[0.0, 0.0], [1.0, 0.0], [0.5, np.sqrt(3) / 2]])
    return weights @ corners


def plot_archetype_weights(
    weights: np.ndarray,
    path: str | Path,
    *,
    colour: np.ndarray | None = None,
    title: str = "archetype weights per species",
) -> Path:
    """Each species' weights on the archetypes: a ternary plot for 3, a heat map otherwise.

    Parameters
    ----------
    weights
        ``[S, k]`` simplex weights (rows sum to 1).
    path
        Output PNG.
    colour
        ``[S]`` values to colour the species by (ternary plot only), e.g. a true weight.
    title
        Figure title.
    """
    w = np.asarray(weights, dtype=np.float64)
    s, k = w.shape
    if k == 3:
        fig = Figure(figsize=(5.2, 4.8))
        ax = fig.add_subplot(1, 1, 1)
        corners = _ternary(np.eye(3))
        ax.plot(*np.vstack([corners, corners[:1]]).T, color="0.3", lw=1)
        for j, (cx, cy) in enumerate(corners):
            ax.annotate(
                f"archetype {j + 1}",
                (cx, cy),
                xytext=(0, 8 if j == 2 else -14),
                textcoords="offset points",
                ha="center",
                fontsize=9,
            )
        xy = _ternary(w)
        sc = ax.scatter(xy[:, 0], xy[:, 1], s=18, c=colour if colour is not None else "C0")
        if colour is not None:
            fig.colorbar(sc, ax=ax, shrink=0.7)
        ax.set_aspect("equal")
        ax.set_xlim(-0.1, 1.1)
        ax.set_ylim(-0.12, 0.98)
        ax.axis("off")
    else:
        order = np.lexsort((-w.max(axis=1), w.argmax(axis=1)))
        fig = Figure(figsize=(1.2 + 0.5 * k, min(2.0 + 0.08 * s, 12.0)))
        ax = fig.add_subplot(1, 1, 1)
        im = ax.imshow(w[order], aspect="auto", cmap="viridis", vmin=0.0, vmax=1.0)
        ax.set_xticks(range(k), [str(j + 1) for j in range(k)])
        ax.set_xlabel("archetype")
        ax.set_ylabel(f"species ({s}, grouped by main archetype)")
        ax.set_yticks([])
        fig.colorbar(im, ax=ax, shrink=0.7, label="weight")
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_archetypes(
    traits: np.ndarray,
    optima: np.ndarray,
    positions: Mapping[str, np.ndarray],
    path: str | Path,
    *,
    title: str = "archetypes vs the true task optima",
) -> Path:
    """Species, true task optima and each method's archetypes, on the traits' two main axes.

    Parameters
    ----------
    traits
        ``[S, d]`` species' mean traits (grey points).
    optima
        ``[m, d]`` true task optima (black stars, joined as the polytope's edges).
    positions
        Method name -> ``[k, d]`` its archetypes placed in trait space.
    path
        Output PNG.
    title
        Figure title.
    """
    x = np.asarray(traits, dtype=np.float64)
    o = np.asarray(optima, dtype=np.float64)
    centre = x.mean(axis=0)
    basis = np.linalg.svd(x - centre, full_matrices=False)[2][:2].T  # [d, <=2]
    if basis.shape[1] < 2:
        basis = np.column_stack([basis, np.zeros(len(basis))])

    def proj(p: np.ndarray) -> np.ndarray:
        return (np.asarray(p, dtype=np.float64) - centre) @ basis

    fig = Figure(figsize=(6.0, 5.2))
    ax = fig.add_subplot(1, 1, 1)
    px = proj(x)
    ax.scatter(px[:, 0], px[:, 1], s=12, color="0.6", label="species")
    po = proj(o)
    for i in range(len(po)):
        for j in range(i + 1, len(po)):
            ax.plot(*po[[i, j]].T, color="0.2", lw=0.6, alpha=0.6)
    ax.scatter(po[:, 0], po[:, 1], s=160, marker="*", color="k", label="true optima", zorder=3)
    markers = "oDs^vP<>"
    for i, (name, p) in enumerate(positions.items()):
        pp = proj(p)
        ax.scatter(
            pp[:, 0],
            pp[:, 1],
            s=60,
            marker=markers[i % len(markers)],
            facecolors="none",
            edgecolors=f"C{i}",
            linewidths=1.6,
            label=name,
            zorder=4,
        )
    ax.set_xlabel("trait axis 1 (PCA of species traits)")
    ax.set_ylabel("trait axis 2")
    ax.set_aspect("equal", adjustable="datalim")
    ax.legend(fontsize=8, frameon=False, loc="best")
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_archetype_instances(
    instances: Mapping[str, Any],
    path: str | Path,
    *,
    title: str = "decoded archetypes beside the species nearest them",
) -> Path:
    """Instances generated by each decoded archetype beside its nearest species' own.

    One panel per archetype, in the plane of the two main axes of the species' pooled
    instances (the instances themselves when they are 2-D): every species' instances in
    grey, the nearest species' in colour, the archetype's generated instances as crosses.

    Parameters
    ----------
    instances
        ``generated`` ``[k, n, D]``, ``nearest`` ``[k, n', D]``, ``nearest_species``
        ``[k]`` names, ``background`` ``[N, D]`` (see
        :func:`evosim.analysis.archetypes.archetype_analysis`).
    path
        Output PNG.
    title
        Figure title.
    """
    gen = np.asarray(instances["generated"], dtype=np.float64)
    near = np.asarray(instances["nearest"], dtype=np.float64)
    back = np.asarray(instances["background"], dtype=np.float64)
    names = list(instances.get("nearest_species", [""] * len(gen)))
    k = len(gen)
    centre = back.mean(axis=0)
    if back.shape[1] <= 2:
        basis = np.eye(back.shape[1])
        labels = ("x1", "x2")
    else:
        basis = np.linalg.svd(back - centre, full_matrices=False)[2][:2].T
        labels = ("instance axis 1 (PCA)", "instance axis 2")

    def proj(x: np.ndarray) -> np.ndarray:
        out = (x - centre) @ basis
        return out if out.shape[1] == 2 else np.column_stack([out, np.zeros(len(out))])

    cols = min(k, 4)
    rows = int(np.ceil(k / cols))
    fig = Figure(figsize=(3.4 * cols, 3.3 * rows))
    pb = proj(back)
    for j in range(k):
        ax = fig.add_subplot(rows, cols, j + 1)
        ax.scatter(pb[:, 0], pb[:, 1], s=3, color="0.82", edgecolors="none", label="all species")
        pn, pg = proj(near[j]), proj(gen[j])
        ax.scatter(pn[:, 0], pn[:, 1], s=8, color="C0", edgecolors="none", label=str(names[j]))
        ax.scatter(pg[:, 0], pg[:, 1], s=12, marker="x", color="C3", lw=0.8, label="decoded")
        ax.set_title(f"archetype {j + 1}", fontsize=9)
        ax.set_xlabel(labels[0], fontsize=7)
        ax.set_ylabel(labels[1], fontsize=7)
        ax.tick_params(labelsize=6)
        ax.legend(fontsize=6, frameon=False, loc="best", markerscale=1.5)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_archetype_figures(data: Mapping[str, Any], fig_dir: str | Path) -> list[Path]:
    """Every archetype figure from the analysis's figure data (``archetypes.json``).

    ``archetype_weights.png`` (a simplex for 3 archetypes, a heat map otherwise), with
    task optima ``archetypes.png`` (every method's archetypes against the optima, in trait
    space), and with decoded archetypes ``archetype_instances.png``. ``data``: see
    :func:`evosim.analysis.archetypes.archetype_analysis`.
    """
    fig_dir = Path(fig_dir)
    title = (
        "MAE archetype weights per species"
        if data.get("source") == "mae"
        else "linear AA on the true traits (oracle): weights per species"
    )
    paths = [
        plot_archetype_weights(
            np.asarray(data["weights"], dtype=np.float64),
            fig_dir / "archetype_weights.png",
            title=title,
        )
    ]
    if data.get("optima") is not None and data.get("traits") is not None:
        positions = {k: np.asarray(v) for k, v in (data.get("positions") or {}).items()}
        paths.append(
            plot_archetypes(
                np.asarray(data["traits"]),
                np.asarray(data["optima"]),
                positions,
                fig_dir / "archetypes.png",
            )
        )
    if data.get("instances"):
        paths.append(
            plot_archetype_instances(data["instances"], fig_dir / "archetype_instances.png")
        )
    return paths


# ---------------------------------------------------------------------------- identification
# (appended by the identification analysis: confusion in tree order, calibration and
# novelty scores, concrete AEs' selected features)


def _heat_with_tree(
    matrix: np.ndarray,
    order: Sequence[str],
    tree: Any,
    *,
    width: float,
    square: bool,
) -> tuple[Figure, Any, np.ndarray, list[str]]:
    """A figure: the tree (if given) left of a heat-map axis, rows in its layout order."""
    order = list(order)
    rows = np.arange(len(order))
    if tree is not None:
        x, y, leaves = _ordered_layout(tree)
        where = {s: i for i, s in enumerate(order)}
        laid = [s for s in leaves if s in where]
        if len(laid) == len(order):
            rows = np.asarray([where[s] for s in laid])
            order = laid
    m = np.asarray(matrix, dtype=np.float64)[rows]
    if square:
        m = m[:, rows]
    n = len(order)
    fig = Figure(figsize=(width, max(3.0, min(0.18 * n + 1.5, 30.0))))
    if tree is not None and len(order) == n and n > 1:
        gs = fig.add_gridspec(1, 2, width_ratios=[1, 4], wspace=0.02)
        tax = fig.add_subplot(gs[0])
        x, y, _ = _ordered_layout(tree)
        y = {k: n - 1 - v for k, v in y.items()}  # first leaf at the top, like the rows
        tax.add_collection(LineCollection(_tree_segments(tree, x, y), colors="0.2", linewidths=0.8))
        tax.set_xlim(-0.02 * max(x.values()), max(x.values()) * 1.02 + 1e-12)
        tax.set_ylim(-0.5, n - 0.5)
        tax.set_axis_off()
        ax = fig.add_subplot(gs[1])
    else:
        ax = fig.add_subplot()
    return fig, ax, m, order


def plot_confusion(
    confusion: np.ndarray,
    order: Sequence[str],
    path: str | Path,
    *,
    tree: Any = None,
    title: str = "identification: confusion rates (rows: true species)",
) -> Path:
    """The ``[S, S]`` confusion rates, species in tree order, the tree (if given) alongside.

    ``confusion[i, j]``: fraction of species ``order[i]``'s specimens identified as
    ``order[j]``. Off-diagonal mass near the diagonal means confusions between relatives.
    """
    fig, ax, m, order = _heat_with_tree(confusion, order, tree, width=9.5, square=True)
    n = len(order)
    im = ax.imshow(
        m, cmap="viridis", vmin=0.0, vmax=1.0, aspect="auto", extent=(-0.5, n - 0.5, -0.5, n - 0.5)
    )
    ax.set_ylim(-0.5, n - 0.5)
    labels = order if n <= 60 else [""] * n
    ax.set_yticks(np.arange(n)[::-1])
    ax.set_yticklabels(labels, fontsize=5)
    ax.set_xticks(np.arange(n))
    ax.set_xticklabels(labels, rotation=90, fontsize=5)
    ax.set_xlabel("identified as")
    fig.colorbar(im, ax=ax, fraction=0.04, label="rate")
    ax.set_title(title, fontsize=9)
    return save_figure(fig, path)


def plot_selected_features(
    selected: np.ndarray,
    order: Sequence[str],
    path: str | Path,
    *,
    tree: Any = None,
    title: str = "concrete AEs: selected input features (diagnostic characters)",
) -> Path:
    """``[S, D]`` 0/1 matrix of the features each species' concrete AE selects, tree order."""
    fig, ax, m, order = _heat_with_tree(selected, order, tree, width=9.0, square=False)
    n, d = m.shape
    ax.imshow(
        m, cmap="Greys", vmin=0.0, vmax=1.0, aspect="auto", extent=(-0.5, d - 0.5, -0.5, n - 0.5)
    )
    ax.set_ylim(-0.5, n - 0.5)
    ax.set_yticks(np.arange(n)[::-1])
    ax.set_yticklabels(order if n <= 60 else [""] * n, fontsize=5)
    ax.set_xlabel("input feature")
    ax.set_title(title, fontsize=9)
    return save_figure(fig, path)


def plot_identification_scores(
    score: np.ndarray,
    correct: np.ndarray,
    known_novelty: np.ndarray,
    novel_novelty: np.ndarray,
    path: str | Path,
    *,
    bins: int = 10,
) -> Path:
    """Reliability of the calibrated score (left); novelty scores, known vs unseen (right)."""
    score = np.asarray(score, dtype=np.float64)
    correct = np.asarray(correct, dtype=np.float64)
    fig = Figure(figsize=(10, 4))
    ax = fig.add_subplot(1, 2, 1)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.minimum((score * bins).astype(np.int64), bins - 1)
    centres, acc, counts = [], [], []
    for b in range(bins):
        sel = which == b
        if sel.any():
            centres.append(score[sel].mean())
            acc.append(correct[sel].mean())
            counts.append(int(sel.sum()))
    ax.plot([0, 1], [0, 1], color="0.6", lw=0.8, ls="--")
    ax.plot(centres, acc, marker="o")
    for c, a, k in zip(centres, acc, counts):
        ax.annotate(str(k), (c, a), xytext=(3, -9), textcoords="offset points", fontsize=6)
    ax.set_xticks(edges[::2])
    ax.set_xlabel("calibrated score of the identified species")
    ax.set_ylabel("fraction correct")
    ax.set_title("reliability (numbers: specimens per bin)", fontsize=9)
    ax = fig.add_subplot(1, 2, 2)
    known = np.asarray(known_novelty, dtype=np.float64)
    novel = np.asarray(novel_novelty, dtype=np.float64)
    both = np.concatenate([known, novel])
    both = both[np.isfinite(both)]
    if len(both):
        lo, hi = np.percentile(both, [0.5, 99.5])
        hb = np.linspace(lo, hi if hi > lo else lo + 1.0, 40)
        if len(known):
            ax.hist(np.clip(known, lo, hi), bins=hb, alpha=0.6, density=True, label="known species")
        if len(novel):
            ax.hist(
                np.clip(novel, lo, hi), bins=hb, alpha=0.6, density=True, label="unseen species"
            )
        ax.legend(fontsize=8, frameon=False)
    ax.set_xlabel("novelty score (robust z of log error)")
    ax.set_title("novelty: bank without the held-out species", fontsize=9)
    fig.tight_layout()
    return save_figure(fig, path)


# ------------------------------------------------------------------ MAE decoder (generative)


def _values(xs: Any) -> np.ndarray:
    return np.asarray([np.nan if v is None else v for v in (xs or [])], dtype=np.float64)


def plot_generative(data: Mapping[str, Any], path: str | Path) -> Path:
    """Decoded-AE fidelity per species and ancestors by interpolation, side by side.

    ``data`` is the figure data of :func:`evosim.analysis.generative.generative_scores`:
    ``fidelity`` (per-species ratios ``train``, ``heldout``, ``nearest``, ``pca``) and
    ``ancestors`` (``rows`` with ``mse_midpoint``, ``mse_a``, ``mse_b``, ``mse_average``).
    """
    fig = Figure(figsize=(10, 4.2))
    ax1, ax2 = fig.subplots(1, 2)
    fid = data.get("fidelity", {})
    groups = [
        ("decoded\n(fitted)", fid.get("train")),
        ("decoded\n(held out)", fid.get("heldout")),
        ("decoded, encoder's\nguess (held out)", fid.get("heldout_encoder")),
        ("decoded, codes\nfitted (held out)", fid.get("heldout_fitted")),  # older runs
        ("nearest\ntraining AE", fid.get("nearest")),
        ("PCA of aligned\nweights", fid.get("pca")),
    ]
    groups = [(label, _values(v)) for label, v in groups if v is not None]
    rng = np.random.default_rng(0)
    for i, (_, v) in enumerate(groups):
        v = v[np.isfinite(v)]
        ax1.scatter(i + rng.uniform(-0.15, 0.15, len(v)), v, s=12, alpha=0.7)
        if len(v):
            ax1.hlines(np.median(v), i - 0.3, i + 0.3, colors="k", linewidths=1.5)
    ax1.axhline(1.0, color="0.5", linestyle=":", linewidth=1)
    ax1.set_xticks(range(len(groups)))
    ax1.set_xticklabels([g[0] for g in groups], fontsize=8)
    ax1.set_yscale("log")
    ax1.set_ylabel("MSE on species' held-out instances / own AE's")
    ax1.set_title("decoded-AE fidelity (bar: median)", fontsize=10)
    rows = data.get("ancestors", {}).get("rows", [])
    if rows:
        best = np.asarray([min(r["mse_a"], r["mse_b"]) for r in rows])
        mid = np.asarray([r["mse_midpoint"] for r in rows])
        ax2.scatter(best, mid, s=16, label="decoded midpoint", zorder=3)
        avg = [(min(r["mse_a"], r["mse_b"]), r["mse_average"]) for r in rows if "mse_average" in r]
        if avg:
            a = np.asarray(avg)
            ax2.scatter(a[:, 0], a[:, 1], s=16, marker="x", label="average of aligned weights")
        lo = float(np.nanmin([best.min(), mid.min()]))
        hi = float(np.nanmax([best.max(), mid.max()]))
        ax2.plot([lo, hi], [lo, hi], color="0.5", linestyle=":", linewidth=1)
        ax2.set_xscale("log")
        ax2.set_yscale("log")
        ax2.set_xlabel("better sister's own AE: MSE on parent")
        ax2.set_ylabel("MSE on parent")
        ax2.set_title("ancestors by interpolation (below the line: better)", fontsize=10)
        ax2.legend(fontsize=8)
    else:
        ax2.set_axis_off()
    fig.tight_layout()
    return save_figure(fig, path)


def plot_latent_line(line: Mapping[str, Any], path: str | Path) -> Path:
    """Instances generated by AEs decoded along a line through the latent space (2-D data)."""
    gen = np.asarray(line["generated"], dtype=np.float64)
    t = np.asarray(line["position"], dtype=np.float64)
    fig = Figure(figsize=(5.5, 5))
    ax = fig.subplots()
    colours = matplotlib_colormap("viridis", len(t))
    for i in range(len(t)):
        ax.scatter(gen[i, :, 0], gen[i, :, 1], s=4, color=colours[i], label=f"{t[i]:+.2f}")
    ax.set_aspect("equal")
    ax.legend(
        title="position", fontsize=7, markerscale=3, loc="center left", bbox_to_anchor=(1, 0.5)
    )
    rho = line.get("radius_spearman")
    extra = f" (radius vs position: Spearman {rho:.2f})" if rho is not None else ""
    ax.set_title("decoded AEs along the latents' first axis" + extra, fontsize=9)
    fig.tight_layout()
    return save_figure(fig, path)


def matplotlib_colormap(name: str, n: int) -> list[Any]:
    """``n`` colours evenly spaced along matplotlib colormap ``name``."""
    from matplotlib import colormaps

    cmap = colormaps[name]
    return [cmap(x) for x in np.linspace(0.0, 1.0, max(n, 1))]


def plot_generative_figures(data: Mapping[str, Any], fig_dir: str | Path) -> list[Path]:
    """Every figure of the generative scores: ``generative.png`` (and ``latent_line.png``)."""
    fig_dir = Path(fig_dir)
    paths = [plot_generative(data, fig_dir / "generative.png")]
    if data.get("latent_line"):
        paths.append(plot_latent_line(data["latent_line"], fig_dir / "latent_line.png"))
    return paths
