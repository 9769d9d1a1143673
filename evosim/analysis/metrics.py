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

import itertools
import math

import numpy as np
import torch
from scipy.spatial.distance import pdist, squareform

from evosim.phylo import Phylogeny, compare_trees, neighbor_joining, upgma
from evosim.phylo.compare import COMPARE_EXACT_MAX, COMPARE_SAMPLES
from evosim.stats import pearson, ranks

__all__ = [
    "METRICS",
    "euclidean",
    "infer_tree",
    "mantel",
    "mantel_null_mean",
    "score_distances",
    "score_tree",
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
#: Sequential Mantel test: stop once this many permutations reach the observed statistic.
MANTEL_HITS = 20


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


def _upper(d: np.ndarray) -> np.ndarray:
    iu = np.triu_indices(d.shape[0], k=1)
    return np.asarray(d, dtype=np.float64)[iu]


# --------------------------------------------------------------------------- Mantel
#: Permutations drawn (and screened) per batch.
_BATCH = 64
#: Permutations evaluated exactly before a screening rank is chosen from their spread.
_PILOT = 16
#: Ranks tried for the screening bound (the smallest that proves most permutations below
#: the observed statistic is used).
_RANKS = (4, 8, 16, 32)
#: Ties: a permutation counts when its statistic is at least the observed one less this.
_TIE = 1e-12


class _Screen:
    """Upper bounds on permuted Mantel statistics from a low-rank part of the fixed matrix.

    With ``F`` the centred first matrix (zero diagonal) and ``Bc`` the centred second one,
    the permuted statistic is ``<F, Bc_p> / (|F| |Bc|)``. Split ``F = F_k + R`` with
    ``F_k = U diag(lam) U^T`` of rank k: ``<F_k, Bc_p> = sum_l lam_l w_l^T Bc w_l`` with
    ``w_l = u_l`` permuted, a matrix product for a whole batch of permutations, and by
    Cauchy-Schwarz ``|<R, Bc_p>| <= |R_offdiag| |Bc|`` (permuting leaves the norm of Bc
    unchanged). A permutation whose bound is below the observed statistic cannot count,
    so only the others are evaluated exactly: the p-value is that of the exact test.
    """

    def __init__(self, F: np.ndarray, f_norm: float, device: torch.device) -> None:
        n = F.shape[0]
        k = min(max(_RANKS) + 8, n)
        # randomised range finder with two power iterations (Halko et al. 2011); the
        # basis only decides how much is screened, never a result, so its seed is fixed
        gen = np.random.default_rng(0)
        Y = F @ gen.standard_normal((n, k))
        for _ in range(2):
            Y, _ = np.linalg.qr(Y)
            Y = F @ (F @ Y)
        Q, _ = np.linalg.qr(Y)
        lam, V = np.linalg.eigh(Q.T @ F @ Q)
        order = np.argsort(-np.abs(lam))
        self.lam, self.U = lam[order], Q @ V[:, order]
        self.f_norm = f_norm
        self.n = n
        self.device = device

    def epsilon(self, k: int) -> float:
        """Bound on ``|<R, Bc_p>| / (|F| |Bc|)`` for the rank-k part, rounding included."""
        lam, U = self.lam[:k], self.U[:, :k]
        fk_sq = float((lam**2).sum())
        diag = (U**2) @ lam  # diagonal of F_k (F's is zero)
        r_off = max(self.f_norm**2 - fk_sq - float(diag @ diag), 0.0)
        # float32 products: |error| <= 2 n u sum|lam| |Bc|_2 (Higham's bound), u = 2^-24
        rounding = 2.0 * (self.n + 2) * 2.0**-24 * float(np.abs(lam).sum()) / self.f_norm
        return math.sqrt(r_off + 1e-12 * self.f_norm**2) / self.f_norm + rounding

    def bounds(self, q: torch.Tensor, k: int, Bc32: torch.Tensor, scale: float) -> torch.Tensor:
        """Upper bounds on the statistic of the permutations whose inverses are ``q [m, n]``."""
        U = torch.as_tensor(self.U[:, :k], dtype=torch.float32, device=self.device)
        lam = torch.as_tensor(self.lam[:k], dtype=torch.float64, device=self.device)
        m = q.shape[0]
        W = U[q.reshape(-1)].reshape(m, self.n, k).permute(1, 0, 2).reshape(self.n, m * k)
        BW = Bc32 @ W
        quad = (W * BW).reshape(self.n, m, k).sum(0, dtype=torch.float64)  # [m, k]
        return (quad @ lam) * scale


def _exact_stats(
    flat_b: torch.Tensor, flat_f: torch.Tensor, perms: torch.Tensor, scale: float
) -> np.ndarray:
    n = perms.shape[1]
    out = np.empty(perms.shape[0])
    for i, p in enumerate(perms):
        # one flat gather of B[p][:, p] (4x faster than two index_selects on float64)
        bp = flat_b.take((p.unsqueeze(1) * n + p.unsqueeze(0)).reshape(-1))
        out[i] = float(torch.dot(bp, flat_f)) * scale
    return out


def mantel(
    d1: np.ndarray,
    d2: np.ndarray,
    permutations: int = 999,
    rng: np.random.Generator | None = None,
    *,
    device: str | torch.device = "cpu",
    stop_after: int = MANTEL_HITS,
) -> tuple[float, float]:
    """Mantel test: Pearson r of the upper triangles and its one-sided permutation p-value.

    The rows and columns of ``d2`` are permuted together. The p-value follows the
    precision the permutations can give, by sequential stopping (Besag & Clifford 1991):
    permutations are drawn until ``stop_after`` (h) of them reach the observed ``r``, or
    ``permutations`` (P) have been drawn. Stopped after L draws, ``p = h / L`` (relative
    standard error about ``1 / sqrt(h)``); otherwise ``p = (1 + hits) / (1 + P)``, the
    fixed-size test. Both are exact p-values; a large ``r`` costs all P permutations, a
    small one only about ``h / p``. ``stop_after >= P + 1`` gives the fixed-size test.
    With at most P distinct permutations (``n! <= P``) every one is enumerated and ``p``
    is the exact permutation p-value.

    Permutations that cannot reach ``r`` are recognised from a bound (see ``_Screen``)
    and not evaluated exactly; this changes the time only, never the p-value.

    Parameters
    ----------
    d1, d2 : array_like, [n, n]
        Symmetric distance matrices (``d1`` is fixed, ``d2`` permuted).
    permutations : int
        At most this many permutations (0: ``p`` is ``NaN``).
    rng : numpy.random.Generator
        Draws the permutations.
    device : str or torch.device
        Where the permuted products run (default CPU; never chosen here).
    stop_after : int
        h, the number of permutations reaching ``r`` that stops the test.

    Returns
    -------
    (r, p)

    References
    ----------
    Mantel (1967) Cancer Res. 27:209. Besag & Clifford (1991) Biometrika 78:301.
    """
    d1 = np.asarray(d1, dtype=np.float64)
    d2 = np.asarray(d2, dtype=np.float64)
    n = d1.shape[0]
    iu0, iu1 = np.triu_indices(n, k=1)
    a = d1[iu0, iu1]
    b = d2[iu0, iu1]
    r = pearson(a, b)
    if permutations <= 0 or not np.isfinite(r):
        return r, float("nan")
    if rng is None:
        raise ValueError("mantel needs rng (a numpy Generator) to draw permutations")
    device = torch.device(device)
    a = a - a.mean()
    F = np.zeros((n, n))
    F[iu0, iu1] = a
    F += F.T
    f_norm = float(np.sqrt((F * F).sum()))
    bc = b - b.mean()
    bc_norm = float(np.sqrt(2.0 * (bc @ bc)))
    # r_perm = <F, B_p> / (|F| |Bc|): F's entries sum to 0, so B's mean drops out
    scale = 1.0 / (f_norm * bc_norm)
    flat_f = torch.as_tensor(F, device=device).reshape(-1)
    flat_b = torch.as_tensor(d2, device=device).reshape(-1)
    threshold = r - _TIE
    if math.factorial(n) <= permutations:
        perms = torch.as_tensor(list(itertools.permutations(range(n))), device=device)
        stats = _exact_stats(flat_b, flat_f, perms, scale)
        return r, float(np.count_nonzero(stats >= threshold)) / len(stats)
    hits = drawn = 0
    screen = None
    k = 0
    pilot: list[float] = []
    Bc32 = None
    while drawn < permutations:
        m = min(_BATCH if drawn >= _PILOT else _PILOT, permutations - drawn)
        perms = torch.as_tensor(np.argsort(rng.random((m, n)), axis=1), device=device)
        if k:
            q = torch.argsort(perms, dim=1)  # inverse permutations
            ub = screen.bounds(q, k, Bc32, scale).cpu().numpy()  # type: ignore[union-attr]
            cand = np.flatnonzero(ub + screen.epsilon(k) >= threshold)  # type: ignore[union-attr]
        else:
            cand = np.arange(m)
        stats = np.full(m, -np.inf)
        if cand.size:
            stats[cand] = _exact_stats(flat_b, flat_f, perms[cand], scale)
        counted = np.cumsum(stats >= threshold)
        if hits + counted[-1] >= stop_after:
            at = int(np.searchsorted(counted, stop_after - hits)) + 1
            return r, stop_after / (drawn + at)
        hits += int(counted[-1])
        drawn += m
        if drawn == m and n > 64 and drawn < permutations and _RANKS:
            # choose the screening rank from the pilot's spread: the smallest whose slack
            # leaves room between the observed r and the bulk of the null
            pilot = stats.tolist()
            high = max(max(pilot), float(np.mean(pilot) + 6 * np.std(pilot)))
            screen = _Screen(F, f_norm, device)
            for kk in _RANKS:
                if kk <= n and screen.epsilon(kk) < threshold - high:
                    k = kk
                    break
            if k:
                Bc = d2 - b.mean()
                np.fill_diagonal(Bc, 0.0)
                Bc32 = torch.as_tensor(Bc, dtype=torch.float32, device=device)
    return r, (1.0 + hits) / (1.0 + permutations)


def mantel_null_mean(permutations: int, stop_after: int = MANTEL_HITS) -> float:
    """Expected :func:`mantel` p-value under the null (no association, continuous statistics).

    The observed statistic's tail probability u is uniform, each permutation reaches it
    with probability u, and integrating the sequential rule over u gives
    ``h^2 sum_{L=h}^{P} 1 / (L^2 (L + 1)) + h (h + 1) / (2 (P + 1)^2)`` (h = ``stop_after``;
    ``(P + 2) / (2 (P + 1))`` for the fixed-size test, h = P + 1).
    """
    P, h = int(permutations), int(stop_after)
    if P <= 0:
        return float("nan")
    h = min(h, P + 1)
    L = np.arange(h, P + 1, dtype=np.float64)
    return float(h * h * np.sum(1.0 / (L * L * (L + 1.0))) + h * (h + 1) / (2.0 * (P + 1) ** 2))


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
    rng: np.random.Generator,
    true_distances: np.ndarray | None = None,
    device: str | torch.device = "cpu",
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
    r, p = mantel(true_distances, d, mantel_permutations, rng, device=device)
    x = _upper(true_distances)
    rank_x = ranks(x)
    y_tree = _upper(patristic(tree, labels))
    y_dist = _upper(d)
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
