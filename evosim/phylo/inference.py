"""Distance-based tree inference: neighbor joining and UPGMA.

Neighbor joining finds, at every step, the pair minimising ``Q(i, j) = (r - 2) D(i, j) -
R(i) - R(j)`` over the r clusters left, exactly, without scanning every pair: with
``S = R / (r - 2)``, ``Q / (r - 2) = D(i, j) - S(i) - S(j)``. As in RapidNJ (Simonsen,
Mailund & Pedersen 2008), each cluster's row is kept sorted, here by ``D(i, j) - Sref(j)``
with ``Sref`` the S of each cluster when the rows were last sorted (every r/4 steps, or
when it was made). S drifts a little per step, so ``D(i, j) - S(j) >= key - drift`` with
``drift = max_j S(j) - Sref(j)``, and a row is scanned only until ``key - drift - S(i)``
reaches the best value found: a few entries per row on tree-like and on random-point
input alike. A pair sits in the row of its younger cluster (leaves: the later one), dead
clusters are skipped, and a new cluster's row is sorted when it is made. At or below 256
clusters every pair is scanned. The loop is compiled with numba (cached on disk).
"""

from __future__ import annotations

from collections.abc import Sequence

import numba
import numpy as np
from scipy.cluster.hierarchy import linkage
from scipy.spatial.distance import squareform

from evosim.phylo.tree import (
    _NAME,
    Phylogeny,
    _NameGen,
    _preorder_of_parents,
    _times_from_lengths,
)

__all__ = ["neighbor_joining", "upgma"]

#: Re-sort the rows at most every this many steps...
_REBUILD = 16
#: ...or after r / this steps, whichever is larger.
_REBUILD_FRACTION = 4
#: At or below this many clusters every pair is scanned: cheaper than keeping rows sorted
#: (250 random points: 5.4 ms against 8.2 ms with 64; bench/RESULTS.md).
_FULL_SCAN = 256


def _check_matrix(D: np.ndarray, labels: Sequence[str]) -> tuple[np.ndarray, list[str]]:
    D = np.asarray(D, dtype=float)
    labels = [str(x) for x in labels]
    if D.ndim != 2 or D.shape[0] != D.shape[1]:
        raise ValueError(f"distance matrix must be square [n, n], got shape {D.shape}")
    n = D.shape[0]
    if len(labels) != n:
        raise ValueError(f"{len(labels)} labels for a {n}x{n} distance matrix")
    if n == 0:
        raise ValueError("distance matrix is empty")
    if len(set(labels)) != n:
        seen: set[str] = set()
        dup = sorted({x for x in labels if x in seen or seen.add(x)})
        raise ValueError(f"duplicate labels: {dup[:10]}")
    if not np.all(np.isfinite(D)):
        raise ValueError("distance matrix contains NaN or infinite values")
    scale = float(np.abs(D).max()) if n else 0.0
    tol = 1e-9 * max(scale, 1e-300)
    if np.abs(D - D.T).max() > tol:
        raise ValueError("distance matrix is not symmetric")
    if np.abs(np.diag(D)).max() > tol:
        raise ValueError("distance matrix has a nonzero diagonal")
    if D.min() < -tol:
        raise ValueError(f"distance matrix has negative entries (min {D.min():.3g})")
    return (D + D.T) / 2.0, labels


def _build(
    labels: list[str],
    parent: list[int],
    length: list[float],
    root: int,
    *,
    rooted: bool,
) -> Phylogeny:
    """Tree from parent/length arrays over nodes 0..n-1 (leaves) and n.. (internal).

    Children are ordered by node index; internal nodes get fresh unlabelled names.
    """
    n = len(labels)
    gen = _NameGen(set(labels))
    m = len(parent)
    par = np.asarray(parent, dtype=np.int64)
    par[root] = -1
    order = _preorder_of_parents(par)
    if int(order[0]) != root:  # pragma: no cover - the root is the only parentless node
        raise AssertionError("root mismatch")
    pos = np.empty(m, dtype=np.int64)
    pos[order] = np.arange(m)
    p = par[order]
    new_parent = np.where(p >= 0, pos[np.maximum(p, 0)], -1)
    names_all = labels + [gen() for _ in range(m - n)]
    ol = order.tolist()
    names = [names_all[i] for i in ol]
    lengths = np.asarray(length, dtype=np.float64)[order]
    lengths[0] = 0.0
    labs = [_NAME if i < n else None for i in ol]
    time = _times_from_lengths(new_parent, lengths)
    return Phylogeny._new(names, new_parent, time, lengths, labels=labs, rooted=rooted)


def neighbor_joining(D: np.ndarray, labels: Sequence[str]) -> Phylogeny:
    """Neighbor-joining tree (Saitou & Nei 1987; Studier & Keppler 1988 form).

    Parameters
    ----------
    D : array_like, [n, n]
        Symmetric distances with a zero diagonal.
    labels : sequence of str
        Leaf names, in the order of D's rows.

    Returns
    -------
    Phylogeny
        Unrooted (``graph.graph["rooted"] is False``), represented with its root at the
        centre of the last three clusters. Branch lengths are the exact NJ estimates,
        including any negative ones (not clamped to 0, so that an additive matrix is
        reproduced exactly; clamp downstream if a method needs non-negative lengths).
        Internal nodes are named ``n1, n2, ...`` (not written to Newick).

    Notes
    -----
    O(n^3) time in the worst case, O(n^2) memory; the sorted-row bounds (module notes)
    stop each row's scan after a few entries, so typical runs take O(n^2 log n). Ties
    are broken deterministically (the first pair found in slot order). For an additive
    (tree-metric) matrix the true tree and branch lengths are recovered.
    """
    D, labels = _check_matrix(D, labels)
    n = len(labels)
    if n == 1:
        return _build(labels, [-1], [0.0], 0, rooted=False)
    if n == 2:
        half = D[0, 1] / 2.0
        return _build(labels, [2, 2, -1], [half, half, 0.0], 2, rooted=False)
    parent, length, centre = _nj_kernel(
        np.ascontiguousarray(D), _REBUILD, _REBUILD_FRACTION, _FULL_SCAN
    )
    return _build(labels, parent.tolist(), length.tolist(), int(centre), rooted=False)


@numba.njit(cache=True, nogil=True)
def _sort_rows(D, r, at, sref, ent_key, ent_j, ptr, end):  # noqa: ANN001, ANN202
    """Row of slot s: the slots t > s, by D[s, t] - Sref[t] (each pair stored once)."""
    pos = 0
    for s in range(r):
        k = r - 1 - s
        i = at[s]
        if k > 0:
            keys = np.empty(k)
            for a in range(k):
                keys[a] = D[s, s + 1 + a] - sref[at[s + 1 + a]]
            order = np.argsort(keys)
            for a in range(k):
                ent_key[pos + a] = keys[order[a]]
                ent_j[pos + a] = at[s + 1 + order[a]]
        ptr[i] = pos
        end[i] = pos + k
        pos += k
    return pos


@numba.njit(cache=True, nogil=True)
def _nj_kernel(D0, rebuild_min, rebuild_fraction, full_scan):  # noqa: ANN001, ANN202
    """NJ joins of ``D0 [n, n]`` (n >= 3): (parent [2n-2], branch length [2n-2], centre).

    Nodes 0..n-1 are the leaves, n.. the clusters in the order they are made, the last
    one the centre joining the final three.
    """
    n = D0.shape[0]
    D = D0.copy()
    m = 2 * n - 2
    parent = np.full(m, -1, np.int64)
    length = np.zeros(m)
    alive = np.zeros(m, np.bool_)
    alive[:n] = True
    slot = np.zeros(m, np.int64)
    at = np.zeros(n, np.int64)
    R = np.zeros(n)
    sref = np.zeros(m)
    for s in range(n):
        slot[s] = s
        at[s] = s
        acc = 0.0
        for t in range(n):
            acc += D[s, t]
        R[s] = acc
    ptr = np.zeros(m, np.int64)
    end = np.zeros(m, np.int64)
    ent_key = np.empty(0)
    ent_j = np.empty(0, np.int32)
    pos = 0
    since = 1 << 62
    nxt = n
    r = n
    buf = np.empty(n)
    bufj = np.empty(n, np.int64)
    while r > 3:
        inv = 1.0 / (r - 2)
        best = np.inf
        si = -1
        sj = -1
        if r <= full_scan:
            for s in range(r):
                base = R[s] * inv
                for t in range(s + 1, r):
                    q = D[s, t] - base - R[t] * inv
                    if q < best:
                        best = q
                        si = s
                        sj = t
        else:
            every = max(rebuild_min, r // rebuild_fraction)
            if since >= every:
                for s in range(r):
                    sref[at[s]] = R[s] * inv
                ent_key = np.empty(r * (r - 1) // 2 + (every + 1) * r)
                ent_j = np.empty(ent_key.size, np.int32)
                pos = _sort_rows(D, r, at, sref, ent_key, ent_j, ptr, end)
                since = 0
            since += 1
            drift = -np.inf  # max over clusters of S(now) - Sref
            for s in range(r):
                v = R[s] * inv - sref[at[s]]
                if v > drift:
                    drift = v
            # a first bound from the front of each row, then the bounded scans
            for s in range(r):
                i = at[s]
                p = ptr[i]
                e = end[i]
                while p < e and not alive[ent_j[p]]:
                    p += 1
                ptr[i] = p
                if p < e:
                    t = slot[ent_j[p]]
                    q = D[s, t] - R[s] * inv - R[t] * inv
                    if q < best:
                        best = q
                        si = s
                        sj = t
            for s in range(r):
                i = at[s]
                base = R[s] * inv
                p = ptr[i]
                e = end[i]
                # D - S_j >= key - drift: once key - drift - S_i reaches best, stop
                lim = best + base + drift
                while p < e:
                    if ent_key[p] >= lim:
                        break
                    j = ent_j[p]
                    if alive[j]:
                        t = slot[j]
                        q = D[s, t] - base - R[t] * inv
                        if q < best:
                            best = q
                            si = s
                            sj = t
                            lim = best + base + drift
                    p += 1
        if sj < si:
            si, sj = sj, si
        bi = at[si]
        bj = at[sj]
        dij = D[si, sj]
        li = 0.5 * dij + (R[si] - R[sj]) / (2.0 * (r - 2))
        u = nxt
        nxt += 1
        parent[bi] = u
        parent[bj] = u
        length[bi] = li
        length[bj] = dij - li
        ru = 0.0
        for s in range(r):
            if s != si and s != sj:
                du = 0.5 * (D[si, s] + D[sj, s] - dij)
                R[s] -= du + dij
                D[si, s] = du
                D[s, si] = du
                ru += du
        R[si] = ru
        D[si, si] = 0.0
        alive[bi] = False
        alive[bj] = False
        alive[u] = True
        slot[u] = si
        at[si] = u
        last = r - 1
        if sj != last:
            for s in range(r):
                D[sj, s] = D[last, s]
            for s in range(r):
                D[s, sj] = D[s, last]
            D[sj, sj] = 0.0
            R[sj] = R[last]
            w = at[last]
            at[sj] = w
            slot[w] = sj
        r -= 1
        if r > full_scan and since < max(rebuild_min, r // rebuild_fraction):
            # u's row: every other cluster, by D - Sref (u's own Sref: S at the next step)
            sref[u] = R[si] / (r - 2)
            k = 0
            for s in range(r):
                if s != si:
                    buf[k] = D[si, s] - sref[at[s]]
                    bufj[k] = at[s]
                    k += 1
            if pos + k > ent_key.size:
                since = 1 << 62  # out of room: rebuild at the next step
            else:
                order = np.argsort(buf[:k])
                for a in range(k):
                    ent_key[pos + a] = buf[order[a]]
                    ent_j[pos + a] = bufj[order[a]]
                ptr[u] = pos
                end[u] = pos + k
                pos += k
    a, b, c = at[0], at[1], at[2]
    la = 0.5 * (D[0, 1] + D[0, 2] - D[1, 2])
    parent[a] = nxt
    parent[b] = nxt
    parent[c] = nxt
    length[a] = la
    length[b] = D[0, 1] - la
    length[c] = D[0, 2] - la
    return parent, length, nxt


def upgma(D: np.ndarray, labels: Sequence[str]) -> Phylogeny:
    """UPGMA (average linkage; Sokal & Michener 1958): a rooted ultrametric tree.

    Parameters
    ----------
    D : array_like, [n, n]
        Symmetric distances with a zero diagonal.
    labels : sequence of str
        Leaf names, in the order of D's rows.

    Returns
    -------
    Phylogeny
        Rooted; each merge of clusters at distance d sits at height d / 2 above the leaves,
        so an ultrametric D is reproduced exactly. The root is at time 0 and all leaves at
        the tree height. Internal nodes are named ``n1, n2, ...`` (not written to Newick).

    Notes
    -----
    The merges are scipy's ``linkage(..., method="average")`` (O(n^2) with the
    nearest-neighbour chain algorithm).
    """
    D, labels = _check_matrix(D, labels)
    n = len(labels)
    if n == 1:
        return _build(labels, [-1], [0.0], 0, rooted=True)
    Z = linkage(squareform(D, checks=False), method="average")
    parent = [-1] * (2 * n - 1)
    height = [0.0] * (2 * n - 1)
    for k, (a, b, d, _) in enumerate(Z.tolist()):
        u = n + k
        a, b = int(a), int(b)
        parent[a] = parent[b] = u
        height[u] = max(0.5 * d, height[a], height[b])
    length = [height[p] - height[c] if p >= 0 else 0.0 for c, p in enumerate(parent)]
    return _build(labels, parent, length, 2 * n - 2, rooted=True)
