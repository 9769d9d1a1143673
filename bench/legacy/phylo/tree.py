"""The :class:`Phylogeny`: a rooted tree over a ``networkx.DiGraph``.

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

The graph's *structure* is treated as immutable after construction (derived indices are
cached); node and edge attributes may be changed freely, except ``time`` and ``length``,
which should only change together through a new ``Phylogeny``.
"""

from __future__ import annotations

import gc
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import networkx as nx
import numpy as np

from legacy.phylo.newick import ParsedNewick, format_label, format_length, parse_newick

__all__ = ["Phylogeny"]


@contextmanager
def _no_gc() -> Iterator[None]:
    """Pause the cyclic GC while building many small dicts (it would rescan them all)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


@dataclass
class _Index:
    """Array views of the tree in preorder (computed once per Phylogeny)."""

    names: list[str]  # preorder
    index: dict[str, int]
    parent: np.ndarray  # [n] int64, -1 at the root
    children: list[list[int]]
    is_leaf: np.ndarray  # [n] bool
    leaf_lo: np.ndarray  # [n] first preorder-leaf position under node
    leaf_hi: np.ndarray  # [n] one past the last
    leaf_nodes: np.ndarray  # [n_leaves] node indices of the leaves, in preorder
    n_nodes: int


class Phylogeny:
    """A rooted phylogeny.

    Parameters
    ----------
    graph : networkx.DiGraph
        Parent -> child edges forming one rooted tree. Missing ``time`` attributes are
        computed from edge lengths (root at 0); missing ``length`` attributes from times
        (or 0.0 when neither is given); missing ``extinct`` flags default to ``False``.
        The graph is used as is, not copied.

    Raises
    ------
    ValueError
        If the graph is not a single rooted tree or a node name is not a str.
    """

    def __init__(self, graph: nx.DiGraph) -> None:
        if not isinstance(graph, nx.DiGraph):
            raise TypeError(f"Phylogeny needs a networkx.DiGraph, got {type(graph).__name__}")
        self.graph = graph
        graph.graph.setdefault("rooted", True)
        self._idx: _Index | None = None
        with _no_gc():
            self._normalise()

    def _normalise(self) -> None:
        graph = self.graph
        idx = self._index()
        nodes = graph.nodes
        pred = graph.pred
        names = idx.names
        need_time = any("time" not in nodes[v] for v in names)
        for k, v in enumerate(names):
            data = nodes[v]
            if k == 0:
                if need_time:
                    data["time"] = 0.0
                continue
            p = names[idx.parent[k]]
            edata = pred[v][p]
            if "length" not in edata:
                if not need_time:
                    edata["length"] = float(data["time"]) - float(nodes[p]["time"])
                else:
                    edata["length"] = 0.0
                    edata["length_missing"] = True
            if need_time:
                data["time"] = nodes[p]["time"] + float(edata["length"])
        for k in idx.leaf_nodes.tolist():
            nodes[names[k]].setdefault("extinct", False)

    # ------------------------------------------------------------------ construction
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
            On malformed text (message gives the character position).
        ValueError
            On duplicate leaf labels.
        """
        with _no_gc():
            return cls._from_parsed(parse_newick(text))

    @classmethod
    def _from_parsed(cls, p: ParsedNewick) -> Phylogeny:
        n = len(p.parent)
        is_leaf = [True] * n
        for par in p.parent:
            if par >= 0:
                is_leaf[par] = False
        names: list[str | None] = [None] * n
        used: set[str] = set()
        dups: list[str] = []
        for i in range(n):
            lab = p.label[i]
            if is_leaf[i] and lab is not None:
                if lab in used:
                    dups.append(lab)
                used.add(lab)
                names[i] = lab
        if dups:
            raise ValueError(f"duplicate leaf labels in Newick: {sorted(set(dups))[:10]}")
        for i in range(n):
            lab = p.label[i]
            if not is_leaf[i] and lab is not None and lab not in used:
                used.add(lab)
                names[i] = lab
        gen = _NameGen(used)
        for i in range(n):
            if names[i] is None:
                names[i] = gen()
        g = nx.DiGraph(rooted=p.rooted)
        if p.length[0] is not None:
            g.graph["root_length"] = p.length[0]
        time = [0.0] * n
        for i in range(n):
            par = p.parent[i]
            if par >= 0:
                time[i] = time[par] + (p.length[i] or 0.0)
        g.add_nodes_from(
            (names[i], {"time": time[i], "label": p.label[i], "extinct": False})
            if is_leaf[i]
            else (names[i], {"time": time[i], "label": p.label[i]})
            for i in range(n)
        )
        g.add_edges_from(
            (
                names[p.parent[i]],
                names[i],
                {"length": p.length[i]}
                if p.length[i] is not None
                else {"length": 0.0, "length_missing": True},
            )
            for i in range(1, n)
        )
        self = cls.__new__(cls)
        self.graph = g
        self._idx = _index_from_preorder(names, p.parent)  # type: ignore[arg-type]
        return self

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
        time = np.asarray(time, dtype=float)
        n = len(names)
        with _no_gc():
            g = nx.DiGraph(rooted=rooted)
            tl = time.tolist()
            if labels is None:
                attrs = [{"time": x} for x in tl]
            else:
                attrs = [{"time": tl[i], "label": labels[i]} for i in range(n)]
            child = np.flatnonzero(parent >= 0)
            par = parent[child]
            leaf = np.ones(n, dtype=bool)
            leaf[par] = False
            ext = np.zeros(n, dtype=bool) if extinct is None else np.asarray(extinct, bool)
            for i in np.flatnonzero(leaf).tolist():
                attrs[i]["extinct"] = bool(ext[i])
            g.add_nodes_from(zip(names, attrs))
            lengths = (time[child] - time[par]).tolist()
            g.add_edges_from(
                (names[p], names[c], {"length": x})
                for p, c, x in zip(par.tolist(), child.tolist(), lengths)
            )
            if not in_preorder:
                return cls(g)
            self = cls.__new__(cls)
            self.graph = g
            self._idx = _index_from_preorder(list(names), parent)
            return self

    # ------------------------------------------------------------------ index
    def _index(self) -> _Index:
        idx = self._idx
        g = self.graph
        if idx is not None and idx.n_nodes == len(g):
            return idx
        with _no_gc():
            return self._build_index()

    def _build_index(self) -> _Index:
        g = self.graph
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
        index: dict[str, int] = {}
        stack = [(roots[0], -1)]
        while stack:
            v, p = stack.pop()
            if not isinstance(v, str):
                raise ValueError(f"node names must be str, got {v!r}")
            index[v] = len(names)
            names.append(v)
            parent.append(p)
            me = len(names) - 1
            ch = list(succ[v])
            for c in reversed(ch):
                stack.append((c, me))
        if len(names) != len(g):
            raise ValueError("the graph is not connected (or has a cycle): not a tree")
        self._idx = idx = _index_from_preorder(names, parent, index)
        return idx

    def _i(self, name: str) -> int:
        try:
            return self._index().index[name]
        except KeyError:
            raise KeyError(f"no node named {name!r} in the tree") from None

    # ------------------------------------------------------------------ basic queries
    @property
    def root(self) -> str:
        """Name of the root node."""
        return self._index().names[0]

    @property
    def rooted(self) -> bool:
        """Whether the root is meaningful (``False`` for NJ output)."""
        return bool(self.graph.graph.get("rooted", True))

    @property
    def leaves(self) -> list[str]:
        """All leaves (extinct ones included), in preorder."""
        idx = self._index()
        names = idx.names
        return [names[i] for i in idx.leaf_nodes.tolist()]

    @property
    def extant_leaves(self) -> list[str]:
        """Leaves that are not extinct, in preorder."""
        nodes = self.graph.nodes
        return [v for v in self.leaves if not nodes[v].get("extinct", False)]

    @property
    def internal_nodes(self) -> list[str]:
        """Non-leaf nodes, in preorder (root first)."""
        idx = self._index()
        names = idx.names
        return [names[i] for i in np.flatnonzero(~idx.is_leaf).tolist()]

    def __len__(self) -> int:
        return len(self.graph)

    def __contains__(self, name: object) -> bool:
        return name in self.graph

    def __repr__(self) -> str:
        return (
            f"Phylogeny({len(self.leaves)} leaves, {len(self.graph)} nodes, "
            f"root={self.root!r}, rooted={self.rooted})"
        )

    def parent(self, name: str) -> str | None:
        """Parent of ``name`` (``None`` at the root)."""
        idx = self._index()
        p = idx.parent[self._i(name)]
        return None if p < 0 else idx.names[p]

    def children(self, name: str) -> list[str]:
        """Children of ``name`` in their stored order."""
        idx = self._index()
        return [idx.names[c] for c in idx.children[self._i(name)]]

    def preorder(self) -> list[str]:
        """All nodes, root first, every parent before its children (deterministic)."""
        return list(self._index().names)

    def postorder(self) -> list[str]:
        """All nodes, children (left to right) before their parent, root last."""
        idx = self._index()
        out: list[int] = []
        stack = [(0, False)]
        children = idx.children
        while stack:
            v, expanded = stack.pop()
            if expanded or not children[v]:
                out.append(v)
                continue
            stack.append((v, True))
            for c in reversed(children[v]):
                stack.append((c, False))
        names = idx.names
        return [names[i] for i in out]

    def is_leaf(self, name: str) -> bool:
        """Whether ``name`` has no children."""
        return bool(self._index().is_leaf[self._i(name)])

    def time(self, name: str) -> float:
        """Time of ``name`` since the root."""
        return float(self.graph.nodes[name]["time"])

    def length(self, name: str) -> float:
        """Length of the branch above ``name`` (0.0 at the root)."""
        p = self.parent(name)
        return 0.0 if p is None else float(self.graph.edges[p, name]["length"])

    def times(self) -> np.ndarray:
        """Node times in :meth:`preorder` order, ``[n_nodes]``."""
        nodes = self.graph.nodes
        return np.fromiter((nodes[v]["time"] for v in self._index().names), dtype=float)

    def depth(self) -> float:
        """Largest node time (the tree's height above the root)."""
        return float(self.times().max())

    # ------------------------------------------------------------------ structure
    def mrca(self, names: Iterable[str]) -> str:
        """Most recent common ancestor of the given nodes (leaves or internal)."""
        idx = self._index()
        ii = [self._i(v) for v in names]
        if not ii:
            raise ValueError("mrca needs at least one node")
        lo = min(int(idx.leaf_lo[i]) for i in ii)
        hi = max(int(idx.leaf_hi[i]) for i in ii)
        v = ii[0]
        while not (idx.leaf_lo[v] <= lo and idx.leaf_hi[v] >= hi):
            v = int(idx.parent[v])
        # an ancestor with the same leaf range may sit above a unary chain; v is the deepest
        return idx.names[v]

    def clades(self, rooted: bool = True) -> set[frozenset[str]]:
        """Nontrivial clades (``rooted=True``) or splits (``rooted=False``) as leaf sets.

        Rooted: leaf sets of internal non-root nodes with 2..n-1 leaves. Unrooted: each
        edge's bipartition, represented by the side *not* containing the alphabetically
        first leaf, kept when both sides have at least 2 leaves.
        """
        idx = self._index()
        leaves = self.leaves
        n = len(leaves)
        out: set[frozenset[str]] = set()
        if rooted:
            for v in np.flatnonzero(~idx.is_leaf).tolist()[1:]:
                lo, hi = int(idx.leaf_lo[v]), int(idx.leaf_hi[v])
                if 2 <= hi - lo <= n - 1:
                    out.add(frozenset(leaves[lo:hi]))
            return out
        ref = min(leaves)
        full = frozenset(leaves)
        for v in range(1, idx.n_nodes):
            lo, hi = int(idx.leaf_lo[v]), int(idx.leaf_hi[v])
            if not 2 <= hi - lo <= n - 2:
                continue
            side = frozenset(leaves[lo:hi])
            out.add(full - side if ref in side else side)
        return out

    def prune(self, leaves: Iterable[str]) -> Phylogeny:
        """The subtree spanned by ``leaves``: unary nodes suppressed, lengths summed.

        Kept nodes keep their names and attributes, including their original ``time``
        (so times stay comparable with the full tree; the new root's time may be > 0).
        """
        idx = self._index()
        keep = list(dict.fromkeys(leaves))
        if not keep:
            raise ValueError("prune needs at least one leaf")
        ki = []
        bad = []
        for v in keep:
            i = idx.index.get(v)
            if i is None or not idx.is_leaf[i]:
                bad.append(v)
            else:
                ki.append(i)
        if bad:
            raise ValueError(f"not leaves of this tree: {bad[:10]}")
        n = idx.n_nodes
        parent = idx.parent.tolist()
        count = [0] * n  # kept leaves below
        nkids = [0] * n  # children with kept leaves
        for i in ki:
            count[i] = 1
        for i in range(n - 1, 0, -1):
            if count[i]:
                p = parent[i]
                count[p] += count[i]
                nkids[p] += 1
        g = self.graph
        nodes, pred = g.nodes, g.pred
        names = idx.names
        is_leaf = idx.is_leaf.tolist()
        anchor = [-1] * n
        acc = [0.0] * n
        known = [False] * n
        new = nx.DiGraph(rooted=self.rooted)
        for i in range(n):
            if not count[i]:
                continue
            retained = is_leaf[i] or nkids[i] >= 2
            if i == 0:
                a, d, k = -1, 0.0, False
            else:
                p = parent[i]
                e = pred[names[i]][names[p]]
                a = anchor[p]
                d = acc[p] + e["length"]
                k = known[p] or not e.get("length_missing", False)
            if retained:
                new.add_node(names[i], **nodes[names[i]])
                if a >= 0:
                    attrs = {"length": d} if k else {"length": d, "length_missing": True}
                    new.add_edge(names[a], names[i], **attrs)
                anchor[i], acc[i], known[i] = i, 0.0, False
            else:
                anchor[i], acc[i], known[i] = a, d, k
        return Phylogeny(new)

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
        idx = self._index()
        target = self._i(node)
        names = idx.names
        g = self.graph
        adj: dict[str, dict[str, dict]] = {v: {} for v in names}
        for i in range(1, idx.n_nodes):
            p = names[idx.parent[i]]
            c = names[i]
            e = dict(g.edges[p, c])
            adj[p][c] = e
            adj[c][p] = e
        start = names[target]
        if idx.is_leaf[target] and idx.n_nodes > 1:
            p = names[idx.parent[target]]
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
            if set(leaves) != set(self.leaves):
                sub = self.prune(leaves)
                lab, D = sub.patristic_distances()
            else:
                lab, D = self.patristic_distances()
            pos = {v: k for k, v in enumerate(lab)}
            order = np.asarray([pos[v] for v in leaves], dtype=np.int64)
            return leaves, D[np.ix_(order, order)]
        idx = self._index()
        t = self.times()
        labels = self.leaves
        n = len(labels)
        tl = t[idx.leaf_nodes]
        M = np.empty((n, n))  # time of the MRCA of each leaf pair
        lo, hi = idx.leaf_lo, idx.leaf_hi
        for v in np.flatnonzero(~idx.is_leaf).tolist():
            tv = t[v]
            for c in idx.children[v]:
                a, b = int(lo[c]), int(hi[c])
                # c's leaves against the rest of v's clade (both sides of c)
                M[a:b, lo[v] : a] = tv
                M[a:b, b : hi[v]] = tv
        M[np.diag_indices(n)] = tl
        D = tl[:, None] + tl[None, :] - 2.0 * M
        np.fill_diagonal(D, 0.0)
        return labels, D

    # ------------------------------------------------------------------ output, copies
    def to_newick(self, *, lengths: bool = True, internal_labels: bool = True) -> str:
        """Newick text. Labels are quoted when needed; lengths written exactly (``repr``).

        Unrooted trees (``graph.graph["rooted"] is False``) start with the ``[&U]``
        comment, which :meth:`from_newick` (and DendroPy, BEAST, ...) read back.

        Parameters
        ----------
        lengths : bool
            Write branch lengths (missing ones are never written).
        internal_labels : bool
            Write internal-node labels (see the module notes on ``"label"``).
        """
        idx = self._index()
        names = idx.names
        nodes = self.graph.nodes
        pred = self.graph.pred
        children = idx.children
        parent = idx.parent.tolist()

        def suffix(i: int) -> str:
            data = nodes[names[i]]
            s = ""
            if internal_labels or not children[i]:
                lab = data["label"] if "label" in data else names[i]
                if lab is not None:
                    s = format_label(lab)
            if lengths:
                if i == 0:
                    rl = self.graph.graph.get("root_length")
                    if rl is not None:
                        s += ":" + format_length(rl)
                else:
                    e = pred[names[i]][names[parent[i]]]
                    if not e.get("length_missing", False):
                        s += ":" + format_length(e["length"])
            return s

        out: list[str] = []
        stack: list[int | None] = [0]
        while stack:
            item = stack.pop()
            if item is None:
                out.append(",")
                continue
            if item < 0:
                out.append(")" + suffix(~item))
                continue
            ch = children[item]
            if not ch:
                out.append(suffix(item))
                continue
            out.append("(")
            stack.append(~item)
            for k, c in enumerate(reversed(ch)):
                if k:
                    stack.append(None)
                stack.append(c)
        out.append(";")
        if not self.rooted:
            out.insert(0, "[&U] ")
        return "".join(out)

    def copy(self) -> Phylogeny:
        """A deep-enough copy (new graph, new attribute dicts)."""
        return Phylogeny(self.graph.copy())

    def relabel(self, mapping: Mapping[str, str]) -> Phylogeny:
        """A copy with nodes renamed by ``mapping`` (names not in it are kept).

        Renamed nodes get ``label`` = their new name, so it is written to Newick.
        """
        names = set(self.graph)
        missing = [k for k in mapping if k not in names]
        if missing:
            raise ValueError(f"relabel: no such nodes {missing[:10]}")
        final = [mapping.get(v, v) for v in self.preorder()]
        if len(set(final)) != len(final):
            seen: set[str] = set()
            dup = sorted({v for v in final if v in seen or seen.add(v)})
            raise ValueError(f"relabel would give duplicate names: {dup[:10]}")
        g = nx.relabel_nodes(self.graph, dict(mapping), copy=True)
        for old, new in mapping.items():
            if old != new:
                g.nodes[new]["label"] = new
        return Phylogeny(g)


def _index_from_preorder(
    names: list[str], parent: Sequence[int] | np.ndarray, index: dict[str, int] | None = None
) -> _Index:
    """The :class:`_Index` of a tree given in preorder (``parent[i] < i``)."""
    n = len(names)
    par = np.asarray(parent, dtype=np.int64)
    pl = par.tolist()
    if index is None:
        index = dict(zip(names, range(n)))
    children: list[list[int]] = [[] for _ in range(n)]
    for i in range(1, n):
        children[pl[i]].append(i)
    is_leaf = np.ones(n, dtype=bool)
    is_leaf[par[1:]] = False
    leaf_nodes = np.flatnonzero(is_leaf)
    # leaves numbered in preorder; a clade is the contiguous range [lo, hi)
    lo = (np.cumsum(is_leaf) - is_leaf).astype(np.int64)
    hil = (lo + is_leaf).tolist()
    for i in range(n - 1, 0, -1):  # reverse preorder: children before parents
        p = pl[i]
        if hil[i] > hil[p]:
            hil[p] = hil[i]
    hi = np.asarray(hil, dtype=np.int64)
    return _Index(names, index, par, children, is_leaf, lo, hi, leaf_nodes, n)


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
