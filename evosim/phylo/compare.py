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

from evosim.errors import ResourceError
from evosim.phylo.tree import Phylogeny, _patristic, _ref_first_ranges
from evosim.stats import pearson, spearman

__all__ = [
    "COMPARE_EXACT_MAX",
    "compare_trees",
    "cophenetic_correlation",
    "quartet_distance",
    "quartet_distance_estimate",
    "robinson_foulds",
    "shared_splits",
    "triplet_distance",
    "triplet_distance_estimate",
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
    arr = t.to_arrays()
    names = arr.names
    if ref is None:
        leaves = [names[i] for i in arr.leaf_nodes.tolist()]
        return leaves, arr.leaf_lo, arr.leaf_hi, arr.n_children
    order, lo, hi = _ref_first_ranges(arr, int(t.indices([ref])[0]))
    return [names[i] for i in order.tolist()], lo, hi, arr.n_children


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


def shared_splits(a: Phylogeny, b: Phylogeny, *, rooted: bool = False) -> dict[str, bool]:
    """For every node of ``a``: is the split (clade) its edge makes also one of ``b``'s?

    Parameters
    ----------
    a, b : Phylogeny
        Trees on the same leaf set.
    rooted : bool
        Compare clades of the rooted trees instead of unrooted splits.

    Returns
    -------
    dict
        ``{node of a: bool}`` for every node of ``a``, root included; trivial splits
        (a side with fewer than 2 leaves, and the root's clade) count as shared. Exact,
        O(n log n), by the interval encoding of :func:`robinson_foulds`.
    """
    _check_leaves(a, b)
    ref = None if rooted else min(a.leaves)
    leaves_a, lo_a, hi_a, _ = _ordered_intervals(a, ref)
    leaves_b, lo_b, hi_b, k_b = _ordered_intervals(b, ref)
    n = len(leaves_a)
    found = np.ones(lo_a.size, dtype=bool)
    if rooted:
        la, ha = lo_a, hi_a
        size = ha - la
        nontrivial = (size >= 2) & (size <= n - 1)
    else:
        away = lo_a == 0
        la, ha = np.where(away, hi_a, lo_a), np.where(away, n, hi_a)
        size = ha - la
        nontrivial = (size >= 2) & (size <= n - 2)
    nontrivial[0] = False
    lb, hb = _sides(lo_b, hi_b, k_b, n, not rooted)
    if lb.size:
        pos_a = {v: i for i, v in enumerate(leaves_a)}
        p = np.fromiter((pos_a[v] for v in leaves_b), dtype=np.int64, count=n)
        mn, mx = _SparseTable(p).query(lb, hb)
        contiguous = (mx - mn + 1) == (hb - lb)
        keys_b = np.unique((mn * (n + 1) + mx + 1)[contiguous])
    else:
        keys_b = np.zeros(0, dtype=np.int64)
    sel = np.flatnonzero(nontrivial)
    found[sel] = np.isin(la[sel] * (n + 1) + ha[sel], keys_b)
    names = a.to_arrays().names
    return dict(zip(names, found.tolist()))


# --------------------------------------------------------------------------- LCA queries
class _LCA:
    """Edge-count depths of the last common ancestor of any two leaves, O(1) per query.

    In preorder, the LCA of leaves ``x < y`` (preorder leaf ranks) is the shallowest of
    the LCAs of consecutive leaves ``k, k + 1`` for ``x <= k < y``; those come from one
    pass over the nodes and a sparse table answers the range minima.
    """

    def __init__(self, t: Phylogeny, leaves: Sequence[str]) -> None:
        arr = t.to_arrays()
        nodes = t.indices(leaves)
        self.rank = arr.leaf_lo[nodes]  # preorder rank of each leaf
        self.depth = arr.depth[nodes]
        h = np.zeros(max(int(arr.is_leaf.sum()) - 1, 1), dtype=np.int64)
        child = np.arange(1, arr.n_nodes)
        par = arr.parent[1:]
        first = arr.leaf_lo[child] > arr.leaf_lo[par]
        h[arr.leaf_lo[child[first]] - 1] = arr.depth[par[first]]
        self.table = _SparseTable(h)

    def lca_depth(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Depth of the LCA of leaves ``x`` and ``y`` (indices into ``leaves``; x != y)."""
        rx, ry = self.rank[x], self.rank[y]
        lo, hi = np.minimum(rx, ry), np.maximum(rx, ry)
        return self.table.query(lo, hi)[0]

    def distance(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Edge counts between leaves ``x`` and ``y`` (x != y)."""
        return self.depth[x] + self.depth[y] - 2 * self.lca_depth(x, y)


def _distinct_samples(n: int, k: int, samples: int, seed: int) -> np.ndarray:
    """``[samples, k]`` uniformly random k-subsets of ``range(n)`` (rows in random order)."""
    gen = np.random.default_rng(seed)
    batches, need = [], samples
    while need > 0:  # rejection: rows whose k leaves are distinct
        q = gen.integers(0, n, size=(max(2 * need, 64), k))
        s = np.sort(q, axis=1)
        q = q[(s[:, 1:] != s[:, :-1]).all(axis=1)][:need]
        batches.append(q)
        need -= len(q)
    return np.concatenate(batches)


# --------------------------------------------------------------------------- quartets
def _topo_distances(t: Phylogeny, leaves: Sequence[str]) -> np.ndarray:
    """Edge-count distances between ``leaves`` (int64 [n, n])."""
    arr = t.to_arrays()
    D = _patristic(arr, arr.depth.astype(np.float64))
    order = arr.leaf_lo[t.indices(leaves)]
    return np.rint(D[np.ix_(order, order)]).astype(np.int64)


class _Rerooter:
    """Ancestor tables of a tree rooted at each of its leaves in turn."""

    def __init__(self, t: Phylogeny, leaves: Sequence[str]) -> None:
        arr = t.to_arrays()
        ptr, kids = arr.child_ptr.tolist(), arr.child_idx.tolist()
        self.adj: list[list[int]] = [kids[ptr[v] : ptr[v + 1]] for v in range(arr.n_nodes)]
        for v in range(1, arr.n_nodes):
            self.adj[v].append(int(arr.parent[v]))
        self.leaf_nodes = t.indices(leaves)
        self.n_nodes = arr.n_nodes

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
    counted from the joint groups of both trees. Practical up to a few hundred leaves;
    :func:`quartet_distance_estimate` samples larger trees.
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


def _quartet_topologies(L: _LCA, q: np.ndarray) -> np.ndarray:
    """Topology of each quartet ``q [m, 4]``: 0 (ij|kl), 1 (ik|jl), 2 (il|jk) or 3
    (unresolved), by the four-point condition on edge-count distances."""
    i, j, k, l = q.T
    d = L.distance
    sums = np.stack([d(i, j) + d(k, l), d(i, k) + d(j, l), d(i, l) + d(j, k)], axis=1)
    low = sums.min(axis=1)
    unique = (sums == low[:, None]).sum(axis=1) == 1
    return np.where(unique, sums.argmin(axis=1), 3)


def quartet_distance_estimate(
    a: Phylogeny, b: Phylogeny, *, samples: int = 20_000, seed: int = 0
) -> tuple[float, float]:
    """Monte Carlo estimate of the normalised quartet distance, for trees too large to count.

    Draws ``samples`` uniformly random 4-leaf subsets (seeded, so repeatable: the default
    seed makes every comparison of the same trees give the same estimate) and compares
    their topologies, read off edge-count distances by the four-point condition. O(n +
    samples log n) time and memory (distances by last-common-ancestor queries).

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
    q = _distinct_samples(n, 4, samples, seed)
    differ = _quartet_topologies(_LCA(a, leaves), q) != _quartet_topologies(_LCA(b, leaves), q)
    p = float(differ.mean())
    return p, math.sqrt(p * (1.0 - p) / len(q))


# --------------------------------------------------------------------------- triplets
def _triplet_codes(L: _LCA, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Rooted topology of triplets (x, y, z): 0 (xy|z), 1 (xz|y), 2 (yz|x), 3 (unresolved)."""
    gxy, gxz, gyz = L.lca_depth(x, y), L.lca_depth(x, z), L.lca_depth(y, z)
    return np.where(
        gxy > gxz, 0, np.where(gxz > gxy, 1, np.where(gyz > gxy, 2, 3))
    )  # fmt: skip


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
    Exact, O(n^3) vectorised over LCA-depth matrices (edge counts from the root);
    :func:`triplet_distance_estimate` samples larger trees.
    """
    _check_leaves(a, b)
    leaves = sorted(a.leaves)
    n = len(leaves)
    total = math.comb(n, 3)
    if total == 0:
        return 0.0
    Gs = []
    ii, jj = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    off = ii != jj
    for t in (a, b):
        L = _LCA(t, leaves)
        G = np.zeros((n, n), dtype=np.int64)
        G[off] = L.lca_depth(ii[off], jj[off])
        Gs.append(G)
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


def triplet_distance_estimate(
    a: Phylogeny, b: Phylogeny, *, samples: int = 20_000, seed: int = 0
) -> tuple[float, float]:
    """Monte Carlo estimate of the normalised rooted triplet distance.

    As :func:`quartet_distance_estimate`, with uniformly random 3-leaf subsets whose
    rooted topologies are read off the depths of their last common ancestors.

    Returns
    -------
    (estimate, standard_error)
    """
    _check_leaves(a, b)
    leaves = sorted(a.leaves)
    n = len(leaves)
    if n < 3:
        return 0.0, 0.0
    q = _distinct_samples(n, 3, samples, seed)
    x, y, z = q.T
    differ = _triplet_codes(_LCA(a, leaves), x, y, z) != _triplet_codes(_LCA(b, leaves), x, y, z)
    p = float(differ.mean())
    return p, math.sqrt(p * (1.0 - p) / len(q))


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
    return pearson(x, y) if method == "pearson" else spearman(x, y)


#: Above this many leaves, :func:`compare_trees` estimates quartet and triplet distances.
COMPARE_EXACT_MAX = 256
#: Quartets (triplets) sampled per estimate.
COMPARE_SAMPLES = 20_000
#: Memory :func:`compare_trees` may use for the all-pairs distances of the cophenetic
#: correlations before it refuses (bytes).
COMPARE_MEMORY = 4 * 2**30


def compare_trees(
    a: Phylogeny,
    b: Phylogeny,
    *,
    rooted: bool = False,
    cophenetic: bool = True,
    seed: int = 0,
    memory: int = COMPARE_MEMORY,
) -> dict[str, float | None]:
    """Every comparison at once: the definitions the analysis's report uses too.

    Parameters
    ----------
    a, b : Phylogeny
        Trees on the same leaf set.
    rooted : bool
        Robinson-Foulds on clades of the rooted trees instead of unrooted splits.
    cophenetic : bool
        Compute the cophenetic correlations (they need the ``n x n`` distance matrices).
    seed : int
        Seeds the sampled quartets and triplets (fixed, so comparisons are repeatable).
    memory : int
        Bytes the cophenetic correlations may use; above it, :class:`ResourceError`.

    Returns
    -------
    dict
        - ``rf``, ``nrf``: Robinson-Foulds distance, raw and normalised (rooted or not as
          asked; see :func:`robinson_foulds`).
        - ``quartet``: normalised quartet distance of the unrooted trees, exact up to
          :data:`COMPARE_EXACT_MAX` leaves, above that estimated from
          :data:`COMPARE_SAMPLES` random quartets, with its standard error in
          ``quartet_se`` (present only then).
        - ``triplet``: normalised rooted triplet distance when **both** trees are rooted
          (``Phylogeny.rooted``; an NJ tree is not), else ``None``; exact or estimated as
          the quartets, with ``triplet_se``.
        - ``cophenetic_pearson``, ``cophenetic_spearman``: Pearson and Spearman
          correlation, over all leaf pairs, between the patristic (cophenetic) distances
          of ``a`` and of ``b``; ``None`` with ``cophenetic=False``.

    Raises
    ------
    ResourceError
        Up front, when the cophenetic correlations would need more than ``memory``
        bytes (about 48 n^2: 100,000 leaves need 447 GiB); RF, quartets and triplets
        take O(n log n) memory at any size.
    """
    _check_leaves(a, b)
    n = len(a.leaves)
    need = 48 * n * n
    if cophenetic and need > memory:
        raise ResourceError(
            f"comparing trees of {n:,} leaves: the cophenetic correlations need the "
            f"{n:,} x {n:,} distance matrices, about {need / 2**30:.1f} GiB, over the "
            f"{memory / 2**30:.1f} GiB allowed",
            hint="compare without the cophenetic correlations (cophenetic=False)",
        )
    na, nb, shared = _split_counts(a, b, rooted)
    d = na + nb - 2 * shared
    out: dict[str, float | None] = {
        "rf": float(d),
        "nrf": 0.0 if na + nb == 0 else d / (na + nb),
    }
    exact = n <= COMPARE_EXACT_MAX
    if exact:
        out["quartet"] = quartet_distance(a, b)
    else:
        out["quartet"], out["quartet_se"] = quartet_distance_estimate(
            a, b, samples=COMPARE_SAMPLES, seed=seed
        )
    if not (a.rooted and b.rooted):
        out["triplet"] = None
    elif exact:
        out["triplet"] = triplet_distance(a, b)
    else:
        out["triplet"], out["triplet_se"] = triplet_distance_estimate(
            a, b, samples=COMPARE_SAMPLES, seed=seed
        )
    out["cophenetic_pearson"] = out["cophenetic_spearman"] = None
    if cophenetic:
        order = sorted(a.leaves)
        iu = np.triu_indices(n, 1)
        x = a.patristic_distances(order)[1][iu]
        y = b.patristic_distances(order)[1][iu]
        out["cophenetic_pearson"] = pearson(x, y)
        out["cophenetic_spearman"] = spearman(x, y)
    return out
