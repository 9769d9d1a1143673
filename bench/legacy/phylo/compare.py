"""Tree comparison: Robinson-Foulds, quartet, triplet and cophenetic correlation.

All functions require both trees to have the same leaf names and raise ``ValueError``
naming the leaves that differ otherwise.

Robinson-Foulds uses Day's (1985) interval encoding instead of bitsets: in a leaf order
taken from tree ``a``, every clade of ``a`` is an interval; a clade of ``b`` is shared iff
its leaves' positions in that order are contiguous and form one of ``a``'s intervals.
Range minima/maxima over ``b``'s own leaf order come from a sparse table, so after one
O(n) traversal per tree everything is vectorised: O(n log n) in all. For unrooted
comparisons both traversals put a reference leaf first, so that every split is
represented by the interval on the side away from it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import numpy as np

from legacy.phylo.tree import Phylogeny

__all__ = [
    "compare_trees",
    "cophenetic_correlation",
    "quartet_distance",
    "robinson_foulds",
    "triplet_distance",
]


def _check_leaves(a: Phylogeny, b: Phylogeny) -> None:
    for t, name in ((a, "first"), (b, "second")):
        if not isinstance(t, Phylogeny):
            raise TypeError(f"the {name} tree must be a Phylogeny, got {type(t).__name__}")
    la, lb = set(a.leaves), set(b.leaves)
    if la != lb:
        only_a = sorted(la - lb)
        only_b = sorted(lb - la)
        raise ValueError(
            "trees have different leaf sets: "
            f"only in the first: {only_a[:10]}{' ...' if len(only_a) > 10 else ''}; "
            f"only in the second: {only_b[:10]}{' ...' if len(only_b) > 10 else ''}"
        )


# --------------------------------------------------------------------------- RF
def _ordered_intervals(
    t: Phylogeny, ref: str | None
) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
    """Leaf order and per-node leaf intervals, with ``ref`` (if given) as the first leaf.

    Returns (leaf names in order, lo [n_nodes], hi [n_nodes], n_children [n_nodes]),
    nodes indexed as in ``t``'s preorder. Only children order changes, so intervals are
    clades of the same rooted tree.
    """
    idx = t._index()
    if ref is None:
        names = idx.names
        leaves = [names[i] for i in idx.leaf_nodes.tolist()]
        nkids = np.fromiter((len(c) for c in idx.children), dtype=np.int64, count=idx.n_nodes)
        return leaves, idx.leaf_lo, idx.leaf_hi, nkids
    parent = idx.parent.tolist()
    children = idx.children
    v = idx.index[ref]
    first: dict[int, int] = {}
    while parent[v] >= 0:
        first[parent[v]] = v
        v = parent[v]
    n_nodes = idx.n_nodes
    lo = [0] * n_nodes
    hi = [0] * n_nodes
    order: list[int] = []
    leaves_i: list[int] = []
    stack = [0]
    while stack:
        v = stack.pop()
        order.append(v)
        ch = children[v]
        if not ch:
            lo[v] = len(leaves_i)
            hi[v] = lo[v] + 1
            leaves_i.append(v)
            continue
        f = first.get(v)
        if f is None:
            stack.extend(reversed(ch))
        else:
            stack.extend(c for c in reversed(ch) if c != f)
            stack.append(f)
    # lo = first leaf position in the subtree, hi = one past the last: accumulate upward
    big = len(leaves_i)
    lo = [big if children[v] else lo[v] for v in range(n_nodes)]
    for v in reversed(order):
        p = parent[v]
        if p >= 0:
            if lo[v] < lo[p]:
                lo[p] = lo[v]
            if hi[v] > hi[p]:
                hi[p] = hi[v]
    names = idx.names
    nkids = np.fromiter((len(c) for c in children), dtype=np.int64, count=n_nodes)
    return (
        [names[i] for i in leaves_i],
        np.asarray(lo, dtype=np.int64),
        np.asarray(hi, dtype=np.int64),
        nkids,
    )


def _sides(
    lo: np.ndarray, hi: np.ndarray, nkids: np.ndarray, n: int, unrooted: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Nontrivial clades (rooted) or split sides away from leaf 0 (unrooted), as ranges.

    Unary nodes are skipped (their clade repeats their child's).
    """
    keep = nkids >= 2
    lo, hi = lo[keep], hi[keep]
    if unrooted:
        contains_ref = lo == 0
        lo, hi = np.where(contains_ref, hi, lo), np.where(contains_ref, n, hi)
        size = hi - lo
        ok = (size >= 2) & (size <= n - 2)
    else:
        size = hi - lo
        ok = (size >= 2) & (size <= n - 1)
    return lo[ok], hi[ok]


class _SparseTable:
    """O(1) range min and max over a fixed int array after O(n log n) set-up."""

    def __init__(self, x: np.ndarray) -> None:
        self.mins = [x]
        self.maxs = [x]
        k = 1
        while 2 * k <= x.size:
            a, b = self.mins[-1], self.maxs[-1]
            self.mins.append(np.minimum(a[:-k], a[k:]))
            self.maxs.append(np.maximum(b[:-k], b[k:]))
            k *= 2

    def query(self, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """min and max over x[lo:hi] for each range (hi > lo)."""
        length = hi - lo
        level = np.floor(np.log2(np.maximum(length, 1))).astype(np.int64)
        mn = np.empty(lo.size, dtype=np.int64)
        mx = np.empty(lo.size, dtype=np.int64)
        for k in np.unique(level).tolist():
            sel = level == k
            a, b = lo[sel], hi[sel] - (1 << k)
            m, M = self.mins[k], self.maxs[k]
            mn[sel] = np.minimum(m[a], m[b])
            mx[sel] = np.maximum(M[a], M[b])
        return mn, mx


def _split_counts(a: Phylogeny, b: Phylogeny, rooted: bool) -> tuple[int, int, int]:
    """(clades of a, clades of b, shared), nontrivial and deduplicated."""
    _check_leaves(a, b)
    ref = None if rooted else min(a.leaves)
    leaves_a, lo_a, hi_a, k_a = _ordered_intervals(a, ref)
    leaves_b, lo_b, hi_b, k_b = _ordered_intervals(b, ref)
    n = len(leaves_a)
    la, ha = _sides(lo_a, hi_a, k_a, n, not rooted)
    lb, hb = _sides(lo_b, hi_b, k_b, n, not rooted)
    keys_a = np.unique(la * (n + 1) + ha)
    n_b = np.unique(lb * (n + 1) + hb).size
    if lb.size == 0 or keys_a.size == 0:
        return keys_a.size, n_b, 0
    pos_a = {v: i for i, v in enumerate(leaves_a)}
    p = np.fromiter((pos_a[v] for v in leaves_b), dtype=np.int64, count=n)
    mn, mx = _SparseTable(p).query(lb, hb)
    contiguous = (mx - mn + 1) == (hb - lb)
    keys_b = np.unique((mn * (n + 1) + mx + 1)[contiguous])
    shared = int(np.intersect1d(keys_a, keys_b, assume_unique=True).size)
    return int(keys_a.size), int(n_b), shared


def robinson_foulds(
    a: Phylogeny, b: Phylogeny, *, normalized: bool = False, rooted: bool = False
) -> float:
    """Robinson-Foulds distance: clades (rooted) or splits (unrooted) in exactly one tree.

    Parameters
    ----------
    a, b : Phylogeny
        Trees on the same leaf set.
    normalized : bool
        Divide by the largest value possible for these two trees, ``|A| + |B|`` (the
        number of nontrivial splits of each; ``2 (n - 3)`` for two binary unrooted trees,
        ``2 (n - 2)`` rooted). 0.0 when both trees are stars.
    rooted : bool
        Compare clades of the rooted trees instead of unrooted splits.

    Returns
    -------
    float

    References
    ----------
    Robinson & Foulds (1981) Math. Biosci. 53:131. Day (1985) J. Classif. 2:7.
    """
    na, nb, shared = _split_counts(a, b, rooted)
    d = na + nb - 2 * shared
    if normalized:
        return 0.0 if na + nb == 0 else d / (na + nb)
    return float(d)


# --------------------------------------------------------------------------- quartets
def _topo_distances(t: Phylogeny, leaves: Sequence[str]) -> np.ndarray:
    """Edge-count distances between ``leaves`` (int64 [n, n])."""
    g = t.graph.copy()
    for _, _, e in g.edges(data=True):
        e["length"] = 1.0
        e.pop("length_missing", None)
    for v in g.nodes:
        g.nodes[v].pop("time", None)
    _, D = Phylogeny(g).patristic_distances(list(leaves))
    return np.rint(D).astype(np.int64)


class _Rerooter:
    """Ancestor tables of a tree rooted at each of its leaves in turn."""

    def __init__(self, t: Phylogeny, leaves: Sequence[str]) -> None:
        idx = t._index()
        self.adj: list[list[int]] = [list(c) for c in idx.children]
        for v in range(1, idx.n_nodes):
            self.adj[v].append(int(idx.parent[v]))
        self.leaf_nodes = np.asarray([idx.index[v] for v in leaves], dtype=np.int64)
        self.n_nodes = idx.n_nodes

    def table(self, a: int) -> np.ndarray:
        """``anc[c, d]``: the node at depth d on the path from leaf ``a`` (the root) to leaf
        c, for the leaves in the order given (-1 beyond c's depth)."""
        root = int(self.leaf_nodes[a])
        parent = [-1] * self.n_nodes
        depth = [0] * self.n_nodes
        seen = [False] * self.n_nodes
        seen[root] = True
        stack = [root]
        adj = self.adj
        while stack:
            v = stack.pop()
            for w in adj[v]:
                if not seen[w]:
                    seen[w] = True
                    parent[w] = v
                    depth[w] = depth[v] + 1
                    stack.append(w)
        par = np.asarray(parent, dtype=np.int64)
        dep = np.asarray(depth, dtype=np.int64)
        cur = self.leaf_nodes.copy()
        maxd = int(dep[cur].max())
        anc = np.full((cur.size, maxd + 2), -1, dtype=np.int64)
        rows = np.arange(cur.size)
        live = np.ones(cur.size, dtype=bool)
        while live.any():
            r, c = rows[live], cur[live]
            anc[r, dep[c]] = c
            nxt = par[c]
            cur[live] = np.maximum(nxt, 0)
            live[live] = nxt >= 0
        return anc


def _pairs_equal(keys: np.ndarray) -> np.ndarray:
    """For each row, the number of unordered pairs of equal entries."""
    if keys.shape[1] < 2:
        return np.zeros(keys.shape[0], dtype=np.int64)
    s = np.sort(keys, axis=1)
    m = s.shape[1]
    new = np.ones(s.shape, dtype=bool)
    new[:, 1:] = s[:, 1:] != s[:, :-1]
    idx = np.broadcast_to(np.arange(m), s.shape)
    start = np.maximum.accumulate(np.where(new, idx, 0), axis=1)
    return (idx - start).sum(axis=1)


def quartet_distance(a: Phylogeny, b: Phylogeny, *, normalized: bool = True) -> float:
    """Number (or fraction) of 4-leaf subsets whose unrooted topologies differ.

    A quartet's topology is ``ab|cd`` or unresolved (a star, in trees with polytomies);
    a star differs from every resolved topology and equals another star (as in tqDist).

    Parameters
    ----------
    a, b : Phylogeny
        Trees on the same leaf set (roots are ignored).
    normalized : bool
        Divide by ``C(n, 4)``.

    Notes
    -----
    Exact, O(n^3 log n) time and O(n^2) memory, vectorised: for each pair of leaves
    (a, b), the other leaves are grouped by which component of the tree minus the a-b path
    they hang from; ``ab|cd`` holds iff c and d fall in one group, so shared quartets are
    counted from the joint groups of both trees. Practical up to a few hundred leaves.
    """
    _check_leaves(a, b)
    leaves = sorted(a.leaves)
    n = len(leaves)
    total = math.comb(n, 4)
    if total == 0:
        return 0.0
    P1 = _topo_distances(a, leaves)
    P2 = _topo_distances(b, leaves)
    res1 = res2 = shared = r1s2 = 0
    cols = np.arange(n)
    T1, T2 = _Rerooter(a, leaves), _Rerooter(b, leaves)
    for i in range(n - 1):
        A1 = T1.table(i)
        A2 = T2.table(i)
        rows = np.arange(i + 1, n)
        d1, d2 = P1[i], P2[i]
        H1 = (d1[rows, None] + d1[None, :] - P1[rows]) // 2  # attach depth of c on path(i,b)
        H2 = (d2[rows, None] + d2[None, :] - P2[rows]) // 2
        L1 = A1[cols[None, :], H1 + 1]
        L2 = A2[cols[None, :], H2 + 1]
        # c equal to i or b: unique sentinels, so they never pair up
        sentinel = -2 - cols
        mask = np.zeros(L1.shape, dtype=bool)
        mask[:, i] = True
        mask[np.arange(rows.size), rows] = True
        L1 = np.where(mask, sentinel, L1)
        L2 = np.where(mask, sentinel, L2)
        H2m = np.where(mask, sentinel, H2)
        base = 4 * n * n + 8
        res1 += int(_pairs_equal(L1).sum())
        res2 += int(_pairs_equal(L2).sum())
        shared += int(_pairs_equal((L1 + n + 2) * base + (L2 + n + 2)).sum())
        r1s2 += int(_pairs_equal((L1 + n + 2) * base + (H2m + n + 2)).sum())
    # every resolved quartet ab|cd is seen from both of its pairs
    res1 //= 2
    res2 //= 2
    shared //= 2
    res1_star2 = (r1s2 // 2) - shared
    both_resolved = res1 - res1_star2
    both_star = total - res1 - res2 + both_resolved
    same = shared + both_star
    d = total - same
    return d / total if normalized else float(d)


def _quartet_topologies(P: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Topology of each quartet ``q [m, 4]`` from edge-count distances ``P``: 0 (ij|kl),
    1 (ik|jl), 2 (il|jk) or 3 (unresolved), by the four-point condition."""
    i, j, k, l = q.T
    sums = np.stack([P[i, j] + P[k, l], P[i, k] + P[j, l], P[i, l] + P[j, k]], axis=1)
    low = sums.min(axis=1)
    unique = (sums == low[:, None]).sum(axis=1) == 1
    return np.where(unique, sums.argmin(axis=1), 3)


def quartet_distance_estimate(
    a: Phylogeny, b: Phylogeny, *, samples: int = 20_000, seed: int = 0
) -> tuple[float, float]:
    """Monte Carlo estimate of the normalised quartet distance, for trees too large to count.

    Draws ``samples`` uniformly random 4-leaf subsets (seeded, so repeatable) and compares
    their topologies, read off edge-count distances by the four-point condition.

    Returns
    -------
    (estimate, standard_error)
        The fraction of sampled quartets that differ and its binomial standard error
        ``sqrt(p (1 - p) / samples)``.
    """
    _check_leaves(a, b)
    leaves = sorted(a.leaves)
    n = len(leaves)
    if n < 4:
        return 0.0, 0.0
    P1 = _topo_distances(a, leaves)
    P2 = _topo_distances(b, leaves)
    gen = np.random.default_rng(seed)
    batches, need = [], samples
    while need > 0:  # rejection: rows whose four leaves are distinct
        q = gen.integers(0, n, size=(max(2 * need, 64), 4))
        s = np.sort(q, axis=1)
        q = q[(s[:, 1:] != s[:, :-1]).all(axis=1)][:need]
        batches.append(q)
        need -= len(q)
    q = np.concatenate(batches)
    differ = _quartet_topologies(P1, q) != _quartet_topologies(P2, q)
    p = float(differ.mean())
    return p, math.sqrt(p * (1.0 - p) / len(q))


def triplet_distance(a: Phylogeny, b: Phylogeny, *, normalized: bool = True) -> float:
    """Number (or fraction) of 3-leaf subsets whose rooted topologies differ.

    A triplet is ``ab|c`` (a and b closer to each other than to c) or unresolved; as for
    quartets, unresolved equals unresolved and differs from any resolved triplet.

    Parameters
    ----------
    a, b : Phylogeny
        Rooted trees on the same leaf set (the stored roots are used).
    normalized : bool
        Divide by ``C(n, 3)``.

    Notes
    -----
    Exact, O(n^3) vectorised over LCA-depth matrices (edge counts from the root).
    """
    _check_leaves(a, b)
    leaves = sorted(a.leaves)
    n = len(leaves)
    total = math.comb(n, 3)
    if total == 0:
        return 0.0
    Gs = []
    for t in (a, b):
        P = _topo_distances(t, leaves)
        depth = _topo_depths(t, leaves)
        Gs.append((depth[:, None] + depth[None, :] - P) // 2)
    diff = 0
    for i in range(n - 2):
        codes = []
        for G in Gs:
            x = G[i, i + 1 :][:, None]  # lca(i, b)
            y = G[i, i + 1 :][None, :]  # lca(i, c)
            z = G[i + 1 :, i + 1 :]  # lca(b, c)
            code = np.where(x > y, 0, np.where(y > x, 1, np.where(z > x, 2, 3)))
            codes.append(code)
        upper = np.triu(np.ones(codes[0].shape, dtype=bool), 1)
        diff += int(((codes[0] != codes[1]) & upper).sum())
    return diff / total if normalized else float(diff)


def _topo_depths(t: Phylogeny, leaves: Sequence[str]) -> np.ndarray:
    """Edge counts from the root to each leaf."""
    idx = t._index()
    depth = np.zeros(idx.n_nodes, dtype=np.int64)
    parent = idx.parent
    for i in range(1, idx.n_nodes):
        depth[i] = depth[parent[i]] + 1
    return depth[[idx.index[v] for v in leaves]]


# --------------------------------------------------------------------------- cophenetic
def cophenetic_correlation(
    a: Phylogeny,
    b_or_D: Phylogeny | np.ndarray,
    *,
    labels: Sequence[str] | None = None,
    method: Literal["pearson", "spearman"] = "pearson",
) -> float:
    """Correlation between patristic distances of ``a`` and a second tree or a matrix.

    Parameters
    ----------
    a : Phylogeny
    b_or_D : Phylogeny or array_like [n, n]
        A tree on the same leaves, or a distance matrix whose rows are ``labels``.
    labels : sequence of str, optional
        Row names of the matrix (required with a matrix).
    method : {"pearson", "spearman"}

    Returns
    -------
    float
        Correlation over the n (n - 1) / 2 leaf pairs (NaN if either side is constant).
    """
    if method not in ("pearson", "spearman"):
        raise ValueError(f"method must be 'pearson' or 'spearman', got {method!r}")
    if isinstance(b_or_D, Phylogeny):
        _check_leaves(a, b_or_D)
        order = sorted(a.leaves)
        _, Da = a.patristic_distances(order)
        _, Db = b_or_D.patristic_distances(order)
    else:
        Db = np.asarray(b_or_D, dtype=float)
        if labels is None:
            raise ValueError("labels are required when comparing a tree with a matrix")
        order = [str(x) for x in labels]
        if Db.ndim != 2 or Db.shape != (len(order), len(order)):
            raise ValueError(f"distance matrix shape {Db.shape} does not match {len(order)} labels")
        la, lb = set(a.leaves), set(order)
        if la != lb or len(order) != len(lb):
            raise ValueError(
                "tree leaves and matrix labels differ: "
                f"only in the tree: {sorted(la - lb)[:10]}; "
                f"only in the labels: {sorted(lb - la)[:10]}"
                + ("; labels repeat" if len(order) != len(lb) else "")
            )
        _, Da = a.patristic_distances(order)
    iu = np.triu_indices(len(order), 1)
    x, y = Da[iu], Db[iu]
    if x.size < 2:
        return float("nan")
    if method == "spearman":
        from scipy.stats import rankdata

        x, y = rankdata(x), rankdata(y)
    if np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan")
    return float(np.corrcoef(x, y)[0, 1])


def compare_trees(a: Phylogeny, b: Phylogeny, *, rooted: bool = False) -> dict[str, float]:
    """Every comparison at once.

    Returns
    -------
    dict
        ``rf`` and ``nrf`` (Robinson-Foulds, raw and normalised, rooted or not as asked),
        ``quartet`` (normalised quartet distance), ``triplet`` (normalised rooted triplet
        distance; NaN unless both trees are rooted, i.e. ``graph.graph["rooted"]``),
        ``cophenetic_pearson`` and ``cophenetic_spearman``.
    """
    _check_leaves(a, b)
    na, nb, shared = _split_counts(a, b, rooted)
    d = na + nb - 2 * shared
    both_rooted = a.rooted and b.rooted
    return {
        "rf": float(d),
        "nrf": 0.0 if na + nb == 0 else d / (na + nb),
        "quartet": quartet_distance(a, b),
        "triplet": triplet_distance(a, b) if both_rooted else float("nan"),
        "cophenetic_pearson": cophenetic_correlation(a, b, method="pearson"),
        "cophenetic_spearman": cophenetic_correlation(a, b, method="spearman"),
    }
