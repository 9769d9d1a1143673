"""Phylogeny: accessors, MRCA, pruning, rerooting, patristic distances (checked against
networkx shortest paths, an independent oracle), clades."""

from __future__ import annotations

import networkx as nx
import numpy as np
import pytest

from evosim.phylo import Phylogeny, birth_death, robinson_foulds, yule

TREE = "(((A:1,B:2)ab:1,C:3)abc:0.5,(D:1,E:1)de:2)root;"


def _oracle_distances(t: Phylogeny, labels: list[str]) -> np.ndarray:
    """All-pairs path lengths by Dijkstra on the undirected tree."""
    u = nx.Graph()
    for p, c, e in t.graph.edges(data=True):
        u.add_edge(p, c, weight=e["length"])
    n = len(labels)
    D = np.zeros((n, n))
    for i, a in enumerate(labels):
        dist = nx.single_source_dijkstra_path_length(u, a)
        for j, b in enumerate(labels):
            D[i, j] = dist[b]
    return D


def test_accessors():
    t = Phylogeny.from_newick(TREE)
    assert t.root == "root"
    assert t.leaves == ["A", "B", "C", "D", "E"]
    assert t.extant_leaves == t.leaves
    assert t.internal_nodes == ["root", "abc", "ab", "de"]
    assert t.preorder() == ["root", "abc", "ab", "A", "B", "C", "de", "D", "E"]
    assert t.postorder() == ["A", "B", "ab", "C", "abc", "D", "E", "de", "root"]
    assert t.parent("A") == "ab" and t.parent("root") is None
    assert t.children("abc") == ["ab", "C"]
    assert t.is_leaf("C") and not t.is_leaf("ab")
    assert t.time("B") == pytest.approx(3.5) and t.time("root") == 0.0
    assert t.length("C") == 3.0 and t.length("root") == 0.0
    assert t.graph.edges["abc", "ab"]["length"] == 1.0
    assert all(t.graph.nodes[v]["extinct"] is False for v in t.leaves)
    assert t.graph.graph["rooted"] is True
    assert t.mrca(["A", "B"]) == "ab"
    assert t.mrca(["A", "C"]) == "abc"
    assert t.mrca(["B", "E"]) == "root"
    assert t.mrca(["ab", "C"]) == "abc"
    assert t.mrca(["D"]) == "D"


def test_patristic_matches_shortest_paths():
    rng = np.random.default_rng(0)
    for t in (Phylogeny.from_newick(TREE), birth_death(1.0, 0.4, 40, rng=rng)):
        labels, D = t.patristic_distances()
        assert labels == t.leaves
        np.testing.assert_allclose(D, _oracle_distances(t, labels), rtol=1e-12, atol=1e-12)
        sub = labels[::3][::-1]
        lab2, D2 = t.patristic_distances(sub)
        assert lab2 == sub
        np.testing.assert_allclose(D2, _oracle_distances(t, sub), rtol=1e-12, atol=1e-12)


def test_clades_and_splits():
    t = Phylogeny.from_newick(TREE)
    A, B, C, D, E = "ABCDE"
    assert t.clades() == {frozenset({A, B}), frozenset({A, B, C}), frozenset({D, E})}
    # unrooted: side away from the first leaf "A"; {A,B,C}|{D,E} appears once
    assert t.clades(rooted=False) == {frozenset({C, D, E}), frozenset({D, E})}


def test_prune_suppresses_unary_and_keeps_distances():
    rng = np.random.default_rng(1)
    t = birth_death(1.0, 0.3, 30, rng=rng)
    keep = t.extant_leaves[::2]
    p = t.prune(keep)
    assert sorted(p.leaves) == sorted(keep)
    assert all(len(p.children(v)) >= 2 for v in p.internal_nodes)
    assert set(p.preorder()) <= set(t.preorder())
    labels, D = p.patristic_distances()
    np.testing.assert_allclose(D, t.patristic_distances(labels)[1], rtol=1e-12, atol=1e-12)
    # times are kept from the full tree
    assert all(p.time(v) == t.time(v) for v in p.preorder())
    two = t.prune(keep[:2])
    assert len(two.leaves) == 2 and len(two.internal_nodes) == 1
    with pytest.raises(ValueError, match="not leaves"):
        t.prune([t.root])


def test_extant_tree_drops_extinct_lineages():
    rng = np.random.default_rng(2)
    t = birth_death(1.0, 0.6, 20, rng=rng)
    assert any(t.graph.nodes[v]["extinct"] for v in t.leaves)
    e = t.extant_tree()
    assert sorted(e.leaves) == sorted(t.extant_leaves)
    assert len(e.leaves) == 20
    assert not any(e.graph.nodes[v]["extinct"] for v in e.leaves)


def test_reroot_keeps_unrooted_tree():
    rng = np.random.default_rng(3)
    t = yule(1.0, 25, rng=rng)
    labels, D = t.patristic_distances()
    for node in (t.internal_nodes[5], t.leaves[7]):
        r = t.reroot(node)
        assert r.time(r.root) == 0.0
        np.testing.assert_allclose(r.patristic_distances(labels)[1], D, atol=1e-12)
        assert robinson_foulds(t, r) == 0.0
        assert sorted(r.leaves) == sorted(labels)
    assert t.reroot(t.internal_nodes[5]).root == t.internal_nodes[5]
    # rooting at a leaf puts a new root at the middle of its branch
    r = t.reroot(t.leaves[7])
    assert len(r.children(r.root)) == 2 and t.leaves[7] in r.children(r.root)
    assert r.time(t.leaves[7]) == pytest.approx(t.length(t.leaves[7]) / 2)


def test_midpoint_root():
    t = Phylogeny.from_newick("((A:1,B:1):1,(C:1,D:7):1);")
    m = t.midpoint_root()
    labels, D = t.patristic_distances()
    np.testing.assert_allclose(m.patristic_distances(labels)[1], D)
    # farthest pair is A/B to D (distance 10): both 5 from the new root
    assert m.time("D") == pytest.approx(5.0)
    assert m.time("A") == pytest.approx(5.0)


def test_to_newick_copy_relabel():
    t = Phylogeny.from_newick(TREE)
    assert t.to_newick() == "(((A:1.0,B:2.0)ab:1.0,C:3.0)abc:0.5,(D:1.0,E:1.0)de:2.0)root;"
    assert t.to_newick(lengths=False, internal_labels=False) == "(((A,B),C),(D,E));"
    c = t.copy()
    c.graph.nodes["A"]["extra"] = 1
    assert "extra" not in t.graph.nodes["A"]
    r = t.relabel({"A": "a a", "ab": "AB"})
    assert "a a" in r.leaves and r.parent("a a") == "AB"
    assert r.to_newick(lengths=False) == "((('a a',B)AB,C)abc,(D,E)de)root;"
    with pytest.raises(ValueError, match="duplicate"):
        t.relabel({"A": "B"})
    with pytest.raises(ValueError, match="no such"):
        t.relabel({"Q": "R"})


def test_invalid_graphs_rejected():
    g = nx.DiGraph()
    g.add_edges_from([("r", "a"), ("s", "b")])
    with pytest.raises(ValueError, match="exactly one root"):
        Phylogeny(g)
    g = nx.DiGraph()
    g.add_edges_from([("r", "a"), ("r", "b"), ("a", "c"), ("b", "c")])
    with pytest.raises(ValueError, match="more than one parent"):
        Phylogeny(g)
    with pytest.raises(TypeError):
        Phylogeny("((A,B),C);")  # type: ignore[arg-type]


def test_graph_without_times_or_lengths_gets_them():
    g = nx.DiGraph()
    g.add_edge("r", "a", length=2.0)
    g.add_edge("r", "b", length=1.0)
    t = Phylogeny(g)
    assert t.time("a") == 2.0 and t.time("r") == 0.0
    g = nx.DiGraph()
    g.add_node("r", time=0.0)
    g.add_node("a", time=3.0)
    g.add_node("b", time=1.0)
    g.add_edges_from([("r", "a"), ("r", "b")])
    assert Phylogeny(g).length("a") == 3.0
