"""The ``random`` baseline: the scores a random tree gets, by their expectations.

A random tree is a Yule tree with uniformly shuffled leaf labels. Up to
:data:`EXACT_RANDOM_MAX` leaves its scores are averaged over sampled trees. Above, each
score whose expectation is known exactly takes it (see :func:`random_tree_scores`), so the
baseline costs nothing at any size.
"""

from __future__ import annotations

import math

import numpy as np

from evosim.analysis.metrics import METRICS, mantel, mantel_null_mean, patristic
from evosim.phylo import (
    Phylogeny,
    quartet_distance,
    quartet_distance_estimate,
    robinson_foulds,
    triplet_distance,
    triplet_distance_estimate,
    yule,
)
from evosim.stats import spearman

__all__ = ["EXACT_RANDOM_MAX", "expected_random_rf", "random_tree_scores"]

#: Random-tree baseline: sample every score up to this many leaves.
EXACT_RANDOM_MAX = 128
#: Cap on the Mantel permutations of each sampled random tree.
RANDOM_MANTEL_PERMUTATIONS = 99


def _binary(tree: Phylogeny) -> bool:
    """Every internal node has two children (the root of an unrooted tree may have three)."""
    k = tree.to_arrays().n_children
    k = k[k > 0]
    return bool(np.all(k == 2) or (np.all(k[1:] == 2) and k[0] == 3))


def expected_random_rf(true_tree: Phylogeny) -> tuple[float, float]:
    """Expected (RF, normalised RF) between ``true_tree`` and a Yule tree with shuffled labels.

    A split of the true tree with sides of k and n - k leaves is one of the random tree's
    with probability ``(E N_k + E N_{n-k} - 2 / (n - 1)) / C(n, k)``: ``E N_m = 2n / (m (m +
    1))`` clades of m leaves in a Yule tree (Rosenberg 2006), each a given m-set with
    probability ``1 / C(n, m)`` under shuffled labels, less the root's two clades, which
    make one split (its sizes are uniform on 1..n-1). Summed over the true splits this is
    the expected number shared; the random tree, being binary, always has n - 3 splits,
    so both expectations follow exactly.
    """
    arr = true_tree.to_arrays()
    n = int(arr.is_leaf.sum())
    if n < 4:
        return 0.0, 0.0
    # one split per edge below a branching node; the root's two edges make one split
    size = arr.leaf_hi - arr.leaf_lo
    keep = (arr.n_children != 1) & (size >= 2) & (size <= n - 2)
    keep[0] = False
    root_kids = arr.child_idx[arr.child_ptr[0] : arr.child_ptr[1]]
    if root_kids.size == 2:
        keep[root_kids[1]] = False
    sizes = size[keep].astype(np.float64)
    n_true = sizes.size
    k, nk = sizes, n - sizes
    numer = 2.0 * n / (k * (k + 1)) + 2.0 * n / (nk * (nk + 1)) - 2.0 / (n - 1)
    log_c = np.array([math.lgamma(n + 1) - math.lgamma(x + 1) - math.lgamma(n - x + 1) for x in k])
    shared = float(np.sum(numer * np.exp(-log_c)))
    total = n_true + n - 3
    rf = total - 2.0 * shared
    return rf, (rf / total if total else 0.0)


def random_tree_scores(
    true_tree: Phylogeny,
    species: list[str],
    *,
    n_trees: int,
    method: str,
    mantel_permutations: int,
    rng: np.random.Generator,
    true_distances: np.ndarray,
    device: str = "cpu",
) -> dict[str, float | None]:
    """Expected scores of random trees: Yule trees with shuffled leaf labels.

    Each random tree's own patristic distances stand in for a method's distances, so its
    cophenetic and distance correlations coincide, and its Mantel p-value (at most 99
    permutations) is that of a random tree too.

    Up to :data:`EXACT_RANDOM_MAX` leaves every score is averaged over ``n_trees`` sampled
    trees. Above, the expectations are used: RF and nRF from
    :func:`expected_random_rf`; the correlations 0 (shuffling labels leaves each tree's
    distances and ranks as a multiset, so the expected covariance with any fixed matrix
    is 0 and the norms do not change); the Mantel p-value its null mean
    (:func:`~evosim.analysis.metrics.mantel_null_mean`); on a binary true tree the quartet
    and triplet distances 2/3 (each quartet, and rooted triplet, of a tree with shuffled
    labels takes each of its 3 resolutions with probability 1/3, whatever the tree
    shape), on any other one the mean of sampled estimates over ``n_trees`` trees.
    """
    n = len(species)
    perms = min(mantel_permutations, RANDOM_MANTEL_PERMUTATIONS)
    if n > EXACT_RANDOM_MAX:
        rf, nrf = expected_random_rf(true_tree)
        out: dict[str, float | None] = {
            "rf": rf,
            "nrf": nrf,
            "cophenetic_pearson": 0.0,
            "cophenetic_spearman": 0.0,
            "distance_pearson": 0.0,
            "distance_spearman": 0.0,
            "mantel_p": mantel_null_mean(perms) if perms > 0 else float("nan"),
        }
        if _binary(true_tree):
            out["quartet"] = 2.0 / 3.0
            out["triplet"] = 2.0 / 3.0 if method == "upgma" else None
        else:
            q, t = [], []
            for _ in range(n_trees):
                r = _random_tree(species, rng)
                q.append(quartet_distance_estimate(r, true_tree, samples=2_000, seed=len(q))[0])
                if method == "upgma":
                    t.append(triplet_distance_estimate(r, true_tree, samples=2_000, seed=len(t))[0])
            out["quartet"] = float(np.mean(q))
            out["triplet"] = float(np.mean(t)) if t else None
        return {k: out[k] for k in METRICS}
    iu = np.triu_indices(n, 1)
    x = true_distances[iu]
    rows = []
    for _ in range(n_trees):
        t = _random_tree(species, rng)
        d = patristic(t, species)
        r, p = mantel(true_distances, d, perms, rng, device=device)
        rho = spearman(d[iu], x)
        row = {
            "rf": float(robinson_foulds(t, true_tree, normalized=False, rooted=False)),
            "nrf": float(robinson_foulds(t, true_tree, normalized=True, rooted=False)),
            "quartet": float(quartet_distance(t, true_tree, normalized=True)),
            "cophenetic_pearson": r,
            "cophenetic_spearman": rho,
            "distance_pearson": r,
            "distance_spearman": rho,
            "mantel_p": p,
        }
        if method == "upgma":
            row["triplet"] = float(triplet_distance(t, true_tree, normalized=True))
        rows.append(row)
    out = {}
    for k in rows[0]:
        vals = np.asarray([row[k] for row in rows], dtype=float)
        out[k] = float(np.nanmean(vals)) if np.isfinite(vals).any() else float("nan")
    out.setdefault("triplet", None)
    return {k: out[k] for k in METRICS}


def _random_tree(species: list[str], rng: np.random.Generator) -> Phylogeny:
    t = yule(1.0, len(species), rng=rng)
    return t.relabel(dict(zip(t.extant_leaves, rng.permutation(species).tolist())))
