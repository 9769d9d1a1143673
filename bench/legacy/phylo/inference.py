"""Distance-based tree inference: neighbor joining and UPGMA.

Both work in place on one float64 working matrix whose active part is its leading
``r x r`` block: a joined pair's new row overwrites the lower index and the last active
row is swapped into the higher one, so no per-step copies are made.

Neighbor joining finds the pair minimising ``Q(i, j) = (r - 2) D(i, j) - R(i) - R(j)``
exactly, but without scanning the whole matrix at every step. With ``S = R / (r - 2)``,
``Q / (r - 2) = D(i, j) - S(i) - S(j)``, and each row i gets a lower bound on its best value
from two cheap summaries (in the spirit of RapidNJ, Simonsen, Mailund & Pedersen 2008):

* columns are grouped by S (16 groups, regrouped every r/4 steps); per row and group the
  smallest D is kept, so ``min_j D(i, j) - S(j) >= min_g (minD(i, g) - max_{j in g} S(j))``;
* at each regrouping the exact row minima of ``D(i, j) - S(j)`` are stored; S drifts a
  little per step, so they stay valid after subtracting the largest drift since.

Minima over columns that have since been merged away stay valid (they are over a
superset), and a new cluster's column and row are folded in as they are made. Only rows
whose bound beats the best value found so far are scanned (typically a few dozen of
n = 1,000). Below 128 clusters a plain full scan is used.
"""

from __future__ import annotations

from collections.abc import Sequence

import networkx as nx
import numpy as np

from legacy.phylo.tree import Phylogeny, _NameGen, _no_gc

__all__ = ["neighbor_joining", "upgma"]

# Tuned on Yule-tree distances plus noise, n = 250..1000 (a flat optimum).
_GROUPS = 16  # column groups for the NJ search bound
_REBUILD = 16  # regroup at most every this many steps...
_REBUILD_FRACTION = 4  # ...or after r / this steps, whichever is larger
_FULL_SCAN = 128  # at or below this many clusters a plain full scan is cheaper
_ONE_SHOT = 256  # candidate rows scanned in one block (more: in growing chunks)


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
    """Graph from parent/length arrays over nodes 0..n-1 (leaves) and n.. (internal)."""
    n = len(labels)
    gen = _NameGen(set(labels))
    names = labels + [gen() for _ in range(len(parent) - n)]
    with _no_gc():
        g = nx.DiGraph(rooted=rooted)
        g.add_node(names[root], label=None)
        # children sorted by node index give a deterministic order
        kids: list[list[int]] = [[] for _ in names]
        for c, p in enumerate(parent):
            if p >= 0:
                kids[p].append(c)
        stack = [root]
        while stack:
            v = stack.pop()
            for c in kids[v]:
                g.add_node(names[c], **({} if c < n else {"label": None}))
                g.add_edge(names[v], names[c], length=float(length[c]))
            stack.extend(reversed(kids[v]))
        return Phylogeny(g)


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
    O(n^3) time in the worst case, O(n^2) memory; the row bounds (module notes) usually
    skip most rows, so typical runs are much faster than a full scan. Ties are broken
    deterministically (first pair in row-major order among the rows scanned).
    For an additive (tree-metric) matrix the true tree and branch lengths are recovered.
    """
    D, labels = _check_matrix(D, labels)
    n = len(labels)
    parent = [-1] * (2 * n - 2 if n >= 3 else n + 1)
    length = [0.0] * len(parent)
    if n == 1:
        return _build(labels, [-1], [0.0], 0, rooted=False)
    if n == 2:
        parent[:2] = [2, 2]
        length[:2] = [D[0, 1] / 2.0, D[0, 1] / 2.0]
        return _build(labels, parent, length, 2, rooted=False)
    W = D.copy()
    R = W.sum(axis=1)
    np.fill_diagonal(W, np.inf)
    node = list(range(n))  # output node of each active row
    G = _GROUPS
    grp = np.zeros(n, dtype=np.int64)  # column group of each active position
    MT = np.empty((G, n))  # MT[g, i] <= min of W[i, j] over the columns j of group g
    since = n  # steps since the groups were last rebuilt (n: build them at once)
    Sref = np.zeros(n)  # S of each column when its terms entered m
    m = np.empty(n)  # m[i] <= min over columns j of W[i, j] - Sref[j]
    nxt = n
    r = n
    while r > 3:
        Wa = W[:r, :r]
        S = R[:r] * (1.0 / (r - 2))
        bounded = r > _FULL_SCAN
        if not bounded:
            T = Wa - S
            i = int(np.argmin(T.min(axis=1) - S))
            j = int(np.argmin(T[i]))
        else:
            if since >= max(_REBUILD, r // _REBUILD_FRACTION):
                # regroup columns by current S so each group's max S is a tight bound
                order = np.argsort(S)
                grp[order] = np.arange(r) * G // r
                groups, starts = np.unique(grp[order], return_index=True)
                MT[:, :r] = np.inf
                MT[groups, :r] = np.minimum.reduceat(Wa[order], starts, axis=0)
                Sref[:r] = S
                m[:r] = (Wa - S).min(axis=1)
                since = 0
            since += 1
            smax = np.full(G, -np.inf)
            np.maximum.at(smax, grp[:r], S)
            bound = (MT[:, :r] - smax[:, None]).min(axis=0)
            # second bound: exact row minima at the last rebuild, less how far S has drifted
            np.maximum(bound, m[:r] - (S - Sref[:r]).max(), out=bound)
            bound -= S
            # scan the row with the smallest bound first; then only rows whose bound can
            # still beat the best value (in growing chunks, most promising first)
            i = int(bound.argmin())
            row = Wa[i] - S
            j = int(row.argmin())
            best = row[j] - S[i]
            bound[i] = np.inf
            cand = np.flatnonzero(bound < best)
            if 0 < cand.size <= _ONE_SHOT:
                sub = Wa[cand]
                sub -= S
                sub -= S[cand, None]
                ci, cj = divmod(int(np.argmin(sub)), r)
                if sub[ci, cj] < best:
                    i, j = int(cand[ci]), cj
            elif cand.size:
                cand = cand[np.argsort(bound[cand])]
                start, chunk = 0, _ONE_SHOT
                while start < cand.size:
                    rows = cand[start : start + chunk]
                    rows = rows[bound[rows] < best]
                    if rows.size == 0:
                        break
                    sub = Wa[rows]
                    sub -= S
                    sub -= S[rows, None]
                    ci, cj = divmod(int(np.argmin(sub)), r)
                    if sub[ci, cj] < best:
                        best = sub[ci, cj]
                        i, j = int(rows[ci]), cj
                    start += chunk
                    chunk *= 2
        if j < i:
            i, j = j, i
        dij = W[i, j]
        li = 0.5 * dij + (R[i] - R[j]) / (2.0 * (r - 2))
        u = nxt
        nxt += 1
        parent[node[i]] = u
        parent[node[j]] = u
        length[node[i]] = li
        length[node[j]] = dij - li
        # distances from the new cluster u; R_k changes by d(k,u) - d(k,i) - d(k,j)
        du = Wa[i] + Wa[j]
        du -= dij
        du *= 0.5
        du[i] = du[j] = 0.0
        R[:r] -= du
        R[:r] -= dij
        R[i] = du.sum()
        du[i] = du[j] = np.inf
        Wa[i] = du
        Wa[:, i] = du
        if bounded and r - 1 > _FULL_SCAN:
            # group minima stay valid lower bounds when columns leave; u joins i's group
            gi = grp[i]
            np.minimum(MT[gi, :r], du, out=MT[gi, :r])
            MT[:, i] = np.inf
            np.minimum.at(MT[:, i], grp[:r], du)
            Sref[i] = R[i] / (r - 3)  # u's S at the next step
            np.minimum(m[:r], du - Sref[i], out=m[:r])
            m[i] = (du - Sref[:r]).min()
        # drop row j by moving the last active row into it
        last = r - 1
        if j != last:
            Wa[j] = Wa[last]
            Wa[:, j] = Wa[:, last]
            W[j, j] = np.inf
            R[j] = R[last]
            node[j] = node[last]
            MT[:, j] = MT[:, last]
            Sref[j] = Sref[last]
            m[j] = m[last]
            grp[j] = grp[last]
        node[i] = u
        node.pop()
        r -= 1
    a, b, c = 0, 1, 2
    la = 0.5 * (W[a, b] + W[a, c] - W[b, c])
    lb = W[a, b] - la
    lc = W[a, c] - la
    centre = nxt
    for k, x in ((a, la), (b, lb), (c, lc)):
        parent[node[k]] = centre
        length[node[k]] = x
    return _build(labels, parent, length, centre, rooted=False)


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
    Row minima are maintained between merges (average linkage never makes a distance
    smaller than both of its parts), so each step costs O(n) plus a rescan of rows whose
    nearest cluster was merged: O(n^2) typical, O(n^3) worst case.
    """
    D, labels = _check_matrix(D, labels)
    n = len(labels)
    if n == 1:
        return _build(labels, [-1], [0.0], 0, rooted=True)
    W = D.copy()
    np.fill_diagonal(W, np.inf)
    size = np.ones(n)
    height = np.zeros(n)
    node = list(range(n))
    parent = [-1] * (2 * n - 1)
    hnode = [0.0] * (2 * n - 1)
    rowarg = np.argmin(W, axis=1)
    rowmin = W[np.arange(n), rowarg]
    nxt = n
    r = n
    while r > 1:
        Wa = W[:r, :r]
        i = int(np.argmin(rowmin[:r]))
        j = int(rowarg[i])
        if j < i:
            i, j = j, i
        h = 0.5 * W[i, j]
        u = nxt
        nxt += 1
        parent[node[i]] = u
        parent[node[j]] = u
        hnode[u] = max(h, height[i], height[j])
        si, sj = size[i], size[j]
        du = (si * Wa[i] + sj * Wa[j]) / (si + sj)
        du[i] = du[j] = np.inf
        Wa[i] = du
        Wa[:, i] = du
        size[i] = si + sj
        height[i] = hnode[u]
        stale = (rowarg[:r] == i) | (rowarg[:r] == j)
        better = du < rowmin[:r]
        rowmin[:r] = np.where(better, du, rowmin[:r])
        rowarg[:r] = np.where(better, i, rowarg[:r])
        stale[i] = True
        last = r - 1
        if j != last:
            Wa[j] = Wa[last]
            Wa[:, j] = Wa[:, last]
            W[j, j] = np.inf
            size[j] = size[last]
            height[j] = height[last]
            node[j] = node[last]
            rowmin[j] = rowmin[last]
            rowarg[j] = rowarg[last]
            stale[j] = stale[last]
        node[i] = u
        node.pop()
        r -= 1
        if r > 1:
            ra = rowarg[:r]
            ra[ra == last] = j
            stale = np.flatnonzero(stale[:r])
            if stale.size:
                block = W[stale, :r]
                a = np.argmin(block, axis=1)
                rowarg[stale] = a
                rowmin[stale] = block[np.arange(stale.size), a]
    root = nxt - 1
    length = [0.0] * len(parent)
    for c, p in enumerate(parent):
        if p >= 0:
            length[c] = hnode[p] - hnode[c]
    return _build(labels, parent, length, root, rooted=True)
