"""A tree as flat arrays, and the vectorised pass that carries values from the root down.

Every trait model here is a Markov process along branches whose transition over one
branch is affine in the parent's value::

    x_child = a_child * x_parent + b_child        (a: [n], b: [n, dim])

Brownian motion has ``a = 1`` and ``b`` = the branch's Gaussian increment; the exact
Ornstein-Uhlenbeck transition has ``a = exp(-alpha t)``. :func:`propagate` solves the
recursion for all nodes without a Python loop over nodes or traits, in one of two ways:

- **by level** (the default): node depths are found by pointer jumping on a 1-D integer
  array, then one whole-array step per level of the tree sets every node of that level
  from its parent. Total work O(n dim), plus one NumPy call per level (a birth-death
  tree of 100,000 species has ~60 levels).
- **by pointer jumping** (Wyllie's list ranking applied to root paths), for very deep
  trees (more than ``max_levels`` levels, e.g. caterpillars): each round composes every
  node's affine map with its current ancestor's and doubles the ancestor distance, so
  depth ``h`` takes ``ceil(log2 h) + 1`` rounds, each O(n dim).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["TreeArrays", "node_depths", "propagate", "tree_arrays"]


@dataclass(frozen=True)
class TreeArrays:
    """A rooted tree flattened in preorder.

    Attributes
    ----------
    nodes
        Node names in the tree's preorder (root first, parents before children).
    parent
        ``[n]`` int: index of each node's parent in ``nodes``; ``-1`` for the root.
    length
        ``[n]`` float: length of the branch above each node (0 at the root).
    time
        ``[n]`` float: time of each node since the root.
    """

    nodes: list[str]
    parent: np.ndarray
    length: np.ndarray
    time: np.ndarray

    @property
    def parent_time(self) -> np.ndarray:
        """``[n]`` float: time of each node's parent (the root's own time at the root)."""
        return np.where(self.parent >= 0, self.time[np.maximum(self.parent, 0)], self.time)

    @property
    def n(self) -> int:
        """Number of nodes."""
        return len(self.nodes)


def tree_arrays(tree) -> TreeArrays:  # noqa: ANN001 - a Phylogeny
    """Flatten a :class:`~evosim.phylo.Phylogeny` into :class:`TreeArrays`.

    Parameters
    ----------
    tree
        A rooted tree (``evosim.phylo.Phylogeny``).

    Returns
    -------
    TreeArrays

    Raises
    ------
    ValueError
        A branch length is negative or not finite.
    """
    nodes = list(tree.preorder())
    index = {name: i for i, name in enumerate(nodes)}
    graph = tree.graph
    n = len(nodes)
    time = np.fromiter((graph.nodes[v].get("time", 0.0) for v in nodes), dtype=np.float64, count=n)
    edges = list(graph.edges(data="length", default=0.0))
    child = np.fromiter((index[c] for _, c, _ in edges), dtype=np.int64, count=len(edges))
    parent = np.full(n, -1, dtype=np.int64)
    parent[child] = np.fromiter((index[p] for p, _, _ in edges), dtype=np.int64, count=len(edges))
    length = np.zeros(n, dtype=np.float64)
    length[child] = np.fromiter((x for _, _, x in edges), dtype=np.float64, count=len(edges))
    if not np.all(np.isfinite(length)) or np.any(length < 0):
        bad = nodes[int(np.flatnonzero(~(np.isfinite(length) & (length >= 0)))[0])]
        raise ValueError(f"branch above node {bad!r} has an invalid length")
    if np.count_nonzero(parent < 0) != 1:
        raise ValueError("the tree must have exactly one root")
    return TreeArrays(nodes=nodes, parent=parent, length=length, time=time)


def node_depths(parent: np.ndarray) -> np.ndarray:
    """``[n]`` number of edges from the root to each node (``parent[i] = -1`` at the root).

    Pointer jumping on integers: ``ceil(log2 depth) + 1`` rounds of 1-D array operations.
    """
    anc = np.asarray(parent, dtype=np.int64).copy()
    roots = np.flatnonzero(anc < 0)
    anc[roots] = roots
    depth = (anc != np.arange(len(anc))).astype(np.int64)
    while True:
        far = anc[anc]
        if np.array_equal(far, anc):
            return depth
        depth += depth[anc]  # the root's depth is 0, so pointers at it add nothing
        anc = far


def propagate(
    parent: np.ndarray, a: np.ndarray | float, b: np.ndarray, *, max_levels: int = 4096
) -> np.ndarray:
    """Solve ``x[i] = a[i] * x[parent[i]] + b[i]`` (root: ``x = b``) for every node at once.

    Parameters
    ----------
    parent
        ``[n]`` int parent index of each node, ``-1`` at the (single) root.
    a
        ``[n]`` multiplicative coefficient of each branch (a scalar broadcasts).
    b
        ``[n, dim]`` additive term of each branch; the root's row is the root value.
    max_levels
        Trees with more levels than this are solved by pointer jumping instead of level
        by level (see the module notes); both give the same values up to rounding.

    Returns
    -------
    np.ndarray
        ``[n, dim]`` values at every node.
    """
    parent = np.asarray(parent, dtype=np.int64)
    n = len(parent)
    a = np.broadcast_to(np.asarray(a, dtype=np.float64), (n,))
    b = np.asarray(b, dtype=np.float64)
    depth = node_depths(parent)
    if depth.max(initial=0) > max_levels:
        return _pointer_jumping(parent, a, b)
    x = b.copy()
    order = np.argsort(depth, kind="stable")
    bounds = np.cumsum(np.bincount(depth))
    for lo, hi in zip(bounds[:-1], bounds[1:]):  # levels 1, 2, ...
        idx = order[lo:hi]
        x[idx] += a[idx, None] * x[parent[idx]]
    return x


def _pointer_jumping(parent: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    n = len(parent)
    b = np.array(b, dtype=np.float64, copy=True)
    a = np.array(np.broadcast_to(np.asarray(a, dtype=np.float64), (n,)), copy=True)
    anc = np.asarray(parent, dtype=np.int64).copy()
    roots = np.flatnonzero(anc < 0)
    anc[roots] = roots
    # The root's map is the constant b_root: a = 0 makes every composition with it
    # constant, so once a node's ancestor pointer reaches the root it stops changing.
    a[roots] = 0.0
    # Preallocated buffers and np.take: fresh temporaries of [n, dim] cost ~5x more
    # (page faults) than the arithmetic itself.
    gathered = np.empty_like(b)
    a_gathered = np.empty_like(a)

    def compose() -> None:
        np.take(b, anc, axis=0, out=gathered)
        np.multiply(gathered, a[:, None], out=gathered)
        np.add(b, gathered, out=b)
        np.take(a, anc, out=a_gathered)
        np.multiply(a, a_gathered, out=a)

    while np.any(anc != anc[anc]):
        compose()
        anc = anc[anc]
    # One last composition for nodes whose pointer just reached the root.
    compose()
    return b
