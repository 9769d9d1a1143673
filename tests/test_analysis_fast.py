"""The analysis' fast paths give what the direct computations give (no timing here).

Each fast computation is checked against a plain reference kept in this file (the
implementation it replaced) or against scipy, on seeded random cases, including the
cases that are hard for it (points close compared with their size, ties, rank
deficiency).
"""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.collections import PolyCollection
from scipy.spatial.distance import pdist, squareform
from scipy.stats import rankdata

from evosim import plot
from evosim.analysis.baselines import PCA_DENSE_MAX, _pca_scores
from evosim.analysis.metrics import EUCLIDEAN_DIRECT_MAX, EUCLIDEAN_RTOL, euclidean
from evosim.phylo import Phylogeny, yule
from evosim.stats import ranks, spearman


# ---------------------------------------------------------------------------- PCA
def _pca_svd(x: np.ndarray, k: int) -> np.ndarray:
    """The previous implementation: thin SVD of the centred data."""
    xc = x - x.mean(axis=0)
    u, s, _ = np.linalg.svd(xc, full_matrices=False)
    k = min(k, len(s))
    return u[:, :k] * s[:k]


def _spread(m: int, f: int, g: np.random.Generator) -> np.ndarray:
    """Data with well-separated singular values (so each component is well defined)."""
    q1, _ = np.linalg.qr(g.standard_normal((m, min(m, f))))
    q2, _ = np.linalg.qr(g.standard_normal((f, min(m, f))))
    s = 10.0 * 0.9 ** np.arange(min(m, f))
    return 3.0 + (q1 * s) @ q2.T


@pytest.mark.parametrize(
    ("m", "f", "k"),
    [
        (40, 300, 5),  # Gram matrix, dense
        (300, 40, 5),  # scatter matrix, dense
        (PCA_DENSE_MAX + 88, PCA_DENSE_MAX + 300, 16),  # Gram matrix, Lanczos
        (PCA_DENSE_MAX + 300, PCA_DENSE_MAX + 88, 16),  # scatter matrix, Lanczos
        (12, 30, 40),  # more components asked than there are
    ],
)
def test_pca_scores_equal_the_svd_scores_up_to_sign(m, f, k):
    g = np.random.default_rng(m * 1000 + f)
    x = _spread(m, f, g)
    new, old = _pca_scores(x, k), _pca_svd(x, k)
    assert new.shape == old.shape
    signs = np.sign(np.sum(new * old, axis=0))
    np.testing.assert_allclose(new * signs, old, rtol=0, atol=1e-9 * np.abs(old).max())
    # distances, what the baseline uses, do not see the signs at all
    np.testing.assert_allclose(pdist(new), pdist(old), rtol=1e-8)


def test_pca_scores_of_rank_deficient_data_give_the_same_distances():
    g = np.random.default_rng(3)
    x = g.standard_normal((600, 4)) @ g.standard_normal((4, 700))  # rank 4, 16 asked
    new, old = _pca_scores(x, 16), _pca_svd(x, 16)
    scale = pdist(old).max()
    np.testing.assert_allclose(pdist(new), pdist(old), rtol=0, atol=1e-9 * scale)


# ---------------------------------------------------------------------------- distances
def _check_distances(x: np.ndarray) -> np.ndarray:
    d = euclidean(x)
    ref = squareform(pdist(x))
    assert np.array_equal(d, d.T) and not np.diagonal(d).any()
    off = ref > 0
    # EUCLIDEAN_RTOL plus pdist's own rounding (about k u)
    assert np.all(np.abs(d - ref)[off] <= (EUCLIDEAN_RTOL + 1e-12) * ref[off])
    assert np.all(d[~off] <= 1e-300)
    return d


@pytest.mark.parametrize("k", [EUCLIDEAN_DIRECT_MAX + 1, 500])
def test_euclidean_distances_equal_pdist(k):
    g = np.random.default_rng(k)
    _check_distances(g.standard_normal((150, k)) * g.uniform(0.1, 10, k))


def test_euclidean_distances_of_close_points_far_from_the_origin_equal_pdist():
    # the Gram form alone would lose every digit here: the points are 1e-7 apart and
    # 1e3 from their centroid, so the pairs are recomputed directly
    g = np.random.default_rng(1)
    centres = 1e3 * g.standard_normal((20, 200))
    x = np.repeat(centres, 5, axis=0) + 1e-7 * g.standard_normal((100, 200))
    x[7] = x[6]  # an exact duplicate: distance 0
    d = _check_distances(x)
    assert d[6, 7] == 0.0


def test_euclidean_distances_keep_pdist_for_few_coordinates_and_non_finite_points():
    g = np.random.default_rng(2)
    x = g.standard_normal((30, EUCLIDEAN_DIRECT_MAX))
    assert np.array_equal(euclidean(x), squareform(pdist(x)))
    x = g.standard_normal((30, 100))
    x[3, 5] = np.nan
    assert np.array_equal(euclidean(x), squareform(pdist(x)), equal_nan=True)


# ---------------------------------------------------------------------------- ranks
@pytest.mark.parametrize("seed", range(4))
def test_ranks_equal_scipy_average_ranks(seed):
    g = np.random.default_rng(seed)
    for x in (
        g.standard_normal(1000),
        g.integers(0, 7, 500).astype(float),  # many ties
        np.round(g.random(3000), 2),
        np.full(10, 2.5),
        np.array([1.0]),
        np.array([-0.0, 0.0, 1.0]),  # -0 == 0: one tie
    ):
        assert np.array_equal(ranks(x), rankdata(x))


def test_ranks_of_nothing_and_of_nan():
    assert ranks(np.array([])).shape == (0,)
    assert np.isnan(ranks(np.array([1.0, np.nan, 2.0]))).all()


def test_spearman_equals_scipy():
    from scipy.stats import spearmanr

    g = np.random.default_rng(5)
    x = g.integers(0, 20, 400).astype(float)
    y = x + g.integers(0, 10, 400)
    assert spearman(x, y) == pytest.approx(spearmanr(x, y).statistic, rel=1e-12)


# ---------------------------------------------------------------------------- figures
def _capture(monkeypatch) -> list:
    figs: list = []
    save = plot.save_figure

    def keep(fig, path):
        figs.append(fig)
        return save(fig, path)

    monkeypatch.setattr(plot, "save_figure", keep)
    return figs


def test_distance_scatter_of_many_pairs_is_a_density_of_every_pair(tmp_path, monkeypatch):
    tree = yule(1.0, 250, rng=np.random.default_rng(0))
    species = sorted(tree.leaves)
    g = np.random.default_rng(7)
    z = g.standard_normal((len(species), 4))
    pairs = len(species) * (len(species) - 1) // 2
    assert pairs > plot.SCATTER_MAX_PAIRS
    figs = _capture(monkeypatch)
    png = plot.plot_distance_scatter(z, species, tree, tmp_path / "a.png")
    assert png.exists() and png.with_suffix(".svg").exists()
    (cells,) = [c for c in figs[0].axes[0].collections if isinstance(c, PolyCollection)]
    assert cells.get_array().sum() == pairs  # every pair counted, none sampled
    # the same figure on a second run, byte for byte
    plot.plot_distance_scatter(z, species, tree, tmp_path / "b.png")
    assert (tmp_path / "a.svg").read_text() == (tmp_path / "b.svg").read_text()
    assert "hexbin" in plot.plot_distance_scatter.__doc__


def test_distance_scatter_of_few_pairs_draws_every_pair(tmp_path, monkeypatch):
    tree = Phylogeny.from_newick("(((A:1,B:1):1,C:2):1,(D:1,E:1):2);")
    species = ["E", "A", "C", "B", "D"]
    z = np.arange(10, dtype=float).reshape(5, 2) ** 1.5
    figs = _capture(monkeypatch)
    plot.plot_distance_scatter(z, species, tree, tmp_path / "s.png")
    (points,) = figs[0].axes[0].collections
    xy = np.asarray(points.get_offsets())
    _, d = tree.patristic_distances(species)
    iu = np.triu_indices(5, k=1)
    np.testing.assert_allclose(xy[:, 0], d[iu])
    np.testing.assert_allclose(xy[:, 1], squareform(pdist(z))[iu])


def test_ae_losses_of_many_species_are_drawn_without_a_tick_each(tmp_path, monkeypatch):
    n = 300
    losses = {
        "species": [f"s{i}" for i in range(n)],
        "replicate": [0] * n,
        "train": np.linspace(0.1, 1.0, n),
        "val": np.linspace(0.2, 1.1, n),
    }
    figs = _capture(monkeypatch)
    png = plot.plot_ae_losses(losses, tmp_path / "l.png")
    assert png.exists() and png.with_suffix(".svg").exists()
    ax = figs[0].axes[0]
    assert len(ax.get_xticks()) < 20
    assert [len(c.get_offsets()) for c in ax.collections] == [n, n]


# ---------------------------------------------------------------------------- energy
def _energy_reference(x: np.ndarray, rng: np.random.Generator, n: int) -> np.ndarray:
    """The previous implementation: every ordered pair of species' blocks."""
    import torch

    s, n_all, dim = x.shape
    idx = np.stack([rng.choice(n_all, size=n, replace=False) for _ in range(s)])
    flat = torch.as_tensor(x[np.arange(s)[:, None], idx]).reshape(s * n, dim)
    cross = torch.cdist(flat, flat).reshape(s, n, s, n).mean(dim=(1, 3)).double()
    within = torch.diagonal(cross)
    e = 2.0 * cross - within[:, None] - within[None, :]
    e = 0.5 * (e + e.T)
    out = e.clamp_min(0.0).sqrt().numpy()
    np.fill_diagonal(out, 0.0)
    return out


@pytest.mark.parametrize("block", [2**25, 24 * 24 * 70 * 8])  # one block, 9 blocks
def test_energy_distances_equal_those_of_every_ordered_pair(block, monkeypatch):
    from evosim.analysis import baselines
    from evosim.analysis.baselines import energy_distances

    monkeypatch.setattr(baselines, "ENERGY_BLOCK", block)
    g = np.random.default_rng(9)
    shift = g.standard_normal((70, 1, 5))
    x = (shift + g.standard_normal((70, 40, 5))).astype(np.float32)
    new = energy_distances(x, np.random.default_rng(4), n_max=24)
    old = _energy_reference(x, np.random.default_rng(4), 24)
    assert np.array_equal(new, new.T) and not np.diagonal(new).any()
    # float32 distances: the two sums differ by rounding, about 1e-7 of E|X - Y| (~3),
    # which the energy distance's square carries as an absolute error
    np.testing.assert_allclose(new**2, old**2, rtol=0, atol=1e-5)


@pytest.mark.parametrize(("m", "f"), [(40, 700), (700, 40), (600, 560)])
def test_principal_axes_project_as_the_svd_axes(m: int, f: int) -> None:
    from evosim.analysis.baselines import principal_axes

    g = np.random.default_rng(m + f)
    x = g.standard_normal((m, f)) * np.linspace(3.0, 0.1, f) + 2.0
    k = 8
    mean, axes = principal_axes(x, k)
    vt = np.linalg.svd(x - x.mean(axis=0), full_matrices=False)[2][:k]
    np.testing.assert_allclose(mean, x.mean(axis=0), rtol=0, atol=1e-12)
    np.testing.assert_allclose(axes @ axes.T, np.eye(k), atol=1e-9)
    y = g.standard_normal((5, f))
    np.testing.assert_allclose((y - mean) @ axes.T @ axes, (y - mean) @ vt.T @ vt, atol=1e-8)
