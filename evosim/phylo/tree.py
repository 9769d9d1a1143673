"""The :class:`Phylogeny`: a rooted tree stored as preorder index arrays.

Conventions (shared by every stage of evosim):

* edges point parent -> child; every node has a unique ``str`` name;
* node attribute ``"time"``: time since the root (root 0), growing toward the present;
* edge attribute ``"length"``: branch length (float); ``"length_missing": True`` marks a
  length that was absent in the Newick source (stored as 0.0, not written back);
* leaf attribute ``"extinct"``: ``True`` only for extinct lineages of a birth-death tree;
* node attribute ``"label"`` (optional): the text written to Newick for that node. When a
  node has no ``"label"`` key its name is written; ``label=None`` writes nothing (used for
  the generated names of unlabelled Newick internals, so a round trip does not add labels);
* ``graph.graph["rooted"]``: ``False`` for trees whose root is arbitrary (NJ output).

Storage: the tree is a set of arrays in preorder (every parent before its children,
children in their stored order), as scikit-bio's ``TreeNode.to_array()``: names, parent
index, branch length, time, and the derived child lists and leaf ranges
(:meth:`Phylogeny.to_arrays`). Parsing, distances, splits and comparisons work on these
arrays. ``Phylogeny.graph`` (a ``networkx.DiGraph`` with the attributes above) is built on
first use and from then on holds the node attributes that may change (``extinct``,
``label``, and any others a caller adds); the structure, times and lengths are immutable.
"""

from __future__ import annotations

import gc
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import networkx as nx
import numpy as np

from evosim.phylo.newick import (
    NewickError,
    ParsedNewick,
    format_label,
    format_length,
    parse_newick,
)

__all__ = ["Phylogeny", "TreeArrays"]

#: Label placeholder: "no label of its own, write the node's name".
_NAME = object()


@contextmanager
def _no_gc() -> Iterator[None]:
    """Pause the cyclic GC while building many small objects (it would rescan them all)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


@dataclass(frozen=True)
class TreeArrays:
    """A tree as flat arrays in preorder (node ``i``'s parent has an index below ``i``).

    Attributes
    ----------
    names : list[str]
        ``[n]`` node names, root first.
    parent : np.ndarray
        ``[n]`` int64 parent index, -1 at the root.
    length : np.ndarray
        ``[n]`` float64 length of the branch above each node (0 at the root).
    time : np.ndarray
        ``[n]`` float64 time of each node since the root.
    is_leaf : np.ndarray
        ``[n]`` bool.
    child_ptr, child_idx : np.ndarray
        Children of node ``i`` (in order): ``child_idx[child_ptr[i]:child_ptr[i + 1]]``.
    leaf_lo, leaf_hi : np.ndarray
        ``[n]`` the leaves below node ``i`` are leaves ``leaf_lo[i]..leaf_hi[i] - 1`` in
        preorder (a clade is a contiguous range).
    leaf_nodes : np.ndarray
        ``[n_leaves]`` node index of each leaf, in preorder.
    depth : np.ndarray
        ``[n]`` edges from the root.
    size : np.ndarray
        ``[n]`` nodes in each subtree; node ``i``'s subtree is ``i .. i + size[i] - 1``.
    """

    names: list[str]
    parent: np.ndarray
    length: np.ndarray
    time: np.ndarray
    is_leaf: np.ndarray
    child_ptr: np.ndarray
    child_idx: np.ndarray
    leaf_lo: np.ndarray
    leaf_hi: np.ndarray
    leaf_nodes: np.ndarray
    depth: np.ndarray
    size: np.ndarray

    @property
    def n_nodes(self) -> int:
        return len(self.names)

    @property
    def n_children(self) -> np.ndarray:
        """``[n]`` number of children of each node."""
        return np.diff(self.child_ptr)


def _derive(names: list[str], parent: np.ndarray, length: np.ndarray, time: np.ndarray):
    """The :class:`TreeArrays` of a tree given in preorder."""
    n = len(names)
    is_leaf = np.ones(n, dtype=bool)
    is_leaf[parent[1:]] = False
    # children grouped by parent, each group in preorder (a stable sort keeps it)
    child_idx = np.argsort(parent[1:], kind="stable").astype(np.int64) + 1
    counts = np.bincount(parent[1:], minlength=n)
    child_ptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(counts, out=child_ptr[1:])
    depth = np.zeros(n, dtype=np.int64)
    size = np.ones(n, dtype=np.int64)
    pl = parent.tolist()
    dl = depth.tolist()
    for i in range(1, n):
        dl[i] = dl[pl[i]] + 1
    sl = size.tolist()
    for i in range(n - 1, 0, -1):  # reverse preorder: children before parents
        sl[pl[i]] += sl[i]
    depth = np.asarray(dl, dtype=np.int64)
    size = np.asarray(sl, dtype=np.int64)
    leaf_nodes = np.flatnonzero(is_leaf)
    rank = np.cumsum(is_leaf) - is_leaf  # leaves before each node, in preorder
    leaf_lo = rank.astype(np.int64)
    ends = np.arange(n) + size  # one past each subtree
    cum = np.concatenate([[0], np.cumsum(is_leaf)])
    leaf_hi = cum[ends].astype(np.int64)
    return TreeArrays(
        names, parent, length, time, is_leaf, child_ptr, child_idx, leaf_lo, leaf_hi,
        leaf_nodes, depth, size,
    )  # fmt: skip


class Phylogeny:
    """A rooted phylogeny.

    Parameters
    ----------
    graph : networkx.DiGraph
        Parent -> child edges forming one rooted tree. Missing ``time`` attributes are
        computed from edge lengths (root at 0); missing ``length`` attributes from times
        (or 0.0 when neither is given); missing ``extinct`` flags default to ``False``.
        The graph is used as is, not copied. (Trees read from Newick, grown by a model or
        inferred from distances are built from arrays directly, without a graph.)

    Raises
    ------
    ValueError
        If the graph is not a single rooted tree or a node name is not a str.
    """

    def __init__(self, graph: nx.DiGraph) -> None:
        if not isinstance(graph, nx.DiGraph):
            raise TypeError(f"Phylogeny needs a networkx.DiGraph, got {type(graph).__name__}")
        graph.graph.setdefault("rooted", True)
        with _no_gc():
            self._read_graph(graph)

    # ------------------------------------------------------------------ construction
    def _set(
        self,
        names: list[str],
        parent: np.ndarray,
        time: np.ndarray,
        length: np.ndarray,
        missing: np.ndarray,
        labels: list | None,
        extinct: np.ndarray | None,
        rooted: bool,
        root_length: float | None,
        graph: nx.DiGraph | None,
    ) -> None:
        self._names = names
        self._parent = parent
        self._time = time
        self._length = length
        self._missing = missing
        self._labels = labels
        self._extinct = extinct
        self._rooted = rooted
        self._root_length = root_length
        self._graph = graph
        self._arr: TreeArrays | None = None
        self._pos: dict[str, int] | None = None
        self._leaf_names: list[str] | None = None

    @classmethod
    def _new(
        cls,
        names: list[str],
        parent: np.ndarray,
        time: np.ndarray,
        length: np.ndarray,
        *,
        missing: np.ndarray | None = None,
        labels: list | None = None,
        extinct: np.ndarray | None = None,
        rooted: bool = True,
        root_length: float | None = None,
    ) -> Phylogeny:
        """From preorder arrays (trusted: no checks). ``labels`` entries: str, None or _NAME."""
        self = cls.__new__(cls)
        n = len(names)
        self._set(
            names,
            np.asarray(parent, dtype=np.int64),
            np.asarray(time, dtype=np.float64),
            np.asarray(length, dtype=np.float64),
            np.zeros(n, dtype=bool) if missing is None else np.asarray(missing, dtype=bool),
            [_NAME] * n if labels is None else labels,
            np.zeros(n, dtype=bool) if extinct is None else np.asarray(extinct, dtype=bool),
            bool(rooted),
            root_length,
            None,
        )
        return self

    def _read_graph(self, graph: nx.DiGraph) -> None:
        """Arrays from a graph (normalising missing times and lengths in the graph)."""
        names, parent = _preorder_of_graph(graph)
        nodes = graph.nodes
        pred = graph.pred
        n = len(names)
        need_time = any("time" not in nodes[v] for v in names)
        time = [0.0] * n
        length = [0.0] * n
        missing = [False] * n
        if need_time:
            nodes[names[0]]["time"] = 0.0
        else:
            time = [float(nodes[v]["time"]) for v in names]
        for k in range(1, n):
            v = names[k]
            p = names[parent[k]]
            edata = pred[v][p]
            if "length" not in edata:
                if not need_time:
                    edata["length"] = time[k] - time[parent[k]]
                else:
                    edata["length"] = 0.0
                    edata["length_missing"] = True
            length[k] = float(edata["length"])
            missing[k] = bool(edata.get("length_missing", False))
            if need_time:
                time[k] = time[parent[k]] + length[k]
                nodes[v]["time"] = time[k]
        par = np.asarray(parent, dtype=np.int64)
        is_leaf = np.ones(n, dtype=bool)
        is_leaf[par[1:]] = False
        for k in np.flatnonzero(is_leaf).tolist():
            nodes[names[k]].setdefault("extinct", False)
        self._set(
            names,
            par,
            np.asarray(time, dtype=np.float64),
            np.asarray(length, dtype=np.float64),
            np.asarray(missing, dtype=bool),
            None,
            None,
            bool(graph.graph.get("rooted", True)),
            graph.graph.get("root_length"),
            graph,
        )

    @classmethod
    def from_newick(cls, text: str) -> Phylogeny:
        """Parse a Newick string (see :mod:`evosim.phylo.newick` for the grammar).

        Leaves are named by their labels, which must be unique. Internal nodes are named by
        their label when it is unique, otherwise (unlabelled, or e.g. repeated support
        values) by a generated ``"n<k>"``; the original label is kept in ``"label"``.
        A root branch length, if given, is kept in ``graph.graph["root_length"]``.

        Raises
        ------
        NewickError
            On malformed text (message gives the character position) and on duplicate
            leaf names (message names them).
        """
        with _no_gc():
            return cls._from_parsed(parse_newick(text))

    @classmethod
    def _from_parsed(cls, p: ParsedNewick) -> Phylogeny:
        n = len(p.parent)
        parent = np.asarray(p.parent, dtype=np.int64)
        is_leaf = np.ones(n, dtype=bool)
        is_leaf[parent[1:]] = False
        leaf_flags = is_leaf.tolist()
        labels = p.label
        leaf_labels = [lab for lab, f in zip(labels, leaf_flags) if f and lab is not None]
        used = set(leaf_labels)
        if len(used) != len(leaf_labels):
            seen: set[str] = set()
            dups = sorted({x for x in leaf_labels if x in seen or seen.add(x)})
            shown = ", ".join(repr(x) for x in dups[:5]) + (" ..." if len(dups) > 5 else "")
            raise NewickError(f"duplicate leaf labels: {shown} (leaf names must be unique)")
        names: list[str | None] = [
            lab if f else None for lab, f in zip(labels, leaf_flags)
        ]  # fmt: skip
        for i in np.flatnonzero(~is_leaf).tolist():
            lab = labels[i]
            if lab is not None and lab not in used:
                used.add(lab)
                names[i] = lab
        if None in names:
            gen = _NameGen(used)
            names = [gen() if v is None else v for v in names]
        length = np.asarray([0.0 if x is None else x for x in p.length], dtype=np.float64)
        missing = np.array([x is None for x in p.length], dtype=bool)
        root_length = None if missing[0] else float(length[0])
        length[0] = 0.0
        missing[0] = False
        time = _times_from_lengths(parent, length)
        return cls._new(
            names,  # type: ignore[arg-type]
            parent,
            time,
            length,
            missing=missing,
            labels=list(labels),
            rooted=p.rooted,
            root_length=root_length,
        )

    @classmethod
    def _from_parent_arrays(
        cls,
        names: Sequence[str],
        parent: Sequence[int] | np.ndarray,
        time: Sequence[float] | np.ndarray,
        *,
        extinct: Sequence[bool] | np.ndarray | None = None,
        labels: Sequence[str | None] | None = None,
        rooted: bool = True,
        in_preorder: bool = False,
    ) -> Phylogeny:
        """Build from flat arrays in which every parent precedes its children.

        Branch lengths are ``time[child] - time[parent]``; children keep array order.
        ``in_preorder=True`` promises the arrays are already in preorder (children in
        array order), which skips the traversal.
        """
        parent = np.asarray(parent, dtype=np.int64)
        time = np.asarray(time, dtype=np.float64)
        names = list(names)
        n = len(names)
        ext = np.zeros(n, dtype=bool) if extinct is None else np.asarray(extinct, dtype=bool)
        labs = [_NAME] * n if labels is None else list(labels)
        if not in_preorder:
            order = _preorder_of_parents(parent)
            pos = np.empty(n, dtype=np.int64)
            pos[order] = np.arange(n)
            par = parent[order]
            parent = np.where(par >= 0, pos[np.maximum(par, 0)], -1)
            names = [names[i] for i in order.tolist()]
            time, ext = time[order], ext[order]
            labs = [labs[i] for i in order.tolist()]
        if n == 0:
            raise ValueError("a Phylogeny needs at least one node")
        length = np.zeros(n)
        length[1:] = time[1:] - time[parent[1:]]
        is_leaf = np.ones(n, dtype=bool)
        is_leaf[parent[1:]] = False
        return cls._new(
            names, parent, time, length, labels=labs, extinct=ext & is_leaf, rooted=rooted
        )

    # ------------------------------------------------------------------ arrays
    def _sync(self) -> None:
        """Re-read a graph whose nodes were added or removed (structure is meant to be fixed)."""
        g = self._graph
        if g is not None and len(g) != len(self._names):
            self._read_graph(g)

    def to_arrays(self) -> TreeArrays:
        """The tree as preorder index arrays (computed once; see :class:`TreeArrays`)."""
        self._sync()
        arr = self._arr
        if arr is None:
            arr = self._arr = _derive(self._names, self._parent, self._length, self._time)
        return arr

    def indices(self, names: Iterable[str]) -> np.ndarray:
        """Rows of :meth:`to_arrays` (preorder indices) of the named nodes, ``[k]`` int64.

        Raises
        ------
        KeyError
            Naming the first node that is not in the tree.
        """
        return np.fromiter((self._i(v) for v in names), dtype=np.int64)

    def _index(self) -> dict[str, int]:
        """Name -> preorder index."""
        self._sync()
        if self._pos is None:
            self._pos = dict(zip(self._names, range(len(self._names))))
        return self._pos

    def _i(self, name: str) -> int:
        try:
            return self._index()[name]
        except KeyError:
            raise KeyError(f"no node named {name!r} in the tree") from None

    def _label_list(self) -> list:
        """Per node: its label (str or None) or _NAME; read from the graph once it exists."""
        g = self._graph
        if g is None:
            return self._labels  # type: ignore[return-value]
        nodes = g.nodes
        return [nodes[v].get("label", _NAME) for v in self._names]

    def _extinct_mask(self) -> np.ndarray:
        g = self._graph
        if g is None:
            return self._extinct  # type: ignore[return-value]
        nodes = g.nodes
        return np.fromiter(
            (bool(nodes[v].get("extinct", False)) for v in self._names),
            dtype=bool,
            count=len(self._names),
        )

    @property
    def graph(self) -> nx.DiGraph:
        """The tree as a ``networkx.DiGraph`` (built on first use, then kept)."""
        self._sync()
        if self._graph is None:
            with _no_gc():
                self._graph = self._make_graph()
        return self._graph

    def _make_graph(self) -> nx.DiGraph:
        names = self._names
        g = nx.DiGraph(rooted=self._rooted)
        if self._root_length is not None:
            g.graph["root_length"] = self._root_length
        arr = self.to_arrays()
        tl = self._time.tolist()
        labels = self._labels
        ext = self._extinct.tolist()  # type: ignore[union-attr]
        leaf = arr.is_leaf.tolist()
        attrs = []
        for i in range(len(names)):
            d = {"time": tl[i]}
            if labels[i] is not _NAME:  # type: ignore[index]
                d["label"] = labels[i]  # type: ignore[index]
            if leaf[i]:
                d["extinct"] = ext[i]
            attrs.append(d)
        g.add_nodes_from(zip(names, attrs))
        pl = self._parent.tolist()
        ll = self._length.tolist()
        miss = self._missing.tolist()
        g.add_edges_from(
            (
                names[pl[i]],
                names[i],
                {"length": ll[i], "length_missing": True} if miss[i] else {"length": ll[i]},
            )
            for i in range(1, len(names))
        )
        return g

    # ------------------------------------------------------------------ basic queries
    @property
    def root(self) -> str:
        """Name of the root node."""
        self._sync()
        return self._names[0]

    @property
    def rooted(self) -> bool:
        """Whether the root is meaningful (``False`` for NJ output)."""
        g = self._graph
        return bool(g.graph.get("rooted", True)) if g is not None else self._rooted

    @property
    def leaves(self) -> list[str]:
        """All leaves (extinct ones included), in preorder."""
        arr = self.to_arrays()
        if self._leaf_names is None:
            names = arr.names
            self._leaf_names = [names[i] for i in arr.leaf_nodes.tolist()]
        return list(self._leaf_names)

    @property
    def extant_leaves(self) -> list[str]:
        """Leaves that are not extinct, in preorder."""
        arr = self.to_arrays()
        keep = arr.leaf_nodes[~self._extinct_mask()[arr.leaf_nodes]]
        names = arr.names
        return [names[i] for i in keep.tolist()]

    @property
    def internal_nodes(self) -> list[str]:
        """Non-leaf nodes, in preorder (root first)."""
        arr = self.to_arrays()
        names = arr.names
        return [names[i] for i in np.flatnonzero(~arr.is_leaf).tolist()]

    def __len__(self) -> int:
        self._sync()
        return len(self._names)

    def __contains__(self, name: object) -> bool:
        return name in self._index()

    def __repr__(self) -> str:
        return (
            f"Phylogeny({int(self.to_arrays().is_leaf.sum())} leaves, {len(self)} nodes, "
            f"root={self.root!r}, rooted={self.rooted})"
        )

    def parent(self, name: str) -> str | None:
        """Parent of ``name`` (``None`` at the root)."""
        p = int(self._parent[self._i(name)])
        return None if p < 0 else self._names[p]

    def children(self, name: str) -> list[str]:
        """Children of ``name`` in their stored order."""
        arr = self.to_arrays()
        i = self._i(name)
        names = arr.names
        return [names[c] for c in arr.child_idx[arr.child_ptr[i] : arr.child_ptr[i + 1]].tolist()]

    def preorder(self) -> list[str]:
        """All nodes, root first, every parent before its children (deterministic)."""
        self._sync()
        return list(self._names)

    def postorder(self) -> list[str]:
        """All nodes, children (left to right) before their parent, root last."""
        arr = self.to_arrays()
        # nodes finishing before i: its subtree less itself, plus the earlier nodes in
        # preorder that are not its ancestors
        post = arr.size - 1 + np.arange(arr.n_nodes) - arr.depth
        order = np.empty(arr.n_nodes, dtype=np.int64)
        order[post] = np.arange(arr.n_nodes)
        names = arr.names
        return [names[i] for i in order.tolist()]

    def is_leaf(self, name: str) -> bool:
        """Whether ``name`` has no children."""
        return bool(self.to_arrays().is_leaf[self._i(name)])

    def time(self, name: str) -> float:
        """Time of ``name`` since the root."""
        return float(self._time[self._i(name)])

    def length(self, name: str) -> float:
        """Length of the branch above ``name`` (0.0 at the root)."""
        return float(self._length[self._i(name)])

    def times(self) -> np.ndarray:
        """Node times in :meth:`preorder` order, ``[n_nodes]``."""
        self._sync()
        return self._time.copy()

    def depth(self) -> float:
        """Largest node time (the tree's height above the root)."""
        self._sync()
        return float(self._time.max())

    # ------------------------------------------------------------------ structure
    def mrca(self, names: Iterable[str]) -> str:
        """Most recent common ancestor of the given nodes (leaves or internal)."""
        arr = self.to_arrays()
        ii = [self._i(v) for v in names]
        if not ii:
            raise ValueError("mrca needs at least one node")
        lo = int(arr.leaf_lo[ii].min())
        hi = int(arr.leaf_hi[ii].max())
        v = ii[0]
        while not (arr.leaf_lo[v] <= lo and arr.leaf_hi[v] >= hi):
            v = int(arr.parent[v])
        # an ancestor with the same leaf range may sit above a unary chain; v is the deepest
        return arr.names[v]

    def _split_ranges(self, rooted: bool) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
        """(leaf order, node, lo, hi): each nontrivial clade/split as a range of the order.

        Rooted: the leaf order is preorder and a clade is its own range. Unrooted: the
        leaf order puts the alphabetically first leaf first (only children are
        reordered), so the side of every split away from it is a range. One entry per
        distinct clade/split, for its first node in preorder.
        """
        arr = self.to_arrays()
        n = int(arr.is_leaf.sum())
        if rooted:
            order = [arr.names[i] for i in arr.leaf_nodes.tolist()]
            lo, hi = arr.leaf_lo, arr.leaf_hi
            size = hi - lo
            ok = (~arr.is_leaf) & (size >= 2) & (size <= n - 1)
            ok[0] = False
        else:
            leaves = [arr.names[i] for i in arr.leaf_nodes.tolist()]
            ref = arr.leaf_nodes[leaves.index(min(leaves))] if leaves else 0
            order_idx, lo, hi = _ref_first_ranges(arr, int(ref))
            order = [arr.names[i] for i in order_idx.tolist()]
            away = lo == 0  # contains the reference leaf: take the other side
            lo, hi = np.where(away, hi, lo), np.where(away, n, hi)
            size = hi - lo
            ok = (size >= 2) & (size <= n - 2)
            ok[0] = False
        nodes = np.flatnonzero(ok)
        key = lo[nodes] * (n + 1) + hi[nodes]
        _, first = np.unique(key, return_index=True)
        nodes = np.sort(nodes[first])
        return order, nodes, lo[nodes], hi[nodes]

    def splits(self, *, rooted: bool = False) -> dict[str, frozenset[str]]:
        """Nontrivial splits (unrooted) or clades (rooted) as leaf sets, by node.

        Unrooted: the bipartition made by the edge above each node, given by the side
        that does not hold the alphabetically first leaf (so the same bipartition has the
        same set in any tree on the same leaves), kept when both sides have at least 2
        leaves. Rooted: the leaf set below each non-root internal node, kept when it has
        2..n-1 leaves. A split (clade) made by several edges (the two root edges of a
        rooted tree, a unary chain) is keyed by its first node in preorder.

        Built from :meth:`to_arrays` leaf ranges; the sets take memory proportional to
        their sizes (use :func:`evosim.phylo.shared_splits` to compare large trees).
        """
        order, nodes, lo, hi = self._split_ranges(rooted)
        names = self._names
        return {
            names[v]: frozenset(order[a:b])
            for v, a, b in zip(nodes.tolist(), lo.tolist(), hi.tolist())
        }

    def clades(self, rooted: bool = True) -> set[frozenset[str]]:
        """Nontrivial clades (``rooted=True``) or splits (``rooted=False``) as leaf sets
        (the values of :meth:`splits`)."""
        return set(self.splits(rooted=rooted).values())

    def prune(self, leaves: Iterable[str]) -> Phylogeny:
        """The subtree spanned by ``leaves``: unary nodes suppressed, lengths summed.

        Kept nodes keep their names and attributes, including their original ``time``
        (so times stay comparable with the full tree; the new root's time may be > 0).
        """
        arr = self.to_arrays()
        pos = self._index()
        keep = list(dict.fromkeys(leaves))
        if not keep:
            raise ValueError("prune needs at least one leaf")
        ki = [pos.get(v, -1) for v in keep]
        bad = [v for v, i in zip(keep, ki) if i < 0 or not arr.is_leaf[i]]
        if bad:
            raise ValueError(f"not leaves of this tree: {bad[:10]}")
        n = arr.n_nodes
        kept_leaf = np.zeros(int(arr.is_leaf.sum()), dtype=np.int64)
        kept_leaf[arr.leaf_lo[ki]] = 1
        cum = np.concatenate([[0], np.cumsum(kept_leaf)])
        count = cum[arr.leaf_hi] - cum[arr.leaf_lo]  # kept leaves below each node
        has = count > 0
        nkids = np.bincount(arr.parent[1:][has[1:]], minlength=n)
        retained = has & (arr.is_leaf | (nkids >= 2))
        # nearest retained ancestor and the summed length up to it (preorder loop)
        parent = arr.parent.tolist()
        length = self._length.tolist()
        missing = self._missing.tolist()
        ret = retained.tolist()
        hs = has.tolist()
        anchor = [-1] * n
        acc = [0.0] * n
        known = [False] * n
        new_parent: list[int] = []
        new_length: list[float] = []
        new_missing: list[bool] = []
        kept: list[int] = []
        newpos = [-1] * n
        for i in range(n):
            if not hs[i]:
                continue
            if i == 0:
                a, d, k = -1, 0.0, False
            else:
                p = parent[i]
                a = anchor[p]
                d = acc[p] + length[i]
                k = known[p] or not missing[i]
            if ret[i]:
                newpos[i] = len(kept)
                kept.append(i)
                new_parent.append(newpos[a] if a >= 0 else -1)
                new_length.append(d if a >= 0 else 0.0)
                new_missing.append(not k if a >= 0 else False)
                anchor[i], acc[i], known[i] = i, 0.0, False
            else:
                anchor[i], acc[i], known[i] = a, d, k
        idx = np.asarray(kept, dtype=np.int64)
        names = [self._names[i] for i in kept]
        labels = self._label_list()
        out = Phylogeny._new(
            names,
            np.asarray(new_parent, dtype=np.int64),
            self._time[idx],
            np.asarray(new_length),
            missing=np.asarray(new_missing, dtype=bool),
            labels=[labels[i] for i in kept],
            extinct=self._extinct_mask()[idx],
            rooted=self.rooted,
        )
        if self._graph is not None:
            # a caller's graph may carry attributes of its own: copy every node's
            out._graph = _copy_attributes(out._make_graph(), self._graph)
        return out

    def extant_tree(self) -> Phylogeny:
        """The tree pruned to its extant leaves (see :meth:`prune`)."""
        return self.prune(self.extant_leaves)

    def reroot(self, node: str) -> Phylogeny:
        """The same unrooted tree rooted at ``node``.

        An internal ``node`` becomes the root. For a leaf, a new root node is inserted at
        the midpoint of the leaf's branch (outgroup rooting). The old root is suppressed
        if it becomes unary. Times are recomputed from the new root; the result is marked
        rooted.
        """
        target = self._i(node)
        arr = self.to_arrays()
        names = arr.names
        g = self.graph
        adj: dict[str, dict[str, dict]] = {v: {} for v in names}
        for i in range(1, arr.n_nodes):
            p = names[arr.parent[i]]
            c = names[i]
            e = dict(g.edges[p, c])
            adj[p][c] = e
            adj[c][p] = e
        start = names[target]
        if arr.is_leaf[target] and arr.n_nodes > 1:
            p = names[arr.parent[target]]
            e = adj[p].pop(start)
            del adj[start][p]
            half = e["length"] / 2.0
            r = _NameGen(set(names), prefix="root")()
            e1 = {**e, "length": half}
            e2 = {**e, "length": e["length"] - half}
            adj[r] = {p: e1, start: e2}
            adj[p][r] = e1
            adj[start][r] = e2
            start = r
        # suppress the old root if it becomes a pass-through node
        old = names[0]
        if old != start and len(adj[old]) == 2:
            (a, ea), (b, eb) = adj[old].items()
            merged = {"length": ea["length"] + eb["length"]}
            if ea.get("length_missing") and eb.get("length_missing"):
                merged["length_missing"] = True
            del adj[a][old], adj[b][old], adj[old]
            adj[a][b] = merged
            adj[b][a] = merged
        new = nx.DiGraph(rooted=True)
        nodes = g.nodes
        stack = [(start, None)]
        while stack:
            v, p = stack.pop()
            attrs = dict(nodes[v]) if v in nodes else {"label": None}
            if p is None:
                attrs["time"] = 0.0
                new.add_node(v, **attrs)
            else:
                e = adj[v][p]
                attrs["time"] = new.nodes[p]["time"] + e["length"]
                new.add_node(v, **attrs)
                new.add_edge(p, v, **e)
            for c in reversed(list(adj[v])):
                if c != p:
                    stack.append((c, v))
        # nodes that stopped (or started) being leaves
        for v in new:
            if new.out_degree(v) == 0:
                new.nodes[v].setdefault("extinct", False)
            else:
                new.nodes[v].pop("extinct", None)
        return Phylogeny(new)

    def midpoint_root(self) -> Phylogeny:
        """Rooted at the midpoint of the longest leaf-to-leaf path (a common default)."""
        labels, D = self.patristic_distances()
        if len(labels) < 2:
            return self.copy()
        i, j = np.unravel_index(int(np.argmax(D)), D.shape)
        a, b = labels[int(i)], labels[int(j)]
        half = float(D[i, j]) / 2.0
        m = self.mrca([a, b])
        ta = self.time(a) - self.time(m)
        v, rest = (a, half) if ta >= half else (b, half)
        # climb from leaf v until the midpoint lies on the branch above the current node
        while rest > self.length(v) and v != m:
            rest -= self.length(v)
            v = self.parent(v)  # type: ignore[assignment]
        if v == m or rest >= self.length(v):
            target = v if v == m else self.parent(v)
            return self.reroot(target)  # type: ignore[arg-type]
        if rest <= 0.0 and not self.is_leaf(v):
            return self.reroot(v)
        g = self.graph.copy()
        p = self.parent(v)
        e = dict(g.edges[p, v])
        r = _NameGen(set(g.nodes), prefix="root")()
        g.remove_edge(p, v)
        g.add_node(r, label=None)
        g.add_edge(p, r, **{**e, "length": e["length"] - rest})
        g.add_edge(r, v, **{**e, "length": rest})
        for k in g.nodes:
            g.nodes[k].pop("time", None)
        return Phylogeny(g).reroot(r)

    # ------------------------------------------------------------------ distances
    def patristic_distances(
        self, leaves: Sequence[str] | None = None
    ) -> tuple[list[str], np.ndarray]:
        """Path-length distances between leaves.

        Parameters
        ----------
        leaves : sequence of str, optional
            Which leaves, in which order (default: all, in preorder).

        Returns
        -------
        labels : list[str]
        D : np.ndarray, [n, n]
            ``D[i, j] = t_i + t_j - 2 t_mrca(i, j)``, filled block-wise per internal node
            (O(n^2) work in O(n) vectorised assignments).
        """
        if leaves is not None:
            leaves = list(leaves)
            if len(set(leaves)) != len(leaves):
                raise ValueError("patristic_distances: repeated leaf names")
            own = self.leaves
            if set(leaves) != set(own):
                sub = self.prune(leaves)
                lab, D = sub.patristic_distances()
            else:
                lab, D = own, self.patristic_distances()[1]
            if lab == leaves:
                return leaves, D
            pos = {v: k for k, v in enumerate(lab)}
            order = np.asarray([pos[v] for v in leaves], dtype=np.int64)
            return leaves, D[np.ix_(order, order)]
        arr = self.to_arrays()
        return self.leaves, _patristic(arr, self._time)

    # ------------------------------------------------------------------ output, copies
    def to_newick(
        self,
        *,
        lengths: bool = True,
        internal_labels: bool = True,
        labels: Mapping[str, str | None] | None = None,
    ) -> str:
        """Newick text. Labels are quoted when needed; lengths written exactly (``repr``).

        Unrooted trees (``graph.graph["rooted"] is False``) start with the ``[&U]``
        comment, which :meth:`from_newick` (and DendroPy, BEAST, ...) read back.

        Parameters
        ----------
        lengths : bool
            Write branch lengths (missing ones are never written).
        internal_labels : bool
            Write internal-node labels (see the module notes on ``"label"``).
        labels : mapping, optional
            Text to write for some nodes instead of their own labels (``None``: nothing),
            e.g. support values on internal nodes.
        """
        arr = self.to_arrays()
        names = arr.names
        own = self._label_list()
        if labels:
            pos = self._index()
            own = list(own)
            for v, lab in labels.items():
                own[pos[v]] = lab
        labels = own
        leaf = arr.is_leaf.tolist()
        n = arr.n_nodes
        text = [""] * n
        for i in range(n):
            if internal_labels or leaf[i]:
                lab = labels[i]
                if lab is _NAME:
                    lab = names[i]
                if lab is not None:
                    text[i] = format_label(lab)
        if lengths:
            miss = self._missing.tolist()
            for i, x in enumerate(self._length.tolist()):
                if i and not miss[i]:
                    text[i] += ":" + format_length(x)
            rl = self._root_length if self._graph is None else self.graph.graph.get("root_length")
            if rl is not None:
                text[0] += ":" + format_length(rl)
        # preorder with explicit closes: "(" before a node's first child, ")label" after
        # its last descendant, "," between siblings
        ptr = arr.child_ptr.tolist()
        kids = arr.child_idx.tolist()
        out: list[str] = []
        stack: list[int] = [0]
        while stack:
            item = stack.pop()
            if item < -1:
                out.append(")" + text[-2 - item])
                continue
            if item == -1:
                out.append(",")
                continue
            a, b = ptr[item], ptr[item + 1]
            if a == b:
                out.append(text[item])
                continue
            out.append("(")
            stack.append(-2 - item)
            for k in range(b - 1, a - 1, -1):
                stack.append(kids[k])
                if k > a:
                    stack.append(-1)
        out.append(";")
        if not self.rooted:
            out.insert(0, "[&U] ")
        return "".join(out)

    def copy(self) -> Phylogeny:
        """A deep-enough copy (new arrays; a new graph and attribute dicts if it has one)."""
        self._sync()
        if self._graph is not None:
            return Phylogeny(self._graph.copy())
        return Phylogeny._new(
            list(self._names),
            self._parent.copy(),
            self._time.copy(),
            self._length.copy(),
            missing=self._missing.copy(),
            labels=list(self._labels),  # type: ignore[arg-type]
            extinct=self._extinct.copy(),  # type: ignore[union-attr]
            rooted=self._rooted,
            root_length=self._root_length,
        )

    def relabel(self, mapping: Mapping[str, str]) -> Phylogeny:
        """A copy with nodes renamed by ``mapping`` (names not in it are kept).

        Renamed nodes get ``label`` = their new name, so it is written to Newick.
        """
        pos = self._index()
        missing = [k for k in mapping if k not in pos]
        if missing:
            raise ValueError(f"relabel: no such nodes {missing[:10]}")
        final = [mapping.get(v, v) for v in self._names]
        if len(set(final)) != len(final):
            seen: set[str] = set()
            dup = sorted({v for v in final if v in seen or seen.add(v)})
            raise ValueError(f"relabel would give duplicate names: {dup[:10]}")
        if self._graph is not None:
            g = nx.relabel_nodes(self._graph, dict(mapping), copy=True)
            for old, new in mapping.items():
                if old != new:
                    g.nodes[new]["label"] = new
            return Phylogeny(g)
        labels = list(self._labels)  # type: ignore[arg-type]
        for old, new in mapping.items():
            if old != new:
                labels[pos[old]] = new
        out = self.copy()
        out._names = final
        out._labels = labels
        return out


# --------------------------------------------------------------------------- helpers
def _times_from_lengths(parent: np.ndarray, length: np.ndarray) -> np.ndarray:
    """Node times (root 0) from preorder parents and branch lengths."""
    pl = parent.tolist()
    ll = length.tolist()
    t = [0.0] * len(pl)
    for i in range(1, len(pl)):
        t[i] = t[pl[i]] + ll[i]
    return np.asarray(t, dtype=np.float64)


def _preorder_of_parents(parent: np.ndarray) -> np.ndarray:
    """A preorder of nodes given by parent indices in any order (children by index)."""
    n = parent.size
    roots = np.flatnonzero(parent < 0)
    if roots.size != 1:
        raise ValueError(f"a tree has exactly one root; found {roots.size}")
    nonroot = np.flatnonzero(parent >= 0)
    kids = nonroot[np.argsort(parent[nonroot], kind="stable")].tolist()
    start = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(parent[nonroot], minlength=n), out=start[1:])
    st = start.tolist()
    pre: list[int] = []
    stack = [int(roots[0])]
    while stack:
        v = stack.pop()
        pre.append(v)
        a, b = st[v], st[v + 1]
        if a != b:
            stack.extend(reversed(kids[a:b]))
    if len(pre) != n:
        raise ValueError("the parent array is not one tree")
    return np.asarray(pre, dtype=np.int64)


def _preorder_of_graph(g: nx.DiGraph) -> tuple[list[str], list[int]]:
    """(names in preorder, parent index of each) from a graph, checking it is one tree."""
    if len(g) == 0:
        raise ValueError("a Phylogeny needs at least one node")
    pred = g.pred
    roots = [v for v, p in pred.items() if not p]
    if len(roots) != 1:
        raise ValueError(f"a tree has exactly one root; found {len(roots)}: {roots[:5]}")
    multi = [v for v, p in pred.items() if len(p) > 1]
    if multi:
        raise ValueError(f"nodes with more than one parent: {multi[:5]}")
    succ = g.succ
    names: list[str] = []
    parent: list[int] = []
    stack = [(roots[0], -1)]
    while stack:
        v, p = stack.pop()
        if not isinstance(v, str):
            raise ValueError(f"node names must be str, got {v!r}")
        names.append(v)
        parent.append(p)
        me = len(names) - 1
        for c in reversed(list(succ[v])):
            stack.append((c, me))
    if len(names) != len(g):
        raise ValueError("the graph is not connected (or has a cycle): not a tree")
    return names, parent


def _copy_attributes(target: nx.DiGraph, source: nx.DiGraph) -> nx.DiGraph:
    """Node attributes of ``source`` (other than time) onto the same nodes of ``target``."""
    tn, sn = target.nodes, source.nodes
    for v in target:
        t = tn[v]
        for k, x in sn[v].items():
            if k != "time":
                t[k] = x
    return target


def _ref_first_ranges(arr: TreeArrays, ref: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Leaf order with leaf ``ref`` first, and each node's leaf range in that order.

    Only children are reordered (the child toward ``ref`` first), so every node's leaves
    stay a contiguous range ``[lo, hi)``. Returns (leaf node indices in order, lo, hi).
    """
    n = arr.n_nodes
    parent = arr.parent
    pl = parent.tolist()
    path = [ref]  # ref ... root
    while pl[path[-1]] >= 0:
        path.append(pl[path[-1]])
    nleaf = arr.leaf_hi - arr.leaf_lo
    # every node's offset inside its parent's range, with the on-path child moved first:
    # preorder offsets (lo - parent's lo) hold for children after the on-path child; the
    # ones before it shift right by its leaf count; the on-path child itself goes to 0.
    rel = arr.leaf_lo - arr.leaf_lo[np.maximum(parent, 0)]
    rel[0] = 0
    on = np.asarray(path[:-1], dtype=np.int64)  # on-path nodes below the root
    first = np.full(n, -1, dtype=np.int64)
    first[parent[on]] = on
    s = np.arange(1, n)
    c = first[parent[s]]
    before = (c >= 0) & (s != c) & (rel[s] < rel[np.maximum(c, 0)])
    shift = np.zeros(n, dtype=np.int64)
    shift[s[before]] = nleaf[c[before]]
    shift[on] = -rel[on]
    rel = rel + shift
    # absolute lo = sum of rel along the path from the root (preorder accumulation)
    rl = rel.tolist()
    lol = [0] * n
    for i in range(1, n):
        lol[i] = lol[pl[i]] + rl[i]
    lo = np.asarray(lol, dtype=np.int64)
    hi = lo + nleaf
    order = np.empty(int(arr.is_leaf.sum()), dtype=np.int64)
    order[lo[arr.leaf_nodes]] = arr.leaf_nodes
    return order, lo, hi


def _patristic(arr: TreeArrays, time: np.ndarray) -> np.ndarray:
    """All-pairs leaf distances in preorder leaf order, ``[L, L]``."""
    n = int(arr.is_leaf.sum())
    tl = time[arr.leaf_nodes]
    M = np.empty((n, n))  # time of the MRCA of each leaf pair
    lo, hi = arr.leaf_lo.tolist(), arr.leaf_hi.tolist()
    ptr, kids = arr.child_ptr.tolist(), arr.child_idx.tolist()
    tt = time.tolist()
    for v in np.flatnonzero(~arr.is_leaf).tolist():
        tv = tt[v]
        lv, hv = lo[v], hi[v]
        for c in kids[ptr[v] : ptr[v + 1]]:
            a, b = lo[c], hi[c]
            # c's leaves against the rest of v's clade (both sides of c)
            M[a:b, lv:a] = tv
            M[a:b, b:hv] = tv
    M[np.diag_indices(n)] = tl
    D = tl[:, None] + tl[None, :] - 2.0 * M
    np.fill_diagonal(D, 0.0)
    return D


class _NameGen:
    """Fresh names ``prefix1, prefix2, ...`` avoiding a set of used names."""

    def __init__(self, used: set[str], prefix: str = "n") -> None:
        self.used = used
        self.prefix = prefix
        self.k = 0

    def __call__(self) -> str:
        while True:
            self.k += 1
            name = f"{self.prefix}{self.k}"
            if name not in self.used:
                self.used.add(name)
                return name
