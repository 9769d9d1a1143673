"""From a distance matrix over species to an inferred tree and its scores against the truth.

Every method (the MAE and each baseline) goes through :func:`score_distances`: the
same tree method, the same metrics.

Conventions (documented in report.md too):

- ``rf``/``nrf``/``quartet``/``triplet``/``cophenetic_*`` are those of
  :func:`evosim.phylo.compare_trees` on the inferred and the true tree, so that
  ``evosim compare true_tree.nwk inferred_tree.nwk`` prints the same numbers.
  ``rf``/``nrf``/``quartet`` compare unrooted topologies, whatever the method (NJ trees
  are unrooted; UPGMA trees are compared the same way so the two methods' numbers mean
  the same thing). Above 256 species the quartet and triplet distances are estimated from
  20,000 sampled quartets (triplets), with their standard errors in ``quartet_se``
  (``triplet_se``), absent when exact.
- ``triplet`` needs a rooted inferred tree: reported for ``upgma``, ``None`` for ``nj``.
  Rooting an NJ tree (midpoint or otherwise) would score a rooting rule we did not
  choose to test, so we do not.
- ``cophenetic_pearson``/``cophenetic_spearman`` correlate the inferred tree's patristic
  (cophenetic) distances with the true tree's over all species pairs.
- ``distance_pearson``/``distance_spearman`` correlate the method's own distances (e.g.
  latent distances), before any tree is built, with the true patristic distances;
  ``mantel_p`` is the one-sided Mantel permutation p-value of ``distance_pearson``
  (Mantel 1967), with sequential stopping (Besag & Clifford 1991; see :func:`mantel`).
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.spatial.distance import pdist, squareform

from evosim.analysis.mantel import MANTEL_HITS, mantel, mantel_null_mean
from evosim.phylo import Phylogeny, compare_trees, neighbor_joining, upgma
from evosim.phylo.compare import COMPARE_EXACT_MAX, COMPARE_SAMPLES
from evosim.stats import pearson, ranks

__all__ = [
    "MANTEL_HITS",
    "METRICS",
    "euclidean",
    "infer_tree",
    "mantel",
    "mantel_null_mean",
    "score_distances",
    "score_tree",
    "upper_triangle",
]

#: Metric names, in table order.
METRICS = (
    "rf",
    "nrf",
    "quartet",
    "triplet",
    "cophenetic_pearson",
    "cophenetic_spearman",
    "distance_pearson",
    "distance_spearman",
    "mantel_p",
)

#: Trees with more leaves get sampled quartet and triplet distances (with standard errors).
QUARTET_EXACT_MAX = COMPARE_EXACT_MAX
QUARTET_SAMPLES = COMPARE_SAMPLES


#: Points with more coordinates than this get their distances from a matrix product
#: (below, pdist is as fast: the product form makes a dozen passes over the [n, n] result).
EUCLIDEAN_DIRECT_MAX = 256
#: Relative error allowed on a distance taken from the matrix product; pairs whose
#: rounding bound exceeds it are recomputed directly.
EUCLIDEAN_RTOL = 1e-10


def euclidean(x: np.ndarray) -> np.ndarray:
    """Pairwise Euclidean distances ``[n, n]`` of points ``[n, k]`` (float64, zero diagonal).

    Up to :data:`EUCLIDEAN_DIRECT_MAX` coordinates, ``scipy.spatial.distance.pdist``.
    Beyond, from the centred points' Gram matrix, ``|x|^2 + |y|^2 - 2 x.y`` (one BLAS
    product: about 10x faster at thousands of points of thousands of coordinates). That
    form loses digits when two points are close compared with their size, so each
    distance gets the rounding bound ``(2k + 12) u (|x|^2 + |y|^2)`` on its square (dot
    products of k terms, Higham 2002, section 3.1, plus centring; ``u = 2^-53``), and the
    pairs where it exceeds ``EUCLIDEAN_RTOL`` of the distance are recomputed directly:
    every distance is within a relative ``EUCLIDEAN_RTOL`` of the exact one, as pdist's.
    """
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"expected points [n, k], got shape {x.shape}")
    n, k = x.shape
    if k <= EUCLIDEAN_DIRECT_MAX or n < 3 or not np.all(np.isfinite(x)):
        return squareform(pdist(x))
    xc = x - x.mean(axis=0)
    sq = np.einsum("ij,ij->i", xc, xc)
    d2 = xc @ xc.T
    d2 *= -2.0
    d2 += sq[:, None]
    d2 += sq[None, :]
    bound = (2.0 * k + 12.0) * 2.0**-53 * (sq[:, None] + sq[None, :])
    # relative error of d is about half that of d^2
    redo = np.argwhere(np.triu(bound > 2.0 * EUCLIDEAN_RTOL * np.maximum(d2, 0.0), 1))
    d = np.sqrt(np.maximum(d2, 0.0))
    for start in range(0, len(redo), 4096):
        i, j = redo[start : start + 4096].T
        diff = x[i] - x[j]
        d[i, j] = np.sqrt(np.einsum("ij,ij->i", diff, diff))
    d = np.triu(d, 1)
    return d + d.T


def infer_tree(d: np.ndarray, labels: list[str], method: str) -> Phylogeny:
    """Tree from a distance matrix by ``nj`` (unrooted) or ``upgma`` (rooted)."""
    d = np.asarray(d, dtype=np.float64)
    if d.shape != (len(labels), len(labels)):
        raise ValueError(f"distance matrix shape {d.shape} does not match {len(labels)} labels")
    if not np.all(np.isfinite(d)):
        raise ValueError("distance matrix has NaN or infinite entries")
    if method == "nj":
        return neighbor_joining(d, list(labels))
    if method == "upgma":
        return upgma(d, list(labels))
    raise ValueError(f"tree method must be 'nj' or 'upgma', got {method!r}")


def upper_triangle(d: np.ndarray) -> np.ndarray:
    """The entries above the diagonal of a square matrix, row by row (float64)."""
    iu = np.triu_indices(d.shape[0], k=1)
    return np.asarray(d, dtype=np.float64)[iu]


# --------------------------------------------------------------------------- scores
def score_tree(inferred: Phylogeny, true: Phylogeny, *, rooted: bool) -> dict[str, float | None]:
    """Topology scores: ``rf``, ``nrf``, ``quartet`` (unrooted; with ``quartet_se`` when
    sampled), ``triplet`` (only when ``rooted``; with ``triplet_se`` when sampled).

    The definitions of :func:`evosim.phylo.compare_trees`.
    """
    scores = compare_trees(inferred, true, cophenetic=False)
    for key in ("cophenetic_pearson", "cophenetic_spearman"):
        scores.pop(key)
    if not rooted:
        scores["triplet"] = None
        scores.pop("triplet_se", None)
    return scores


def score_distances(
    d: np.ndarray,
    labels: list[str],
    true_tree: Phylogeny,
    *,
    method: str = "nj",
    mantel_permutations: int = 999,
    rng: np.random.Generator | None = None,
    true_distances: np.ndarray | None = None,
    device: str | torch.device = "cpu",
    mantel_result: tuple[float, float] | None = None,
    true_ranks: np.ndarray | None = None,
) -> tuple[Phylogeny, dict[str, float | None]]:
    """Infer a tree from ``d`` and score it (and ``d`` itself) against ``true_tree``.

    Parameters
    ----------
    d
        ``[S, S]`` distances among ``labels``.
    labels
        Species names, the leaves of ``true_tree``.
    true_tree
        The true extant tree (used only here, to score).
    method
        ``nj`` or ``upgma``.
    mantel_permutations
        At most this many permutations for ``mantel_p`` (0: ``NaN``).
    rng
        Drives the Mantel permutations.
    true_distances
        The true patristic distances in ``labels`` order, if already computed.
    device
        Where the Mantel test's permuted products run (default CPU).
    mantel_result
        ``(r, p)`` of this method's Mantel test when already computed (e.g. by
        :func:`~evosim.analysis.mantel.mantel_tests` for all methods at once); then
        ``rng`` is not used.
    true_ranks
        Average ranks of the true distances' upper triangle (row by row), when already
        computed for another method.

    Returns
    -------
    (Phylogeny, dict)
        The inferred tree and ``{metric: value}`` for every name in :data:`METRICS`,
        plus ``quartet_se`` (``triplet_se``) when that distance was sampled (see the
        module notes for the definitions).
    """
    tree = infer_tree(d, labels, method)
    scores = score_tree(tree, true_tree, rooted=method == "upgma")
    if true_distances is None:
        true_distances = patristic(true_tree, labels)
    if mantel_result is None:
        mantel_result = mantel(true_distances, d, mantel_permutations, rng, device=device)
    r, p = mantel_result
    x = upper_triangle(true_distances)
    rank_x = ranks(x) if true_ranks is None else true_ranks
    y_tree = upper_triangle(patristic(tree, labels))
    y_dist = upper_triangle(d)
    scores["cophenetic_pearson"] = pearson(x, y_tree)
    scores["cophenetic_spearman"] = pearson(rank_x, ranks(y_tree))
    scores["distance_pearson"] = r
    scores["distance_spearman"] = pearson(rank_x, ranks(y_dist))
    scores["mantel_p"] = p
    extra = {k: scores[k] for k in ("quartet_se", "triplet_se") if k in scores}
    return tree, {**{k: scores[k] for k in METRICS}, **extra}


def patristic(tree: Phylogeny, labels: list[str]) -> np.ndarray:
    """Patristic distances ``[S, S]`` of ``tree`` in ``labels`` order."""
    _, d = tree.patristic_distances(list(labels))
    return np.asarray(d, dtype=np.float64)
