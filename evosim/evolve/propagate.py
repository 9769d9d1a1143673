"""A tree as flat arrays, and the vectorised pass that carries values from the root down.

Every trait model here is a Markov process along branches whose transition over one
branch is affine in the parent's value::

    x_child = a_child * x_parent + b_child        (a: [n], b: [n, dim])

Brownian motion has ``a = 1`` and ``b`` = the branch's Gaussian increment; the exact
Ornstein-Uhlenbeck transition has ``a = exp(-alpha t)``. :func:`propagate` solves the
recursion for all nodes at once by pointer jumping (Wyllie's list ranking, applied to
the root paths of a tree): each round composes every node's affine map with its
current ancestor's and doubles the ancestor distance, so a tree of depth ``h`` takes
``ceil(log2 h) + 1`` rounds of whole-array NumPy operations, with no Python loop over
nodes or traits, and a caterpillar tree costs no more rounds than a balanced one
would per level.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["TreeArrays", "tree_arrays", "propagate"]


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
    parent = np.full(len(nodes), -1, dtype=np.int64)
    length = np.zeros(len(nodes), dtype=np.float64)
    time = np.empty(len(nodes), dtype=np.float64)
    for i, name in enumerate(nodes):
        time[i] = graph.nodes[name].get("time", 0.0)
        for p in graph.predecessors(name):
            parent[i] = index[p]
            length[i] = graph.edges[p, name].get("length", 0.0)
    if not np.all(np.isfinite(length)) or np.any(length < 0):
        bad = nodes[int(np.flatnonzero(~(np.isfinite(length) & (length >= 0)))[0])]
        raise ValueError(f"branch above node {bad!r} has an invalid length")
    if np.count_nonzero(parent < 0) != 1:
        raise ValueError("the tree must have exactly one root")
    return TreeArrays(nodes=nodes, parent=parent, length=length, time=time)


def propagate(parent: np.ndarray, a: np.ndarray | float, b: np.ndarray) -> np.ndarray:
    """Solve ``x[i] = a[i] * x[parent[i]] + b[i]`` (root: ``x = b``) for every node at once.

    Parameters
    ----------
    parent
        ``[n]`` int parent index of each node, ``-1`` at the (single) root.
    a
        ``[n]`` multiplicative coefficient of each branch (a scalar broadcasts).
    b
        ``[n, dim]`` additive term of each branch; the root's row is the root value.

    Returns
    -------
    np.ndarray
        ``[n, dim]`` values at every node.
    """
    n = len(parent)
    b = np.array(b, dtype=np.float64, copy=True)
    a = np.array(np.broadcast_to(np.asarray(a, dtype=np.float64), (n,)), copy=True)
    anc = np.asarray(parent, dtype=np.int64).copy()
    roots = np.flatnonzero(anc < 0)
    anc[roots] = roots
    # The root's map is the constant b_root: a = 0 makes every composition with it
    # constant, so once a node's ancestor pointer reaches the root it stops changing.
    a[roots] = 0.0
    while np.any(anc != anc[anc]):
        b += a[:, None] * b[anc]
        a *= a[anc]
        anc = anc[anc]
    # One last composition for nodes whose pointer just reached the root.
    b += a[:, None] * b[anc]
    return b
